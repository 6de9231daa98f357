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
then holds the arm. A thin adapter: :class:`legion_kuka.acting.PolicyRunner` decides every action
(pure, tested without ROS).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import Trigger

from legion_kuka.acting import (
    PolicyRunner,
    default_checkpoint,
    file_stamp,
    layout_size,  # noqa: F401
)
from legion_ros import qos
from legion_ros.interfaces import ACTION, ACTIVE_STEP, CHECKPOINT, OBSERVATIONS
from legion_ros.node_base import NodeConfigError, Param, StatusPublisher, declare_parameters, run_node
from legion_ros.provenance import BadMessageError, array_message, read_array, source_of

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


class PolicyNode(Node):
    """Thin adapter over :class:`legion_kuka.acting.PolicyRunner`, which decides every action."""

    def __init__(self) -> None:
        super().__init__('policy')
        self.params = p = declare_parameters(self, PARAMETERS)
        self.status = StatusPublisher(self)
        self.runner = PolicyRunner(p.policy_type, p.observation_timeout_s, p.deterministic)

        self.action_pub = self.create_publisher(Float32MultiArray, ACTION.name, qos.COMMAND)
        for size, topic in OBSERVATIONS.items():
            self.create_subscription(Float32MultiArray, topic.name,
                                     lambda m, size=size: self.on_observation(m, size), qos.SENSOR)
        self.create_subscription(String, ACTIVE_STEP.name, self.on_active_step, qos.LATCHED)
        if p.follow_trainer:
            self.create_subscription(String, CHECKPOINT.name, self.on_checkpoint_announced, qos.LATCHED)
        self.create_service(Trigger, '~/reload', self.on_reload)
        self.add_post_set_parameters_callback(self.on_parameters_set)
        self._timer = self.create_timer(1.0 / p.rate_hz, self.act) if p.trigger == 'timer' else None
        if p.watch_checkpoint:
            self.create_timer(1.0, self.on_watch)
        if p.policy_type == 'expert':
            self.status.publish('ready', policy_type='expert')
        elif path := p.checkpoint or default_checkpoint():
            self.load(path, background=False)
        else:
            self.status.publish('waiting', reason='no checkpoint: set the checkpoint parameter, call '
                                f'~/reload after writing one, or publish a path on {CHECKPOINT.name}')

    # -- checkpoint handling ----------------------------------------------------------------------
    def load(self, path: str, background: bool = True) -> None:
        """Load ``path``; the current policy keeps acting until the new one is ready."""
        runner = self.runner
        if not Path(path).exists():
            message = f'checkpoint {path} does not exist'
            if not background:
                raise NodeConfigError(message)
            self.status.publish('fault', reason=message, checkpoint=runner.policy_path)
            self.get_logger().error(message)
            return
        if not runner.begin_load():
            self.get_logger().warning(f'a checkpoint is already loading; {path} ignored')
            return

        def work():
            from legion_core.policy import load_policy  # torch: only when a LEGION policy is loaded

            started = time.monotonic()
            try:
                policy = load_policy(path, device=self.params.device)
            except Exception as error:  # a bad file must not take the running policy down
                runner.loaded(None, path, None)
                self.status.publish('fault', reason=f'cannot load {path}: {type(error).__name__}: {error}',
                                    checkpoint=runner.policy_path)
                self.get_logger().error(f'cannot load checkpoint {path}: {error}')
                if not background:
                    raise NodeConfigError(f'cannot load checkpoint {path}: {error}') from None
                return
            runner.loaded(policy, path, file_stamp(path))
            load_s = time.monotonic() - started
            self.status.publish('ready', policy_type='legion', checkpoint=path, tasks=runner.tasks,
                                load_s=round(load_s, 3))
            frozen = len(getattr(policy, 'skills', None) or {})  # agent.freeze_skills
            self.get_logger().info(f'loaded {path} ({len(runner.tasks)} tasks, {frozen} of them frozen '
                                   f'skills) in {load_s:.2f} s')

        if background:
            threading.Thread(target=work, name='checkpoint-loader', daemon=True).start()
        else:
            work()

    def on_reload(self, _request, response):
        path = self.params.checkpoint or self.runner.policy_path or default_checkpoint()
        if self.params.policy_type != 'legion' or not path:
            response.success, response.message = False, 'nothing to reload (expert policy or no checkpoint)'
        elif not Path(path).exists():
            response.success, response.message = False, f'checkpoint {path} does not exist'
        else:
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
                setattr(self.runner, parameter.name, parameter.value)

    def on_checkpoint_announced(self, message: String) -> None:
        path = message.data.strip()
        if self.params.policy_type != 'legion' or not path or path == self.runner.policy_path:
            return
        self.get_logger().info(f'trainer announced {path}')
        self.load(path)

    def on_watch(self) -> None:
        if self.runner.checkpoint_changed():
            self.get_logger().info(f'{self.runner.policy_path} changed on disk: reloading')
            self.load(self.runner.policy_path)

    # -- inputs and acting ------------------------------------------------------------------------
    def on_active_step(self, message: String) -> None:
        try:
            step = ACTIVE_STEP.decode(message.data)
        except BadMessageError as error:
            self.status.publish('input_rejected', topic=ACTIVE_STEP.name, reason=str(error))
            return
        problem = self.runner.start_step(step)
        task = self.runner.step and self.runner.step['task']
        self.get_logger().info(f'active step: {task or "none"}')
        if problem is not None:
            self._report_problem(problem)
        elif task is not None:
            self.status.publish('acting', task=task, policy_type=self.params.policy_type,
                                checkpoint=self.runner.policy_path or None)

    def on_observation(self, message: Float32MultiArray, size: int) -> None:
        try:
            data = read_array(message, size, f'observation ({size})')
        except BadMessageError as error:
            self.status.publish('input_rejected', topic=OBSERVATIONS[size].name, reason=str(error))
            return
        self.runner.observe(size, data, source_of(message), time.monotonic())
        if self.params.trigger == 'observation' and size == self.runner.observation_size():
            self.act()

    def act(self) -> None:
        decision = self.runner.act(time.monotonic())
        if decision.action is not None:
            self.action_pub.publish(array_message(decision.action, 'action', decision.source_ns))
        elif decision.problem is not None:
            self._report_problem(decision.problem)

    def _report_problem(self, problem: str) -> None:
        self.status.publish('fault', reason=problem, task=self.runner.step and self.runner.step.get('task'))
        self.get_logger().error(problem)


def main(args=None) -> int:
    return run_node(PolicyNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
