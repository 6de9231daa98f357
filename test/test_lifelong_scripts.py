"""The lifelong scripts on a real (tiny) run: relabel_own_teachers.py (a run that ran with
distill_teacher=last), bench_offline_forgetting.py, bench_policy_average.py, bench_actor_capacity.py,
bench_phase_forgetting.py and bench_dpmm_clusters.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from legion_core.config import compose_config, to_container
from legion_core.trainer import Trainer, resume_trainer

SCRIPTS = Path(__file__).resolve().parents[1] / 'scripts'
TINY = ['stream.tasks=[reach-v3,push-v3,drawer-close-v3]', 'device=cpu', 'preset=tiny',
        'agent.distill=1.0', 'agent.distill_teacher=last', 'train.steps_per_task=100',
        'train.warmup_steps=50', 'train.eval_every=0', 'train.keep_phase_checkpoints=true',
        'replay.capacity=2000']


def _labels(trainer, task):
    slots = trainer.replay.stored_slots()
    slots = slots[trainer.replay.storage['task'][slots] == task]
    return trainer.replay.storage['obs'][slots], trainer.replay.storage['teacher_action'][slots]


def test_finished_tasks_get_the_teacher_of_their_own_phase_end(tmp_path):
    trainer = Trainer(to_container(compose_config(TINY)), tmp_path, progress=False)
    trainer.run(max_env_steps=200)  # reach and push finished; under `last` both carry push's end teacher
    trainer.close()
    phase_0 = torch.load(tmp_path / 'checkpoints' / 'phase_0.pt', weights_only=False)['agent']['teacher']

    done = subprocess.run([sys.executable, str(SCRIPTS / 'relabel_own_teachers.py'), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1])['labelled_rows'] == {'reach-v3': 100, 'push-v3': 100}
    changes = [json.loads(line) for line in (tmp_path / 'config_changes.jsonl').read_text().splitlines()]
    assert changes[-1]['changed'] == {'agent.distill_teacher': ['last', 'own']}

    resumed = resume_trainer(tmp_path, progress=False)
    assert resumed.config.agent.distill_teacher == 'own'
    latest = {name: value.clone() for name, value in resumed.agent.teacher.state_dict().items()}
    reach_obs, reach = _labels(resumed, 0)
    reach_task = torch.zeros(len(reach_obs))
    resumed.agent.teacher.load_state_dict(phase_0)
    torch.testing.assert_close(reach, resumed.agent.teacher_actions(reach_obs, reach_task))
    resumed.agent.teacher.load_state_dict(latest)  # the checkpoint's own teacher was kept
    assert not torch.allclose(reach, resumed.agent.teacher_actions(reach_obs, reach_task))
    push_obs, push = _labels(resumed, 1)
    torch.testing.assert_close(push, resumed.agent.teacher_actions(push_obs, torch.ones(len(push_obs))))


def test_offline_forgetting_checks_each_earlier_task_and_leaves_the_run_alone(tmp_path):
    trainer = Trainer(to_container(compose_config(TINY)), tmp_path, progress=False)
    trainer.run(max_env_steps=200)
    trainer.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    checkpoint = (tmp_path / 'checkpoints' / 'last.pt').read_bytes()

    done = subprocess.run([sys.executable, str(SCRIPTS / 'bench_offline_forgetting.py'), str(tmp_path),
                           '--updates', '20', '--checks', '2', 'train.current_ratio=0.5', 'agent.distill=5'],
                          capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r['updates'] for r in records] == [0, 10, 20]
    for record in records:
        assert set(record['distance']) == set(record['success']) == {'reach-v3', 'push-v3'}
        assert all(d >= 0 for d in record['distance'].values())
    assert records[0]['distance']['push-v3'] == 0  # push's rows were labelled with these very actions
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert (tmp_path / 'checkpoints' / 'last.pt').read_bytes() == checkpoint


def test_policy_average_bench_scores_the_live_policy_and_each_average_on_the_same_episodes(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / 'bench_policy_average.py'), '--task', 'reach-v3', '--embodiment',
         'kuka', '--budget', '300', '--eval-every', '100', '--eval-episodes', '2', '--decays', '1e-9,0.9',
         '--run-dir', str(tmp_path), 'preset=tiny', 'train.warmup_steps=50', 'train.demo_episodes=1',
         'train.demo_pretrain=10'], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    rows, result = lines[:-1], lines[-1]
    assert [r['env_steps'] for r in rows] == [50, 150, 250, 350]  # after one demonstration, then every 100
    assert result['env_steps'] == 350 and set(result['success']) == {'live', '1e-09', '0.9'}
    # An average that forgets at once is the live policy: the same success on the same episodes.
    assert [r['1e-09'] for r in rows] == [r['live'] for r in rows] == result['success']['live']['curve']
    evals = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    assert [e['success'] for e in evals] == [r['live'] for r in rows]  # the run's own evaluations: live


def test_actor_capacity_fits_each_size_to_the_finished_tasks_teachers(tmp_path):
    trainer = Trainer(to_container(compose_config(TINY)), tmp_path, progress=False)
    trainer.run(max_env_steps=200)  # reach and push finished, drawer-close not begun
    trainer.close()
    checkpoint = (tmp_path / 'checkpoints' / 'last.pt').read_bytes()

    done = subprocess.run([sys.executable, str(SCRIPTS / 'bench_actor_capacity.py'), str(tmp_path),
                           '--sizes', '8x1,16x2', '--steps', '300', '--eval', 'reach-v3', '--episodes', '2',
                           '--horizon', '10'], capture_output=True, text=True, check=True)
    acting, *fitted = [json.loads(line) for line in done.stdout.splitlines()]
    assert acting['finished'] == ['reach-v3', 'push-v3'] and acting['rows'] == 160  # 40 of 200 held out
    # Under distill_teacher=last both carry push's end teacher, the acting actor itself: distance 0.
    assert acting['distance'] == {'reach-v3': 0, 'push-v3': 0}
    assert [f['actor'] for f in fitted] == ['8x1', '16x2']
    assert fitted[0]['parameters'] < fitted[1]['parameters']
    for record in fitted:
        assert set(record['distance']) == {'reach-v3', 'push-v3'}
        assert 0 < record['distance']['reach-v3'] < 4  # a fit: neither exact nor unbounded
        assert record['success']['reach-v3']['rate'] in (0.0, 0.5, 1.0)
        assert len(record['success']['reach-v3']['steps']) == 2
    assert (tmp_path / 'checkpoints' / 'last.pt').read_bytes() == checkpoint
    # Each task's newest rows (here all of them: fewer than the script takes per task).
    done = subprocess.run([sys.executable, str(SCRIPTS / 'bench_actor_capacity.py'), str(tmp_path),
                           '--rows', 'latest', '--sizes', '8x1', '--steps', '10'],
                          capture_output=True, text=True, check=True)
    acting, fitted = [json.loads(line) for line in done.stdout.splitlines()]
    assert acting['rows'] == 160 and fitted['actor'] == '8x1' and 'success' not in fitted


def test_phase_forgetting_replays_the_next_phase_from_a_phase_end_and_leaves_the_run_alone(tmp_path):
    run, copy = tmp_path / 'run', tmp_path / 'copy'
    trainer = Trainer(to_container(compose_config(TINY)), run, progress=False)
    trainer.run(max_env_steps=200)  # reach and push finished
    trainer.close()
    before = {p.name: p.read_bytes() for p in (run / 'checkpoints').iterdir()}

    done = subprocess.run([sys.executable, str(SCRIPTS / 'bench_phase_forgetting.py'), str(run),
                           '--phase', '0', '--out', str(copy), '--episodes', '2', '--dart', '2',
                           'agent.distill=5.0'],
                          capture_output=True, text=True, check=True)
    record = json.loads(done.stdout.splitlines()[-1])
    assert record['dart']['rows'] == 2 * 50  # two noisy episodes of 50 steps, a row each
    assert record['next_phase']['task'] == 'push-v3' and record['next_phase']['local_steps'] == 100
    for when in ('before', 'after'):
        assert list(record[when]) == ['reach-v3'] and len(record[when]['reach-v3']['steps']) == 2
    resumed = torch.load(copy / 'checkpoints' / 'phase_1.pt', weights_only=False)
    assert resumed['config']['agent']['distill'] == 5.0 and resumed['position']['phase'] == 2
    # Reach's 100 rows and the 100 DART rows, then push's 100 of the replayed phase.
    last = torch.load(copy / 'checkpoints' / 'last.pt', weights_only=False)['replay']
    assert torch.bincount(last['storage']['task'][:last['size']]).tolist() == [200, 100]
    assert {p.name: p.read_bytes() for p in (run / 'checkpoints').iterdir()} == before


def test_dpmm_clusters_refits_every_phase_end_under_each_option_set(tmp_path):
    trainer = Trainer(to_container(compose_config(TINY)), tmp_path, progress=False)
    trainer.run(max_env_steps=300)  # all three phases
    trainer.close()
    checkpoint = (tmp_path / 'checkpoints' / 'last.pt').read_bytes()

    done = subprocess.run([sys.executable, str(SCRIPTS / 'bench_dpmm_clusters.py'), str(tmp_path),
                           '--options', ';sF=0.3', '--seeds', '0,1', '--batch', '300'],
                          capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"')]
    assert [row['options']['sF'] for row in rows] == [trainer.config.dpmm.options['sF'], 0.3]
    for row in rows:
        assert list(row['K']) == ['0', '1', '2'] and all(len(ks) == 2 for ks in row['K'].values())
        assert all(1 <= k <= 20 for ks in row['K'].values() for k in ks)
        assert all(0 < purity <= 1 for purity in row['purity'].values())
    assert (tmp_path / 'checkpoints' / 'last.pt').read_bytes() == checkpoint
