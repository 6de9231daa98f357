"""``trainer`` node: lifelong LEGION training in simulation as a ROS process.

* sub ``/legion/learn`` (std_msgs/String, raw bytes checked like instructions): a task to learn, by
  name (``drawer-close`` or ``drawer-close-v3``) or in words ("close the drawer", read by the
  instruction node's intent model: "pull the drawer out" asks for drawer-open, never drawer-close).
  Requests are queued in order.
* pub ``/legion/training_progress`` (String JSON, event history like ``/legion/status``): ``queued``,
  ``rejected``, ``started``, ``progress`` (env steps, phase, latest evaluation), ``phase_done``,
  ``done``, ``failed``.
* pub ``/legion/checkpoint`` (String, latched): the policy artefact (``policy.pt``) written after every
  finished task; the ``policy`` and ``task_inference`` nodes load it (``follow_trainer``).

Training is :class:`legion_core.trainer.Trainer` (the lifelong loop of ``legion train``), run on a
worker thread in chunks so that progress is published while it trains. The node keeps one open-ended
stream in ``run_dir/run_1``: the first requests start it, and requests that arrive later are appended
to it (``legion train --resume --append``): the learnt agent, its replay, DPMM and temperatures go on
with the new tasks, and tasks learnt before are not trained again. Requests that arrive while a batch
trains wait for the next one. Stopping the node (SIGINT/SIGTERM) ends a batch at the next env step
with a checkpoint, which the next start's requests continue from.
"""
from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from legion_ros import qos
from legion_ros.instructions import InstructionRejectedError, IntentMatcher, validate_instruction
from legion_ros.interfaces import CHECKPOINT, LEARN, TRAINING_PROGRESS, TrainingProgress
from legion_ros.node_base import (
    STOP_DEADLINE_S,
    NodeConfigError,
    Param,
    StatusPublisher,
    declare_parameters,
    run_node,
)
from legion_ros.provenance import BadMessageError, decode_string

PROGRESS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=32, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)

PARAMETERS = {
    'run_dir': Param('runs/ros_train', 'directory of the runs (run_<k>/ with checkpoints and policy.pt)'),
    'config_name': Param('legion', 'training config: legion (config/train/config.yaml as is) or the name '
                         'of a preset in config/train/preset (tiny, bench_learn, original)'),
    'overrides': Param([], 'more Hydra overrides of the training config, e.g. [train.steps_per_task=5000]',
                       type='string[]'),
    'chunk_steps': Param(0, 'env steps between progress messages; 0: a tenth of a task',
                         range=(0, 10_000_000)),
    'max_queue': Param(32, 'most tasks waiting', range=(1, 1000)),
}


def known_tasks() -> list[str]:
    from legion_core.tasks import all_task_names
    return all_task_names()


def learn_matcher(tasks: list[str]) -> IntentMatcher:
    """The intent model over the ``tasks`` the trainer can learn that people can ask for in words."""
    from legion_core.language import LanguageEncoder, load_task_descriptions
    from legion_ros.instructions import intent_matcher

    descriptions = load_task_descriptions()
    return intent_matcher(LanguageEncoder(), descriptions, [t for t in descriptions if t in tasks])


def resolve_task(text: str, tasks: list[str], matcher) -> str:
    """The task a learn request asks for: a task's name (with or without ``-v3``) as is, otherwise
    the single step ``matcher()`` reads in the words; InstructionRejectedError says why there is none."""
    name = text.strip().lower()
    for candidate in (name, f'{name}-v3'):
        if candidate in tasks:
            return candidate
    (step,) = matcher().plan(text, max_steps=1)
    return step.task


class TrainerNode(Node):
    def __init__(self) -> None:
        super().__init__('trainer')
        self.params = declare_parameters(self, PARAMETERS)
        self.status = StatusPublisher(self)
        self.overrides = list(self.params.overrides)
        if self.params.config_name not in ('legion', 'config', ''):
            self.overrides.insert(0, f'preset={self.params.config_name}')
        from legion_core.config import compose_config, validate
        try:
            errors = validate(compose_config(self.overrides))
        except Exception as error:  # Hydra: unknown preset/group, bad override syntax
            raise NodeConfigError(f'training config {self.overrides}: {error}') from None
        if errors:
            raise NodeConfigError('training config: ' + '; '.join(errors))
        self.tasks = known_tasks()
        self._matcher: IntentMatcher | None = None
        self.queue: list[str] = []
        self.learned: list[str] = []
        self.training: list[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._active = None  # the Trainer of the batch in progress (close() asks it to stop)
        self.progress_pub = self.create_publisher(String, TRAINING_PROGRESS.name, PROGRESS_QOS)
        self.checkpoint_pub = self.create_publisher(String, CHECKPOINT.name, qos.LATCHED)
        self.create_subscription(String, LEARN.name, self.on_learn, qos.STATE, raw=True)
        self._worker = threading.Thread(target=self._work, name='lifelong-trainer', daemon=True)
        self._worker.start()
        self.status.publish('ready', overrides=self.overrides, run_dir=self.params.run_dir)

    # -- requests ---------------------------------------------------------------------------------
    def emit(self, event: str, **fields) -> None:
        message = TrainingProgress(event=event, stamp=time.time(), queue=list(self.queue),
                                   learned=list(self.learned), **fields)
        self.progress_pub.publish(String(data=TRAINING_PROGRESS.encode(message)))

    def matcher(self) -> IntentMatcher:
        if self._matcher is None:  # the sentence model only once someone describes a task in words
            self._matcher = learn_matcher(self.tasks)
        return self._matcher

    def resolve(self, text: str) -> str:
        """A task name for a request; InstructionRejectedError says why there is none."""
        return resolve_task(text, self.tasks, self.matcher)

    def on_learn(self, raw: bytes) -> None:
        try:
            text = validate_instruction(decode_string(raw), 256)
            task = self.resolve(text)
        except BadMessageError as error:
            self.emit('rejected', request=None, reasons=[{'code': 'malformed', 'message': str(error)}])
            return
        except InstructionRejectedError as error:
            self.emit('rejected', request=None, reasons=error.reasons)
            return
        with self._lock:
            if task in self.learned:
                self.emit('rejected', request=text, task=task,
                          reasons=[{'code': 'learnt', 'message': f'{task} is learnt already'}])
                return
            if task in self.queue or (self.training and task in self.training):
                self.emit('rejected', request=text, task=task,
                          reasons=[{'code': 'duplicate', 'message': f'{task} is already queued or training'}])
                return
            if len(self.queue) >= self.params.max_queue:
                self.emit('rejected', request=text, task=task,
                          reasons=[{'code': 'queue_full', 'message': f'{self.params.max_queue} tasks wait'}])
                return
            self.queue.append(task)
        self.get_logger().info(f'learn "{text}" -> {task} (queue: {self.queue})')
        self.emit('queued', request=text, task=task)

    # -- training ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                batch, self.queue = [t for t in self.queue if t not in self.learned], []
                if batch:
                    self.training = batch
            if not batch:
                self._stop.wait(0.2)
                continue
            try:
                self._train(batch)
            except Exception as error:  # report, keep serving requests
                self.get_logger().error(f'training failed:\n{traceback.format_exc()}')
                self.emit('failed', tasks=batch, reason=f'{type(error).__name__}: {error}')
            finally:
                with self._lock:
                    self.training = None

    def _trainer(self, batch: list[str]):
        """The stream's trainer: a new run for the first batch, the same run with ``batch`` appended
        after (whatever an earlier batch left unfinished comes first)."""
        from legion_core.config import compose_config, to_container
        from legion_core.trainer import Trainer, resume_trainer, stream_tasks

        run_dir = Path(self.params.run_dir) / 'run_1'
        if (run_dir / 'checkpoints' / 'last.pt').is_file():
            # A task the stream holds already (this node was stopped while it trained) is continued.
            listed = stream_tasks(run_dir)
            return resume_trainer(run_dir, progress=False,
                                  append_tasks=[t for t in batch if t not in listed]), run_dir
        cfg = to_container(compose_config([*self.overrides, f'stream.tasks=[{",".join(batch)}]']))
        return Trainer(cfg, run_dir, progress=False), run_dir

    def _train(self, batch: list[str]) -> None:
        from legion_core.policy import export_policy

        trainer, run_dir = self._trainer(batch)
        self._active = trainer
        if self._stop.is_set():  # close() came while the trainer was being built
            trainer.request_stop()
        stream = trainer.tasks
        steps = trainer.config.train.steps_per_task
        phase = int(trainer.position['phase'])
        with self._lock:  # what the run had learnt before this node started
            self.learned += [task for task in stream[:phase] if task not in self.learned]
        total = trainer.position['env_steps'] + steps * (len(stream) - phase)
        chunk = int(self.params.chunk_steps) or max(1, steps // 10)
        self.emit('started', tasks=stream[phase:], learnt_before=stream[:phase], run_dir=str(run_dir),
                  total_steps=total)
        while not trainer.position['done'] and not self._stop.is_set():
            trainer.run(max_env_steps=chunk)
            position = trainer.position
            self.emit('progress', tasks=stream, task=stream[min(position['phase'], len(stream) - 1)],
                      phase=position['phase'], env_steps=position['env_steps'], total_steps=total,
                      run_dir=str(run_dir))
            while phase < position['phase']:  # a task finished: its policy goes out at once
                path = export_policy(run_dir)
                with self._lock:
                    if stream[phase] not in self.learned:
                        self.learned.append(stream[phase])
                matrix = trainer.metrics().get('success_matrix') or []
                self.emit('phase_done', task=stream[phase], phase=phase, checkpoint=str(path),
                          success_row=matrix[phase] if phase < len(matrix) else None)
                self.checkpoint_pub.publish(String(data=str(path.resolve())))
                self.get_logger().info(f'learnt {stream[phase]}: {path}')
                phase += 1
        trainer.close()
        self._active = None
        if trainer.position['done']:
            self.emit('done', tasks=stream, run_dir=str(run_dir))
        elif self._stop.is_set():  # stopped mid-chunk or between chunks: a checkpoint either way
            self.emit('stopped', tasks=stream, phase=trainer.position['phase'],
                      env_steps=trainer.position['env_steps'], run_dir=str(run_dir))
            self.get_logger().info(f'stopped with a checkpoint at env step {trainer.position["env_steps"]} '
                                   f'in {run_dir}: the next request continues from it')

    def close(self) -> None:
        """Stop training at the next env step with a checkpoint, and wait for it (short of the stop
        deadline, past which the process is ended: the checkpoint before is kept, files are replaced
        atomically)."""
        self._stop.set()
        trainer = self._active
        if trainer is not None:
            trainer.request_stop()
        self._worker.join(timeout=STOP_DEADLINE_S - 2.0)


def main(args=None) -> int:
    return run_node(TrainerNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
