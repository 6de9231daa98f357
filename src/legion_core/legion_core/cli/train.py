"""`legion train`: train a LEGION agent on a task stream (a Hydra app over the packaged config tree).

Single runs compose the config with Hydra's compose API, validate it, and train in-process; ``-m``
sweeps go through Hydra's own launcher (``@hydra.main``), one run directory per job.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import legion_core

CONFIG_DIR = Path(legion_core.__file__).resolve().parent / 'config'
EXIT_BAD_CONFIG = 2


def launchers() -> list[str]:
    """The options of ``hydra/launcher`` (where the jobs of a ``-m`` sweep run) on this install: Hydra's
    ``basic``, ours in config/train/hydra/launcher, and the submitit plugin's own when it is installed."""
    from importlib.util import find_spec

    ours = sorted(f.stem for f in (CONFIG_DIR / 'hydra' / 'launcher').glob('*.yaml'))
    plugin = ['submitit_local', 'submitit_slurm'] \
        if find_spec('hydra_plugins.hydra_submitit_launcher') is not None else []
    return ['basic', *ours, *plugin]


def _groups_epilog() -> str:
    lines = ['config groups (choose with GROUP=OPTION):']
    if CONFIG_DIR.is_dir():
        for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != 'hydra'):
            options = ', '.join(sorted(f.stem for f in group.glob('*.yaml')))
            lines.append(f'  {group.name:<8} {options}')
    lines += [
        '',
        'where the jobs of a -m sweep run (hydra/launcher=OPTION; settings: --cfg hydra/launcher=OPTION):',
        f'  {", ".join(launchers())}',
        '  basic (the default): one job after another in this process; local: all jobs at once, each a',
        '  process on this machine; slurm: each job a SLURM job (time, cpus, mem, partition, gres: keys of',
        '  hydra.launcher). Under local and slurm a preempted or timed-out job writes a checkpoint, is',
        '  requeued and continues its own run directory; the same sweep given again with the same',
        '  hydra.sweep.dir continues its unfinished runs.',
        '',
        'examples:',
        '  legion train preset=tiny                              # a CI-sized run (a few thousand steps)',
        '  legion train stream=cw10 train.steps_per_task=20000 agent.batch_size=256 seed=3',
        '  legion train preset=original                # the reference settings (1 M steps per task)',
        '  legion train preset=legion10_recipe seed=0   # the stream the shipped policy comes from (hours)',
        '  legion train train=multitask stream=mt10',
        '  legion train replay=reservoir replay.capacity=200000   # explicit replay policy',
        '  legion train -m seed=0,1,2                            # a Hydra sweep, one run dir per job',
        "  legion train -m hydra/launcher=slurm hydra.launcher.partition=gpu 'seed=range(10)' \\",
        '      stream.order=curriculum,reverse,random            # 30 SLURM jobs; legion report SWEEP_DIR',
        '  legion train run_dir=runs/mine preset=tiny            # choose the run directory',
        '  legion train --resume runs/2026-01-01/12-00-00_legion10_seed0',
        '  legion train --resume RUN_DIR --append hammer,shelf-place   # an open-ended stream goes on',
        '  legion train --resume RUN_DIR train.eval_tasks=seen agent.demo_bc=0   # go on with other settings',
        '  legion train --resume RUN_DIR --end-phase              # give up on the current task, go on',
        '  legion train --overwrite run_dir=runs/mine preset=tiny  # start runs/mine afresh',
        '  legion train env.embodiment=twin train.demo_episodes=20 agent.demo_bc=1   # with expert demos',
        '',
        'A run directory that is not empty is refused (exit 2) unless --resume continues the run in it',
        'or --overwrite removes the earlier run\'s files first: two runs never mix in one directory.',
        '',
        'Every key of the config can be overridden (see --cfg for the resolved config). Runs write',
        'config.yaml, evals.jsonl, metrics.json, TensorBoard events (tb/) and checkpoints/ in the run',
        'directory; `legion report RUN_DIR` draws them. Ctrl-C or SIGTERM (kill, docker stop) stops a',
        'run with a checkpoint (SIGTERM: exit 143); --resume continues it. A resumed run may change',
        'only how it is evaluated and checkpointed, when a phase counts as learnt, how demonstrations',
        'are cloned, how batches share the replay between tasks, whose actions finished tasks keep and',
        'how the DPMM draws its fit batches (legion_core.config.RESUMABLE); config_changes.jsonl records',
        'each change, and each phase ended by --end-phase.',
    ]
    return '\n'.join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'train', help='train a LEGION agent on a task stream (Hydra overrides: key=value)',
        description=('Train LEGION (SAC + language-conditioned VAE with a DPMM latent prior) on a '
                     'Meta-World task stream, lifelong (one task after another) or multi-task. The '
                     'configuration is a Hydra config tree; overrides are key=value arguments. The '
                     'config is validated before any work starts: a bad value exits with code 2 and '
                     'a message naming it.'),
        epilog=_groups_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                        help='Hydra overrides, e.g. stream=cw10 train.steps_per_task=20000 seed=3')
    parser.add_argument('-m', '--multirun', action='store_true',
                        help='sweep over comma-separated values with Hydra\'s launcher (e.g. seed=0,1,2)')
    parser.add_argument('--resume', metavar='RUN_DIR',
                        help='continue the run in RUN_DIR from its last checkpoint; KEY=VALUE then '
                             'changes only the settings a checkpoint does not depend on (see below)')
    parser.add_argument('--append', metavar='TASK[,TASK...]',
                        help='with --resume: add these tasks after the run\'s stream (lifelong runs, '
                             'finished or not) and go on learning them with the learnt agent')
    parser.add_argument('--end-phase', action='store_true',
                        help='with --resume: end the current task\'s phase now, as if its budget were '
                             'spent (its final evaluation, then the next task; its remaining steps are '
                             'not handed on), for a task that is going nowhere; recorded in '
                             'config_changes.jsonl')
    parser.add_argument('--overwrite', action='store_true',
                        help='start afresh in a run directory that holds an earlier run: its run files '
                             '(config.yaml, evals.jsonl, metrics.json, tb/, checkpoints/, ...) are removed '
                             'first; any other file there is left alone and refuses the start')
    parser.add_argument('--cfg', action='store_true', help='print the resolved config as YAML and exit')
    parser.add_argument('--max-steps', type=int, metavar='N',
                        help='stop after N more env steps, leaving a checkpoint to resume from')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(handler=run)


def _error(message: str) -> int:
    print(f'legion train: {message}', file=sys.stderr)
    return EXIT_BAD_CONFIG


def _summary(metrics: dict, run_dir: Path) -> str:
    keep = ('final_success', 'forgetting', 'own_phase', 'stream_average', 'env_steps', 'wall_time_s',
            'complete')
    return json.dumps({'run_dir': str(run_dir), **{k: metrics.get(k) for k in keep},
                       'dpmm': metrics.get('dpmm')})


def claim_run_dir(run_dir: Path, overwrite: bool) -> str | None:
    """Make ``run_dir`` ready for a new run, or say why not (nothing is touched then).

    A directory holding an earlier run would mix two runs (its config.yaml kept, evals.jsonl appended,
    and a later --resume reading the wrong config), so it is refused unless ``overwrite``; even then
    only the earlier run's own files go, never a file this command did not write."""
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return f'run_dir {run_dir} exists and is not a directory'
    present = sorted(p.name for p in run_dir.iterdir())
    if not present:
        return None
    if not overwrite:
        return (f'run directory {run_dir} is not empty ({", ".join(present[:6])}'
                f'{", ..." if len(present) > 6 else ""}): continue that run with '
                f'`legion train --resume {run_dir}`, start it afresh with --overwrite, '
                'or choose another run_dir')
    from legion_core.trainer import run_files

    foreign = [name for name in present if name not in run_files()]  # only run files are removed
    if foreign:
        return (f'--overwrite removes only an earlier run\'s files, but {run_dir} also holds '
                f'{", ".join(foreign[:6])}; choose another run_dir')
    import shutil

    for name in present:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    print(f'legion train: --overwrite removed the earlier run in {run_dir} ({", ".join(present)})',
          file=sys.stderr)
    return None


def run(args: argparse.Namespace) -> int:
    if args.max_steps is not None and args.max_steps < 1:
        return _error(f'--max-steps must be a positive integer, got {args.max_steps}')
    if args.append and not args.resume:
        return _error('--append adds tasks to an existing run: give it with --resume RUN_DIR')
    if args.end_phase and not args.resume:
        return _error('--end-phase ends the current phase of an existing run: give it with --resume RUN_DIR')
    if args.overwrite and (args.resume or args.multirun):
        return _error('--overwrite starts one run afresh; it goes with neither --resume nor -m')
    if args.resume:
        if args.multirun:
            return _error('--resume continues one run with its saved config.yaml; it takes no -m')
        from legion_core.checkpoint import RunInUseError
        from legion_core.trainer import resume_trainer

        run_dir = Path(args.resume)
        append = [t for t in (args.append or '').split(',') if t.strip()]
        try:
            trainer = resume_trainer(run_dir, progress=not args.no_progress, append_tasks=append,
                                     overrides=args.overrides, end_phase=args.end_phase)
        except (FileNotFoundError, ValueError, RunInUseError) as error:
            return _error(str(error))
        return _train(trainer, run_dir, args.max_steps)
    chooses_launcher = any(o.lstrip('+~').startswith(('hydra/launcher', 'hydra.launcher'))
                           for o in args.overrides)
    if args.multirun:
        if args.cfg:
            return _error('--cfg prints the config of one run: give it single values and no -m (with '
                          'hydra/launcher=... it also prints that launcher\'s settings)')
        return _multirun(args)
    if chooses_launcher and not args.cfg:
        return _error('hydra/launcher picks where the jobs of a sweep run: add -m (a sweep of one job is '
                      'fine: legion train -m hydra/launcher=slurm seed=0)')

    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from legion_core.config import compose_config, to_container, validate

    try:
        cfg = compose_config(args.overrides, with_hydra=chooses_launcher)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        return _error(f'bad override: {error}')
    if args.cfg:
        print(OmegaConf.to_yaml(OmegaConf.create(to_container(cfg))))
        if chooses_launcher:
            launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
            print(OmegaConf.to_yaml(OmegaConf.create({'hydra': {'launcher': launcher}})))
        return 0
    problems = validate(cfg)
    if problems:
        return _error('invalid configuration:\n' + '\n'.join(f'  - {p}' for p in problems))
    from legion_core.trainer import Trainer

    data = to_container(cfg)
    run_dir = Path(data['run_dir'])
    refused = claim_run_dir(run_dir, args.overwrite)
    if refused:
        return _error(refused)
    print(f'legion train: run directory {run_dir}', file=sys.stderr)
    return _train(Trainer(data, run_dir, progress=not args.no_progress), run_dir, args.max_steps)


def _train(trainer, run_dir: Path, max_steps: int | None) -> int:
    """Run ``trainer``; SIGTERM (``kill``, ``docker stop``, systemd, a scheduler) ends the run as Ctrl-C
    does: a checkpoint at the next step boundary, then exit 143 (128 + SIGTERM), ready for --resume.
    A job started in the background of a script has SIGINT ignored, so SIGTERM is the way to stop it."""
    import signal

    def on_term(_signum, _frame) -> None:
        trainer.request_stop()

    from legion_core.checkpoint import RunInUseError

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        metrics = trainer.run(max_env_steps=max_steps)
    except RunInUseError as error:  # another process went on with this run in the meantime
        return _error(str(error))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if trainer.stop_requested:
        print(f'legion train: stopped by SIGTERM with a checkpoint at env step {metrics["env_steps"]}; '
              f'continue with: legion train --resume {run_dir}', file=sys.stderr)
        return 128 + signal.SIGTERM
    print(_summary(metrics, run_dir))
    return 0


def _multirun(args: argparse.Namespace) -> int:
    import hydra

    # Importing it puts the groups' defaults into Hydra's ConfigStore, which config.yaml names.
    from legion_core import config as training_config

    max_steps, progress = args.max_steps, not args.no_progress

    @hydra.main(config_path=str(CONFIG_DIR), config_name='config', version_base='1.3')
    def app(cfg) -> None:
        # training_config is in this function's closure on purpose: a submitit job unpickles the
        # function, which imports the module, before Hydra composes the job's config in that process.
        from hydra.core.hydra_config import HydraConfig

        from legion_core.sweep_job import SweepJobError, run_job

        problems = training_config.validate(cfg)
        if problems:
            # SystemExit passes through Hydra's job runner, so the sweep stops with code 2.
            sys.exit(_error('invalid configuration:\n' + '\n'.join(f'  - {p}' for p in problems)))
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        try:
            # A job that finds its own checkpoint (requeued after a preemption or its time limit, or the
            # sweep submitted again into the same hydra.sweep.dir) continues it.
            metrics = run_job(cfg, run_dir, max_env_steps=max_steps, progress=progress,
                              hydra_files=(f'{hydra_cfg.job.name}.log',))
        except SweepJobError as error:
            sys.exit(_error(str(error)))
        print(_summary(metrics, run_dir))

    saved = sys.argv
    sys.argv = ['legion train', '--multirun', *args.overrides]
    try:
        app()
    finally:
        sys.argv = saved
    return 0
