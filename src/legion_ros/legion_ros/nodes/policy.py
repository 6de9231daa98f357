"""``policy`` node: the LEGION actor (or Meta-World's scripted expert) acting on the observation.

Topics (absolute names, remappable):

* sub ``/legion/observation`` (Float32MultiArray, 12, sensor QoS) and ``/legion/observation_full``
  (39, for ``policy_type: expert``), from ``real2sim``; ``/legion/active_step`` (String JSON, latched)
  from ``instruction``; ``/legion/checkpoint`` (String path, latched) from ``trainer`` when
  ``follow_trainer`` is true.
* pub ``/legion/action`` (Float32MultiArray, 4, command QoS): (dx, dy, dz, gripper) in [-1, 1]. The
  array's label carries the source stamp of the observation it was computed from (see
  :mod:`legion_ros.provenance`), so ``sim2real`` and ``legion bench loop`` can attribute latency.
* service ``~/reload`` (std_srvs/Trigger); the ``checkpoint`` parameter can be changed at run time, and
  with ``watch_checkpoint`` a rewritten checkpoint file is picked up by itself. Loading happens on a
  background thread: the old policy keeps acting until the new one is ready.

Acting: with ``trigger: timer`` the newest observation is used every ``1 / rate_hz`` s (the rate that
``sim2real`` interpolates over); with ``trigger: observation`` every new observation is acted on at
once (lowest latency, used by the loop benchmark). Nothing is published while no step is active, the
observation is older than ``observation_timeout_s``, or the policy cannot act on the task: ``sim2real``
then holds the arm.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import Trigger

from legion_kuka.real2sim import PolicyStepFrames
from legion_ros import qos
from legion_ros.interfaces import ACTION, ACTIVE_STEP, CHECKPOINT, OBSERVATION, OBSERVATION_FULL
from legion_ros.node_base import NodeConfigError, Param, StatusPublisher, declare_parameters, run_node
from legion_ros.provenance import BadMessageError, array_message, read_array, source_of

OBSERVATIONS = {12: OBSERVATION, 39: OBSERVATION_FULL}  # by length: LEGION's layout, Meta-World's

PARAMETERS = {
    'policy_type': Param('legion', 'legion: the actor of `checkpoint`; expert: Meta-World\'s scripted '
                         'policy of the active task (needs the 39-d observation)',
                         choices=('legion', 'expert')),
    'checkpoint': Param('', 'LEGION policy artefact (file or run directory); empty: the shipped default '
                        'if there is one'),
    'rate_hz': Param(10.0, 'policy steps per second with trigger: timer (must match sim2real\'s '
                     'policy_rate_hz)', range=(0.5, 500.0)),
    'trigger': Param('timer', 'timer: act at rate_hz on the newest observation; observation: act on '
                     'every observation as it arrives', choices=('timer', 'observation')),
    'deterministic': Param(True, 'use the mean action of the LEGION actor instead of sampling'),
    'observation_timeout_s': Param(0.5, 'do not act on an observation older than this [s]',
                                   range=(0.01, 60.0)),
    'watch_checkpoint': Param(True, 'reload when the checkpoint file changes on disk'),
    'follow_trainer': Param(True, f'load every checkpoint announced on {CHECKPOINT.name}'),
    'device': Param('cpu', 'torch device of the LEGION actor'),
}


def expert_for(task: str):
    """Meta-World's scripted policy for ``task`` (a ``get_action(obs39)`` object)."""
    from metaworld.policies import ENV_POLICY_MAP
    try:
        return ENV_POLICY_MAP[task]()
    except KeyError:
        raise KeyError(f'Meta-World has no scripted expert for {task!r}') from None


def load_legion_policy(path: str, device: str = 'cpu'):
    from legion_core.policy import load_policy
    try:
        return load_policy(path, device=device)
    except TypeError:  # an artefact loader without a device argument
        return load_policy(path)


def default_checkpoint() -> str:
    """The shipped policy artefact, if legion_core ships one ('' otherwise)."""
    try:
        from legion_core.policy import default_policy_path
    except ImportError:
        return ''
    path = default_policy_path()
    return str(path) if path else ''


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__('policy')
        self.params = declare_parameters(self, PARAMETERS)
        self.status = StatusPublisher(self)
        self.policy = None                      # the loaded LEGION policy artefact
        self.policy_path = ''
        self._policy_stamp = None               # (mtime_ns, size) of the loaded file
        self._loading = False
        self._lock = threading.Lock()
        self.experts: dict[str, object] = {}
        self.step: dict | None = None
        self._obs = {12: None, 39: None}         # size -> (data, source_ns, received monotonic s)
        self._frames = PolicyStepFrames()        # full39 LEGION policies: frames stacked per policy step
        self.actions = 0
        self._problem = None

        self.action_pub = self.create_publisher(Float32MultiArray, ACTION.name, qos.COMMAND)
        for size, topic in OBSERVATIONS.items():
            self.create_subscription(Float32MultiArray, topic.name,
                                     lambda m, size=size: self.on_observation(m, size), qos.SENSOR)
        self.create_subscription(String, ACTIVE_STEP.name, self.on_active_step, qos.LATCHED)
        if self.params.follow_trainer:
            self.create_subscription(String, CHECKPOINT.name, self.on_checkpoint_announced, qos.LATCHED)
        self.create_service(Trigger, '~/reload', self.on_reload)
        self.add_post_set_parameters_callback(self.on_parameters_set)
        self._timer = None
        if self.params.trigger == 'timer':
            self._timer = self.create_timer(1.0 / self.params.rate_hz, self.on_timer)
        if self.params.watch_checkpoint:
            self.create_timer(1.0, self.on_watch)
        if self.params.policy_type == 'legion':
            path = self.params.checkpoint or default_checkpoint()
            if path:
                self.load(path, background=False)
            else:
                self.status.publish('waiting', reason='no checkpoint: set the checkpoint parameter, call '
                                    f'~/reload after writing one, or publish a path on {CHECKPOINT.name}')
        else:
            self.status.publish('ready', policy_type='expert')

    # -- checkpoint handling ----------------------------------------------------------------------
    def load(self, path: str, background: bool = True) -> None:
        """Load ``path``; the current policy keeps acting until the new one is ready."""
        if not Path(path).exists():
            message = f'checkpoint {path} does not exist'
            if not background:
                raise NodeConfigError(message)
            self.status.publish('fault', reason=message, checkpoint=self.policy_path)
            self.get_logger().error(message)
            return
        with self._lock:
            if self._loading:
                self.get_logger().warning(f'a checkpoint is already loading; {path} ignored')
                return
            self._loading = True

        def work():
            started = time.monotonic()
            try:
                policy = load_legion_policy(path, self.params.device)
                stamp = _file_stamp(path)
            except Exception as error:  # a bad file must not take the running policy down
                with self._lock:
                    self._loading = False
                self.status.publish('fault', reason=f'cannot load {path}: {type(error).__name__}: {error}',
                                    checkpoint=self.policy_path)
                self.get_logger().error(f'cannot load checkpoint {path}: {error}')
                if not background:
                    raise NodeConfigError(f'cannot load checkpoint {path}: {error}') from None
                return
            with self._lock:
                self.policy, self.policy_path, self._policy_stamp = policy, path, stamp
                self._loading = False
            tasks = list(getattr(policy, 'tasks', []))
            self.status.publish('ready', policy_type='legion', checkpoint=path, tasks=tasks,
                                load_s=round(time.monotonic() - started, 3))
            self.get_logger().info(f'loaded {path} ({len(tasks)} tasks) in '
                                   f'{time.monotonic() - started:.2f} s')

        if background:
            threading.Thread(target=work, name='checkpoint-loader', daemon=True).start()
        else:
            work()

    def on_reload(self, _request, response):
        path = self.params.checkpoint or self.policy_path or default_checkpoint()
        if self.params.policy_type != 'legion' or not path:
            response.success, response.message = False, 'nothing to reload (expert policy or no checkpoint)'
            return response
        if not Path(path).exists():
            response.success, response.message = False, f'checkpoint {path} does not exist'
            return response
        self.load(path)
        response.success, response.message = True, f'reloading {path}'
        return response

    def on_parameters_set(self, parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name == 'checkpoint':
                self.params['checkpoint'] = parameter.value
                if parameter.value and self.params.policy_type == 'legion':
                    self.load(parameter.value)
            elif parameter.name in ('deterministic', 'observation_timeout_s'):
                self.params[parameter.name] = parameter.value

    def on_checkpoint_announced(self, message: String) -> None:
        path = message.data.strip()
        if self.params.policy_type != 'legion' or not path or path == self.policy_path:
            return
        self.get_logger().info(f'trainer announced {path}')
        self.load(path)

    def on_watch(self) -> None:
        if self.policy is None or not self.policy_path or self._loading:
            return
        stamp = _file_stamp(self.policy_path)
        if stamp is not None and stamp != self._policy_stamp:
            self.get_logger().info(f'{self.policy_path} changed on disk: reloading')
            self._policy_stamp = stamp  # once per change, even if the load fails
            self.load(self.policy_path)

    # -- inputs -----------------------------------------------------------------------------------
    def on_active_step(self, message: String) -> None:
        try:
            step = ACTIVE_STEP.decode(message.data)
        except BadMessageError as error:
            self.status.publish('input_rejected', topic=ACTIVE_STEP.name, reason=str(error))
            return
        keys = ('task', 'sequence_id', 'index')
        if [step.get(k) for k in keys] != [(self.step or {}).get(k) for k in keys]:
            self._obs = {12: None, 39: None}  # the previous step's scene is not this step's observation
            self._frames.reset()
        self.step = step if step.get('task') else None
        self._problem = None
        self.get_logger().info(f'active step: {self.step["task"] if self.step else "none"}')
        expert_missing = self.step is not None and self.step['task'] not in self.experts
        if expert_missing and self.params.policy_type == 'expert':
            try:  # build the expert now, not in the first control cycle of the step
                self.experts[self.step['task']] = expert_for(self.step['task'])
            except KeyError as error:
                self._report_problem(str(error.args[0]))
                return
        if self.step is not None:
            self.status.publish('acting', task=self.step['task'], policy_type=self.params.policy_type,
                                checkpoint=self.policy_path or None)

    def on_observation(self, message: Float32MultiArray, size: int) -> None:
        try:
            data = read_array(message, size, f'observation ({size})')
        except BadMessageError as error:
            self.status.publish('input_rejected', topic=OBSERVATIONS[size].name, reason=str(error))
            return
        self._obs[size] = (data, source_of(message), time.monotonic())
        if self.params.trigger == 'observation' and size == self.observation_size():
            self.act()

    def on_timer(self) -> None:
        self.act()

    def observation_size(self) -> int:
        """39 for the experts, else the length of the LEGION policy's training layout."""
        if self.params.policy_type == 'expert':
            return 39
        return layout_size(self.policy)

    # -- acting -----------------------------------------------------------------------------------
    def act(self) -> None:
        step = self.step
        if step is None:
            return
        size = self.observation_size()
        latest = self._obs[size]
        if latest is None or time.monotonic() - latest[2] > self.params.observation_timeout_s:
            return  # no fresh observation: publish nothing, sim2real holds
        data, source_ns, _ = latest
        task = step['task']
        try:
            action = self._action(task, data)
        except KeyError as error:
            self._report_problem(str(error.args[0]) if error.args else str(error))
            return
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,) or not np.isfinite(action).all():
            self._report_problem(f'the policy produced an invalid action {action.tolist()}')
            return
        self.action_pub.publish(array_message(np.clip(action, -1.0, 1.0), 'action', source_ns))
        self.actions += 1

    def _action(self, task: str, obs: np.ndarray) -> np.ndarray:
        if self.params.policy_type == 'expert':
            if task not in self.experts:
                self.experts[task] = expert_for(task)
            return self.experts[task].get_action(obs)
        policy = self.policy
        if policy is None:
            raise KeyError('no policy loaded yet')
        tasks = list(getattr(policy, 'tasks', []))
        if tasks and task not in tasks:
            raise KeyError(f'the loaded policy has not learnt {task} (it knows {", ".join(tasks)})')
        if obs.size == 39:  # the previous frame of the previous policy step, as in training
            obs = self._frames.observe(obs)
        return np.asarray(policy.act(obs[None, :].astype(np.float32), task,
                                     deterministic=self.params.deterministic)).reshape(-1)

    def _report_problem(self, problem: str) -> None:
        if problem != self._problem:  # once per problem, not at the policy rate
            self._problem = problem
            self.status.publish('fault', reason=problem, task=self.step and self.step.get('task'))
            self.get_logger().error(problem)


def layout_size(policy) -> int:
    """The observation length a LEGION policy acts on: its training layout's (legion12 for an artefact
    that names none)."""
    from legion_core.envs import LAYOUTS

    return LAYOUTS[getattr(policy, 'layout', 'legion12')]


def _file_stamp(path: str):
    try:
        target = Path(path)
        if target.is_dir():  # a run directory: the newest file in it decides
            stats = [p.stat() for p in target.rglob('*') if p.is_file()]
            return max(((s.st_mtime_ns, s.st_size) for s in stats), default=None)
        stat = os.stat(path)
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return None


def main(args=None) -> int:
    return run_node(PolicyNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
