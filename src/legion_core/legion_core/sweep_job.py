"""One job of a ``legion train -m`` sweep: start its run, or continue it after a preemption or requeue.

A sweep job's run directory is Hydra's ``<hydra.sweep.dir>/<job number>``. It is the same every time the
job runs: a requeued SLURM job (submitit pickles the launcher with the job's overrides and number, and
Hydra resolves ``${now:...}`` in the sweep directory from the cache the pickle carries) and the same sweep
submitted again with the same ``hydra.sweep.dir`` land in it. So a job that finds its own checkpoint there
continues from it (``legion train --resume``), and one that finds another run's config refuses.

Under submitit (``hydra/launcher=slurm``, ``submitit_slurm``, ``local``, ``submitit_local``) the job also
takes part in submitit's checkpointing protocol:

- its preemption / time-limit signal (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise; SLURM
  sends it ``signal_delay_s`` before the time limit, ``scancel --signal=USR2`` at will, and at preemption
  where the cluster has ``SchedulerParameters=preempt_send_user_signal``) makes the trainer write a
  checkpoint at the next step boundary and stop; then submitit's own handler resubmits the launcher with
  the same arguments and requeues the job (``scontrol requeue``; the local executor restarts it), which
  lands here again and resumes;
- SIGTERM (what SLURM sends at a preemption with a grace time, and before a kill) makes the trainer
  write a checkpoint at the next step boundary and go on; if the job is then killed and requeued
  (``PreemptMode=REQUEUE``), it resumes from that checkpoint.

Without either notice a killed job loses at most the steps since its last periodic checkpoint
(``train.checkpoint_every``).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: What Hydra itself writes into a job's directory before the job runs.
HYDRA_DIR = '.hydra'


class SweepJobError(ValueError):
    """The job's directory holds something that is not this job's run."""


def _differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = '') -> list[str]:
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f'{prefix}{key}.')
        elif a != b:
            out.append(f'{prefix}{key}: {a!r} there, {b!r} in this job')
    return out


def _filled(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every typed group as the code reads it: a key added after the run was written takes
    the value it had there (its default, or ``ABSENT``'s), so a job requeued across an upgrade that only
    added keys still finds its own run."""
    from legion_core.config import GROUPS
    from legion_core.config_section import ConfigError

    out = dict(config)
    for group, cls in GROUPS.items():
        # A group the code refuses is compared as written: the difference names the key.
        with contextlib.suppress(ConfigError):
            if isinstance(out.get(group), dict):
                out[group] = cls.from_dict(out[group]).to_dict()
    return out


def prepare_job_dir(run_dir: Path, data: dict[str, Any], hydra_files: tuple[str, ...] = ()) -> bool:
    """Whether the job continues a run in ``run_dir`` (True) or starts one (False); raises
    :class:`SweepJobError` when the directory holds anything else.

    ``data`` is the job's resolved config; the run there must have the same one (``run_dir`` aside: its
    default holds the time). An earlier attempt killed before its first checkpoint has nothing to continue:
    its run files are removed and the run starts afresh. Other files beside a run (``legion report``'s,
    a user's notes) stay. ``hydra_files``: the names Hydra writes there itself (``.hydra`` and the job's
    log).
    """
    from omegaconf import OmegaConf

    from legion_core.checkpoint import CHECKPOINT_DIR, LAST
    from legion_core.trainer import CONFIG_FILE, run_files

    if not run_dir.is_dir():
        return False
    present = sorted(p.name for p in run_dir.iterdir() if p.name not in (HYDRA_DIR, *hydra_files))
    if not present:
        return False
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        raise SweepJobError(f'sweep job directory {run_dir} holds {", ".join(present[:6])} but no run of '
                            f'`legion train` (no {CONFIG_FILE}): choose another hydra.sweep.dir')
    saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True)
    differences = _differences({k: v for k, v in _filled(saved).items() if k != 'run_dir'},
                               {k: v for k, v in _filled(data).items() if k != 'run_dir'})
    if differences:
        raise SweepJobError(f'sweep job directory {run_dir} holds a run of another configuration ('
                            + '; '.join(differences[:4]) + ('; ...' if len(differences) > 4 else '')
                            + '): choose another hydra.sweep.dir')
    if (run_dir / CHECKPOINT_DIR / LAST).is_file():
        return True
    import shutil

    for name in set(present) & set(run_files()):  # an attempt ended before its first checkpoint
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return False


def _submitit_notice_signal() -> tuple[int, Callable] | None:
    """(signal, submitit's handler) when this process is a submitit job with its requeue handler
    installed; None otherwise (a plain run, Hydra's basic launcher, ``srun legion train``)."""
    if 'submitit' not in sys.modules:
        return None
    try:
        from submitit.core.job_environment import JobEnvironment, SignalHandler

        signum = JobEnvironment._usr_sig()
    except (ImportError, AttributeError, RuntimeError):
        return None
    handler = signal.getsignal(signum)
    if not isinstance(getattr(handler, '__self__', None), SignalHandler):
        return None
    return signum, handler


@contextmanager
def scheduler_notices(trainer) -> Iterator[dict[str, Any]]:
    """While training in a submitit job: its notice signal asks ``trainer`` to checkpoint and stop
    (recorded in the yielded dict as ``requeue``: submitit's handler, to call afterwards), SIGTERM to
    checkpoint and go on. Outside a submitit job it does nothing. The previous handlers come back on exit."""
    notice: dict[str, Any] = {}
    found = _submitit_notice_signal()
    if found is None:
        yield notice
        return
    signum, requeue = found
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_notice(received: int, frame: Any) -> None:
        log.warning('signal %s: checkpoint at the next step, then requeue', signal.Signals(received).name)
        notice['requeue'] = lambda: requeue(received, frame)
        trainer.request_stop()

    def on_term(received: int, frame: Any) -> None:
        log.warning('SIGTERM: checkpoint at the next step (a preemption or a kill may follow)')
        trainer.request_checkpoint()

    signal.signal(signum, on_notice)
    signal.signal(signal.SIGTERM, on_term)
    try:
        yield notice
    finally:
        signal.signal(signum, requeue)
        signal.signal(signal.SIGTERM, previous_term)


def run_job(cfg: Any, run_dir: Path, *, max_env_steps: int | None = None, progress: bool = True,
            hydra_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """Start or continue this sweep job's run in ``run_dir``; returns its metrics.

    In a submitit job whose notice signal arrived, the trainer stops with a checkpoint and submitit
    requeues the job (this call then does not return: submitit exits the process)."""
    from legion_core.config import to_container
    from legion_core.trainer import Trainer, resume_trainer

    data = to_container(cfg) if not isinstance(cfg, dict) else cfg
    if prepare_job_dir(run_dir, data, hydra_files):
        trainer = resume_trainer(run_dir, progress=progress)
        print(f'legion train: {run_dir} continues from its checkpoint at env step '
              f'{trainer.position["env_steps"]}', file=sys.stderr, flush=True)
    else:
        print(f'legion train: run directory {run_dir}', file=sys.stderr, flush=True)
        trainer = Trainer(data, run_dir, progress=progress)
    with scheduler_notices(trainer) as notice:
        metrics = trainer.run(max_env_steps=max_env_steps)
    if 'requeue' in notice and not metrics.get('complete'):
        trainer.close()
        print(f'legion train: {run_dir} stopped at env step {metrics.get("env_steps")} with a checkpoint; '
              'requeueing', file=sys.stderr, flush=True)
        # SLURM's requeue signals every process of the job at once, the `scontrol requeue` that asked for
        # it included; killed before it returns, submitit takes the requeue for failed and reports the
        # job as such. SIG_IGN is inherited by the child: both live until submitit exits (measured on a
        # single-node SLURM, where scontrol lost that race).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        notice['requeue']()  # submitit: resubmit with the same arguments, requeue, exit
    return metrics
