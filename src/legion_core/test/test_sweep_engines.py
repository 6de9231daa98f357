"""Sweeps through the real engines: `legion train -m` with submitit's local executor, and on a
single-node SLURM cluster (Debian's slurmctld + slurmd, started by the test), each with a job that is
interrupted mid-run and continues its own run directory from its checkpoint.

Tiny runs (preset=tiny: 2 tasks x 1,000 steps, or 1,500 where the run must outlast a preemption's grace
time; a checkpoint every 200 steps). The sweep directory holds
``${now:...%f}``: were it resolved anew when a job is requeued, the job would land in another directory.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import slurm_cluster

TINY = ['preset=tiny', 'seed=0,1', 'train.checkpoint_every=200']


def _start_sweep(root: Path, launcher_overrides: list[str], steps_per_task: int, env: dict | None = None):
    argv = [sys.executable, '-m', 'legion_core.cli.main', 'train', '-m', *launcher_overrides, *TINY,
            f'train.steps_per_task={steps_per_task}',
            f'hydra.sweep.dir={root}/sweep_' + '${now:%H-%M-%S_%f}', '--no-progress']
    out = open(root / 'parent.log', 'w')  # noqa: SIM115 - the child holds it
    parent = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ))
    out.close()
    return parent


def _wait(what: str, predicate, parent, root: Path, timeout_s: float = 240.0, extra=lambda: '',
          meanwhile=lambda: None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meanwhile()
        value = predicate()
        if value:
            return value
        if parent.poll() is not None:
            break
        time.sleep(0.25)
    pytest.fail(f'{what}: not within {timeout_s:.0f} s (sweep exit code {parent.poll()})\n'
                f'{(root / "parent.log").read_text()[-3000:]}\n{_job_logs(root)}\n{extra()}')


def _sweep_dir(root: Path) -> Path | None:
    found = sorted(root.glob('sweep_*'))
    return found[0] if len(found) == 1 else None


def _job_log(sweep: Path, job: int) -> str:
    """What the job printed to stderr, over all its attempts (submitit appends to its log files)."""
    for path in sorted(sweep.glob('.submitit/*/*_log.err')):
        text = path.read_text(errors='replace')
        if f'run directory {sweep / str(job)}\n' in text:
            return text
    return ''


def _job_logs(root: Path) -> str:
    logs = sorted(root.glob('sweep_*/.submitit/*/*_log.*'))
    return '\n'.join(f'== {p}\n{p.read_text(errors="replace")[-1500:]}' for p in logs)


def _has_checkpoint(sweep: Path | None, job: int) -> bool:
    return sweep is not None and (sweep / str(job) / 'checkpoints' / 'last.pt').is_file()


def _check_runs(root: Path, steps: int) -> Path:
    """Both runs complete in the one sweep directory, each evaluation logged once; the sweep report reads
    them. Returns the sweep directory."""
    sweep = _sweep_dir(root)
    assert sweep is not None, sorted(p.name for p in root.iterdir())
    rows = []
    for job in (0, 1):
        metrics = json.loads((sweep / str(job) / 'metrics.json').read_text())
        assert metrics['complete'] and metrics['env_steps'] == steps and metrics['config']['seed'] == job
        evals = [json.loads(line) for line in (sweep / str(job) / 'evals.jsonl').read_text().splitlines()]
        keys = [(e['env_steps'], e['task'], e['final']) for e in evals]
        assert len(keys) == len(set(keys)), 'an evaluation was logged twice'
        rows.append(len(keys))
    assert rows[0] == rows[1]  # the interrupted job logged what the uninterrupted one did
    report = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'report', str(sweep)],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert (sweep / 'sweep_report.md').is_file()
    return sweep


def _leftovers(marker: str) -> list[str]:
    """Processes whose command line, environment or open files mention ``marker`` (a test's own
    directory: slurmstepd, for one, clears its environment but keeps the cluster's log open)."""
    found = []
    for proc in psutil.process_iter(['pid', 'cmdline']):
        try:
            if proc.pid == os.getpid():
                continue
            if marker in ' '.join(proc.info['cmdline'] or []) or \
                    any(marker in value for value in proc.environ().values()) or \
                    any(f.path.startswith(marker) for f in proc.open_files()):
                found.append(f'{proc.pid} {" ".join(proc.info["cmdline"] or [])}')
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _local_job_process(parent, sweep: Path, job: int) -> psutil.Process | None:
    """The process running ``job`` under submitit's local executor: a child of the job's controller,
    whose pid names the job's folder and log."""
    for proc in psutil.Process(parent.pid).children(recursive=True):
        try:
            if 'submitit.core._submit' not in ' '.join(proc.cmdline()):
                continue
            job_id = proc.environ()['SUBMITIT_LOCAL_JOB_ID']
        except (psutil.NoSuchProcess, KeyError):
            continue
        log = sweep / '.submitit' / job_id / f'{job_id}_0_log.err'
        if log.is_file() and f'run directory {sweep / str(job)}\n' in log.read_text():
            return proc
    return None


@pytest.mark.slow
def test_local_sweep_requeues_a_preempted_job_which_continues_its_run(tmp_path):
    """hydra/launcher=local: two jobs at once as processes of this machine; job 0 gets submitit's
    preemption signal (SIGUSR2) mid-run, checkpoints, is requeued by submitit's local controller and
    continues from that checkpoint."""
    parent = _start_sweep(tmp_path, ['hydra/launcher=local'], 1000)
    try:
        sweep = _wait('job 0\'s first checkpoint', lambda: _has_checkpoint(_sweep_dir(tmp_path), 0) and
                      _sweep_dir(tmp_path), parent, tmp_path)
        job0 = _wait('job 0\'s process', lambda: _local_job_process(parent, sweep, 0), parent, tmp_path)
        job0.send_signal(signal.SIGUSR2)
        assert parent.wait(timeout=300) == 0, (tmp_path / 'parent.log').read_text()[-3000:]
    finally:
        if parent.poll() is None:
            parent.kill()
    sweep = _check_runs(tmp_path, 2000)
    log = _job_log(sweep, 0)
    stopped = [line for line in log.splitlines() if 'with a checkpoint; requeueing' in line]
    assert len(stopped) == 1, log
    step = int(stopped[0].split('stopped at env step ')[1].split()[0])
    assert 0 < step < 2000
    assert f'{sweep / "0"} continues from its checkpoint at env step {step}' in log
    assert 'continues from its checkpoint' not in _job_log(sweep, 1)
    time.sleep(1.0)
    assert _leftovers(str(tmp_path)) == []


@pytest.fixture
def slurm(tmp_path):
    reason = slurm_cluster.missing()
    if reason:
        if os.environ.get('LEGION_TEST_SLURM') == '1':
            pytest.fail(f'LEGION_TEST_SLURM=1 but no SLURM here: {reason}')
        pytest.skip(reason)
    with slurm_cluster.SingleNodeSlurm(tmp_path / 'cluster') as cluster:
        yield cluster
    time.sleep(1.0)
    assert _leftovers(str(tmp_path)) == []


def _release_requeued(cluster) -> None:
    """SLURM holds a requeued batch job for two minutes (Reason=BeginTime) before it may start again;
    release it at once, as an administrator would, so that the test does not wait."""
    for job_id, fields in cluster.jobs().items():
        if fields['JobState'] == 'PENDING' and fields.get('Reason') == 'BeginTime':
            cluster.run(['scontrol', 'update', f'JobId={job_id}', 'StartTime=now'], check=False)


def _resumed_at(log: str) -> list[int]:
    return [int(line.rsplit(' ', 1)[1]) for line in log.splitlines()
            if 'continues from its checkpoint at env step' in line]


@pytest.mark.slow
def test_slurm_sweep_survives_a_preemption_and_a_time_limit_signal(tmp_path, slurm):
    """hydra/launcher=slurm on a single-node SLURM (2 CPUs, one a job). A job in the high-priority
    partition needs a CPU: SLURM preempts one of the two jobs (SIGTERM, SIGKILL 3 s later, requeue:
    PreemptMode=REQUEUE), which checkpoints at the SIGTERM and continues from its last checkpoint. Then the
    other gets the signal SLURM sends before a job's time limit (SIGUSR2, here from scancel): it
    checkpoints and stops, submitit requeues it (scontrol requeue), and it continues from there."""
    launcher = ['hydra/launcher=slurm', 'hydra.launcher.cpus_per_task=1', 'hydra.launcher.mem_gb=1',
                'hydra.launcher.timeout_min=30', 'hydra.launcher.partition=low']
    parent = _start_sweep(tmp_path, launcher, 1500, env=slurm.env)

    def states() -> str:
        return str({k: (v['JobState'], v.get('Reason'), v.get('Restarts')) for k, v in slurm.jobs().items()})

    def diagnosis() -> str:
        return f'{states()}\n{slurm.logs()}'

    def restarts(job_id: str) -> str:
        return slurm.jobs()[job_id].get('Restarts')

    try:
        sweep = _wait('both jobs\' first checkpoints', lambda: _has_checkpoint(_sweep_dir(tmp_path), 0)
                      and _has_checkpoint(_sweep_dir(tmp_path), 1) and _sweep_dir(tmp_path), parent, tmp_path,
                      extra=diagnosis)
        ids = {int(k.split('_')[1]): k for k in slurm.jobs() if '_' in k}
        assert sorted(ids) == [0, 1], states()
        high = slurm.run(['sbatch', '--parsable', '-p', 'high', '-c', '1', '-o', str(tmp_path / 'high.out'),
                          '--wrap', 'sleep 2']).stdout.strip()
        preempted = _wait('a job preempted and requeued',
                          lambda: [j for j in (0, 1) if restarts(ids[j]) == '1'], parent, tmp_path,
                          extra=diagnosis, meanwhile=lambda: _release_requeued(slurm))
        assert len(preempted) == 1, states()
        signalled = 1 - preempted[0]
        slurm.run(['scancel', '--signal=USR2', ids[signalled]])
        _wait('the signalled job requeued', lambda: restarts(ids[signalled]) == '1', parent, tmp_path,
              extra=diagnosis, meanwhile=lambda: _release_requeued(slurm))
        _wait('the sweep', lambda: parent.poll() is not None, parent, tmp_path, timeout_s=300,
              extra=diagnosis, meanwhile=lambda: _release_requeued(slurm))
        assert parent.returncode == 0, (tmp_path / 'parent.log').read_text()[-3000:]
        jobs = slurm.jobs()
        assert jobs[high]['JobState'] == 'COMPLETED', states()
        assert [jobs[ids[j]]['Restarts'] for j in (0, 1)] == ['1', '1'], states()
    finally:
        if parent.poll() is None:
            parent.kill()
    sweep = _check_runs(tmp_path, 3000)

    # The preempted job: a checkpoint at the SIGTERM (Python's logging goes to the job's log in its run
    # directory, Hydra's, appended over attempts), and it went on from its last checkpoint, mid-run.
    job_log = (sweep / str(preempted[0]) / 'train.log').read_text()
    requested = [int(line.split('checkpoint at env step ')[1].split(',')[0]) for line in job_log.splitlines()
                 if 'as requested' in line]
    # (srun passes its own SIGTERM on as well: one or two.)
    assert 'SIGTERM: checkpoint at the next step' in job_log and requested, job_log
    resumed = _resumed_at(_job_log(sweep, preempted[0]))
    assert len(resumed) == 1 and requested[0] <= resumed[0] < 3000, (requested, resumed)

    # The signalled job stopped with a checkpoint and continued from exactly there.
    log = _job_log(sweep, signalled)
    stopped = [int(line.split('stopped at env step ')[1].split()[0]) for line in log.splitlines()
               if 'with a checkpoint; requeueing' in line]
    assert len(stopped) == 1 and 0 < stopped[0] < 3000, log
    assert _resumed_at(log) == stopped, log
