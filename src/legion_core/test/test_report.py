"""`legion report` on a synthetic run directory: figures, markdown and error messages."""
import json

import numpy as np
import pytest

from legion_core.cli.main import main
from legion_core.report import ReportError, write_report

TASKS = ['reach-v3', 'push-v3', 'door-open-v3']
MATRIX = [[0.8, 0.0, None], [0.6, 0.9, 0.1], [0.5, 1.0, 0.7]]
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def write_run(run_dir, metrics=None, evals=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    if metrics is None:
        metrics = {'tasks': TASKS, 'success_matrix': MATRIX, 'final_success': None, 'forgetting': None,
                   'dpmm': [{'phase': 0, 'num_components': 1, 'purity': 1.0},
                            {'phase': 1, 'num_components': 3, 'purity': 0.875}],
                   'phases': [{'phase': 0, 'task': 'reach-v3', 'local_steps': 4000, 'solved': True,
                               'env_steps': 4000}],
                   'wall_time_s': 7200.0, 'env_steps': 30000, 'mode': 'lifelong',
                   'config': {'seed': 0, 'stream': 'legion10'}}
    if evals is None:
        evals = []
        for phase in range(3):
            for step in (0, 5000, 10000):  # the phase's last eval shares its step with the next's first
                for k, task in enumerate(TASKS):
                    success = 0.1 * (step // 5000) * (k <= phase)
                    evals.append({'env_steps': phase * 10000 + step, 'phase': phase, 'task': task,
                                  'success': success, 'return': 100.0 * success})
    (run_dir / 'metrics.json').write_text(json.dumps(metrics))
    (run_dir / 'evals.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in evals))
    return run_dir


def test_report_writes_figures_and_markdown(tmp_path):
    run = write_run(tmp_path / 'run-7')
    paths = write_report(run, tmp_path / 'out')
    for name in ('success_matrix', 'learning_curves'):
        data = paths[name].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    text = paths['report'].read_text()
    assert '# LEGION run report: `run-7`' in text
    assert '| 2: door-open | 0.50 | 1.00 | 0.70 | 0.733 |' in text
    assert '| 0: reach | 0.80 | 0.00 | n/a | 0.400 |' in text  # null = not evaluated
    assert '| final success | 0.733 |' in text  # recomputed where metrics.json has null
    assert '| forgetting | 0.100 |' in text  # ((0.8 - 0.5) + (0.9 - 1.0)) / 2
    assert '| 1 | 3 | 0.875 |' in text
    assert '| wall time | 2.00 h (7200 s) |' in text
    assert '| 0 | reach | 4000 | solved | 4000 |' in text  # a phase that ended when its task was learnt
    # Stream average: 9 evaluations (phase, step), means over the 3 tasks of 0.1 * step-index * trained.
    expected = sum(0.1 * i * (phase + 1) / 3 for phase in range(3) for i in range(3)) / 9
    assert f'| stream average | {expected:.3f} |' in text


def test_report_names_the_frozen_skills_whose_columns_keep_their_phase_end_value(tmp_path):
    run = write_run(tmp_path / 'run')
    assert 'Frozen skills' not in write_report(run)['report'].read_text()
    metrics = json.loads((run / 'metrics.json').read_text())
    (run / 'metrics.json').write_text(json.dumps({**metrics, 'frozen_skills': ['reach-v3', 'push-v3']}))
    text = write_report(run)['report'].read_text()
    assert 'Frozen skills (`agent.freeze_skills`): reach, push act with' in text


def test_cli_writes_into_the_run_directory_by_default(tmp_path, capsys):
    run = write_run(tmp_path / 'run')
    assert main(['report', str(run)]) == 0
    assert (run / 'report.md').is_file() and (run / 'success_matrix.png').is_file()
    assert str(run / 'learning_curves.png') in capsys.readouterr().out


def test_multitask_run_without_periodic_evaluations(tmp_path):
    metrics = {'tasks': TASKS, 'success_matrix': [[1.0, 0.5, 0.0]], 'mode': 'multitask'}
    paths = write_report(write_run(tmp_path / 'mt', metrics=metrics, evals=[]))
    text = paths['report'].read_text()
    assert '| multi-task | 1.00 | 0.50 | 0.00 | 0.500 |' in text
    assert '| forgetting | n/a |' in text and '| stream average | n/a |' in text
    assert paths['learning_curves'].read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(('metrics', 'evals_text', 'fragments'), [
    (None, None, ['metrics.json', 'not found']),
    ('{"tasks": ["reach-v3"], ', '', ['metrics.json', 'not valid JSON']),
    ({'tasks': TASKS, 'success_matrix': [[0.1, 0.2]]}, '', ['metrics.json', 'row 0', '3 values']),
    ({'tasks': TASKS, 'success_matrix': [[0.1, 0.2, 7]]}, '', ['metrics.json', '[0, 1]']),
    ({'success_matrix': [[0.1]]}, '', ['metrics.json', '"tasks"']),
    ({'tasks': TASKS, 'success_matrix': MATRIX}, '{"env_steps": 1}\nnot json\n', ['evals.jsonl', 'line 1']),
    ({'tasks': TASKS, 'success_matrix': MATRIX}, '\n\n{oops\n', ['evals.jsonl', 'line 3']),
    ({'tasks': TASKS, 'success_matrix': MATRIX},
     '{"env_steps": 1, "phase": 0, "task": "hammer-v3", "success": 1, "return": 0}\n',
     ['evals.jsonl', 'hammer-v3']),
])
def test_missing_or_malformed_files_name_the_file(tmp_path, metrics, evals_text, fragments):
    run = tmp_path / 'bad'
    run.mkdir()
    if metrics is not None:
        (run / 'metrics.json').write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if evals_text is not None:
        (run / 'evals.jsonl').write_text(evals_text)
    with pytest.raises(ReportError) as info:
        write_report(run)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(['report', str(tmp_path / 'missing')]) == 2
    assert 'not a directory' in capsys.readouterr().err


def test_run_in_progress(tmp_path):
    # Before the first phase ends the matrix is empty; after it, one lifelong row is not multi-task.
    evals = [{'env_steps': 0, 'phase': 0, 'task': t, 'success': 0.0, 'return': 1.0} for t in TASKS]
    metrics = {'tasks': TASKS, 'success_matrix': [], 'mode': 'lifelong'}
    paths = write_report(write_run(tmp_path / 'early', metrics=metrics, evals=evals))
    assert paths['success_matrix'].read_bytes().startswith(PNG_SIGNATURE)
    assert '| final success | n/a |' in paths['report'].read_text()
    metrics = {'tasks': TASKS, 'success_matrix': [[0.9, 0.0, 0.3]], 'mode': 'lifelong'}
    text = write_report(write_run(tmp_path / 'phase0', metrics=metrics, evals=evals))['report'].read_text()
    assert '| 0: reach | 0.90 | 0.00 | 0.30 | 0.400 |' in text
    assert '| own phase | 0.900 |' in text and '| stream average | 0.000 |' in text


def test_a_sweep_directory_gets_means_confidence_intervals_and_bands(tmp_path, capsys):
    from legion_core.sweep_report import mean_ci

    sweep = tmp_path / 'multirun'
    finals = []
    for job, scale in enumerate((1.0, 0.8, 0.6)):  # three seeds of one stream, one of another order
        matrix = [[v if v is None else v * scale for v in row] for row in MATRIX]
        finals.append(float(np.mean(matrix[-1])))
        write_run(sweep / str(job), metrics={
            'tasks': TASKS, 'success_matrix': matrix, 'mode': 'lifelong',
            'config': {'seed': job, 'stream': {'name': 'legion10', 'order': 'curriculum'},
                       'env': {'embodiment': 'kuka'}}})
    write_run(sweep / 'other' / '0', metrics={
        'tasks': TASKS, 'success_matrix': MATRIX, 'mode': 'lifelong',
        'config': {'seed': 0, 'stream': {'name': 'legion10', 'order': 'random'},
                   'env': {'embodiment': 'kuka'}}})
    assert main(['report', str(sweep)]) == 0
    assert 'sweep_report.md' in capsys.readouterr().out
    text = (sweep / 'sweep_report.md').read_text()
    mean, half = mean_ci(finals)
    assert half == pytest.approx(4.303 * np.std(finals, ddof=1) / np.sqrt(3), rel=1e-3)  # t(0.975, 2)
    assert f'| final success | {mean:.3f} ± {half:.3f} | 0.821 ± 0.052 (7 seeds) |' in text
    assert '## legion10, curriculum order, lifelong, kuka (3 runs)' in text
    assert '## legion10, random order, lifelong, kuka (1 runs)' in text
    assert '| forgetting | -0.047 ± 0.081 |' not in text  # one run: no interval
    assert (sweep / 'sweep_curves.png').read_bytes().startswith(PNG_SIGNATURE)
    assert main(['report', str(tmp_path / 'empty')]) == 2


def test_evaluations_of_the_tasks_seen_leave_gaps_and_stay_out_of_the_mean(tmp_path):
    from legion_core.report import overall_curve, task_series

    # train.eval_tasks: seen: inside phase 1 only reach and push are evaluated; every task at its end.
    evals = [{'env_steps': 10, 'phase': 1, 'task': t, 'success': s, 'return': 0.0}
             for t, s in (('reach-v3', 1.0), ('push-v3', 0.2))]
    evals += [{'env_steps': 20, 'phase': 1, 'task': t, 'success': s, 'return': 0.0}
              for t, s in (('reach-v3', 0.8), ('push-v3', 0.6), ('door-open-v3', 0.1))]
    steps, success = task_series(evals, TASKS)
    assert steps.tolist() == [10, 20]
    np.testing.assert_array_equal(success, [[1.0, 0.2, np.nan], [0.8, 0.6, 0.1]])
    steps, means = overall_curve(evals, TASKS)
    assert steps.tolist() == [20]  # a mean over reach and push alone would read 0.6 and then fall to 0.5
    np.testing.assert_allclose(means, [0.5])
    assert write_report(write_run(tmp_path / 'run', evals=evals), tmp_path / 'out')  # draws with the gaps


def test_phases_ended_by_hand_and_settings_changed_at_a_resume_are_reported(tmp_path):
    metrics = {
        'tasks': TASKS, 'success_matrix': MATRIX, 'dpmm': [], 'mode': 'lifelong',
        'phases': [{'phase': 0, 'task': 'reach-v3', 'local_steps': 4000, 'solved': True, 'env_steps': 4000},
                   {'phase': 1, 'task': 'push-v3', 'local_steps': 9000, 'solved': False, 'env_steps': 13000},
                   {'phase': 2, 'task': 'door-open-v3', 'local_steps': 10000, 'solved': False,
                    'env_steps': 23000}]}
    stalled = {**metrics['phases'][2], 'local_steps': 12000, 'env_steps': 25000, 'ended': 'stalled'}
    run = write_run(tmp_path / 'run', metrics=metrics)
    (run / 'config_changes.jsonl').write_text(
        json.dumps({'env_steps': 6000, 'changed': {'train.current_ratio': [None, 0.5],
                                                   'agent.demo_q_filter': [True, False]}}) + '\n'
        + 'not json, a torn line\n'
        + json.dumps({'env_steps': 13000,
                      'ended_phase': {'phase': 1, 'task': 'push-v3', 'local_steps': 9000}}) + '\n')
    text = write_report(run, tmp_path / 'out')['report'].read_text()
    assert '| 1 | push | 9000 | by hand (--end-phase) | 13000 |' in text
    assert '| 2 | door-open | 10000 | at its budget | 23000 |' in text
    assert '| 6000 | `train.current_ratio` null → 0.5, `agent.demo_q_filter` true → false |' in text
    assert '| 13000 | phase 1 (push) ended by hand after 9000 steps |' in text
    # train.carry_min_success ended it past its own budget
    run = write_run(tmp_path / 'stalled', metrics={**metrics, 'phases': [*metrics['phases'][:2], stalled]})
    text = write_report(run, tmp_path / 'out_stalled')['report'].read_text()
    assert '| 2 | door-open | 12000 | stalled on saved steps | 25000 |' in text
