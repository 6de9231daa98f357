"""``instruction`` node: natural language in, one active skill at a time out.

Topics (absolute names, remappable):

* sub ``/legion/instruction`` (std_msgs/String, reliable, keep all): a new instruction; it preempts a
  running one. Plain text, or JSON ``{"id", "text"}`` (:class:`legion_ros.instructions.InstructionRequest`):
  every status event of an instruction echoes its ``instruction_id``. Read as raw CDR bytes so that
  invalid UTF-8 is rejected, never silently "repaired". Each message is taken at once into a bounded
  inbox (``max_pending``) and planned from there one at a time; one that does not fit is rejected
  (``queue_full``) with a status, never dropped.
* sub ``step_time_topic`` (rosgraph_msgs/Clock, when set): steps are timed in that clock's time (the
  twin's, counted forward only: :class:`legion_ros.instructions.TwinTime`), and every status event
  carries its ``real_time_factor``; empty: the node clock (simulated time under use_sim_time).
* sub ``/legion/step_success`` (std_msgs/String JSON ``{sequence_id, index, task, success}``, from the
  task monitor in ``real2sim``): the active step is done.
* sub ``/legion/sim2real/status`` (String JSON, latched: sim2real's state and ``lifecycle``): while the arm
  stands in a latched e-stop (``estop``) the running instruction ends at once, its step failed and the rest
  cancelled, and new instructions are rejected (``arm_stopped``) until the e-stop is reset. While sim2real
  is not ``active`` (``ros2 lifecycle set /legion/sim2real deactivate``) the active step's clock is paused
  (events ``step_paused`` / ``step_resumed``, and ``waiting`` on each event meanwhile, naming the state);
  ``finalized``, or unconfigured for ``sim2real_unconfigured_s``, the instruction fails.
* pub ``/legion/active_step`` (String JSON ``{sequence_id, index, task, instruction}``, latched;
  ``task`` is null when nothing runs), ``/legion/active_embedding`` (Float32MultiArray, the task's
  language embedding, latched), ``/legion/status`` (String JSON, latched: queued / running /
  succeeded / failed / rejected / cancelled, each step's state and the reasons).
* services ``~/cancel`` and ``~/skip`` (std_srvs/Trigger).

All matching and sequencing logic is in :mod:`legion_ros.instructions`, the decisions between messages in
:class:`legion_ros.instruction_desk.InstructionDesk`; this is the ROS adapter.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import Trigger

from legion_ros import qos
from legion_ros.instruction_desk import InstructionDesk
from legion_ros.instructions import MAX_INSTRUCTION_BYTES, IntentMatcher, Sequencer, intent_matcher
from legion_ros.interfaces import (
    ACTIVE_EMBEDDING,
    ACTIVE_STEP,
    INSTRUCTION,
    SIM2REAL_STATUS,
    STATUS,
    STEP_SUCCESS,
    ActiveStep,
)
from legion_ros.node_base import (
    NodeConfigError,
    Param,
    StatusPublisher,
    clock_s,
    declare_parameters,
    run_node,
)
from legion_ros.provenance import BadMessageError, array_message, decode_string

# Status events come in bursts (queued + step_started, succeeded + next step_started): a latched depth-1
# writer would let a reader miss all but the last, so events keep a short transient-local history.
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=32, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Instructions: keep all, so that a burst reaches the inbox whole (keep last 10 cut it to the newest 10
# without a trace); the inbox bounds what waits, and says so.
INSTRUCTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)

NODE_NAME = 'instruction'  # clients wait for this node's own subscription (legion_ros.instruct_cli)
ARM_STATUS = SIM2REAL_STATUS  # the arm side's state: a latched e-stop stops the job, inactive pauses it

PARAMETERS = {
    'tasks': Param([], 'skills instructions may use (Meta-World v3 task names); empty: the legion10 '
                   'stream, the tasks of the twin\'s workcell and of the shipped policy', type='string[]'),
    'descriptions_file': Param('', 'YAML {task: [descriptions]}: the first is the embedding the policy '
                               'is conditioned on; empty: legion_core\'s shipped task_descriptions.yaml'),
    'intents_file': Param('', 'YAML paraphrases the intent model is fitted on (legion_core.intent); '
                          'empty: legion_core\'s shipped data/intents/train.yaml'),
    'max_bytes': Param(MAX_INSTRUCTION_BYTES, 'longest accepted instruction [UTF-8 bytes]',
                       range=(16, 65536)),
    'max_steps': Param(16, 'most steps in one instruction', range=(1, 256)),
    'step_timeout_s': Param(60.0, 'a step that has not succeeded after this long fails [s, node clock]',
                            range=(0.1, 3600.0)),
    'stop_on_failure': Param(False, 'end the sequence at the first failed step instead of going on'),
    'step_time_topic': Param('', 'rosgraph_msgs/Clock topic whose time step timeouts count in (the '
                             'twin\'s /clock when the nodes keep wall time, as in legion sim); empty: the '
                             'node clock'),
    'sim2real_unconfigured_s': Param(60.0, 'an instruction whose step waits for sim2real fails when sim2real '
                                     'stays unconfigured this long [s, node clock]; inactive, it waits '
                                     'until activated or cancelled', range=(0.1, 3600.0)),
    'max_pending': Param(16, 'instructions received and waiting to be planned; one more is rejected '
                         '(queue_full)', range=(1, 1024)),
}
PLAN_PERIOD_S = 0.01  # how often the inbox is looked at: one instruction planned per look


def load_descriptions(path: str) -> dict[str, list[str]]:
    if not path:
        from legion_core.language import load_task_descriptions
        return load_task_descriptions()
    import yaml
    try:
        with open(path, encoding='utf-8') as handle:
            table = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        raise NodeConfigError(f'cannot read descriptions_file {path}: {error}') from None
    if not isinstance(table, dict) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in table.values()):
        raise NodeConfigError(f'descriptions_file {path} must map task names to lists of strings')
    return table


def allowed_skills(descriptions: dict[str, list[str]], tasks: list[str]) -> list[str]:
    """The skills instructions may use; a task without descriptions is a configuration error."""
    if not tasks:
        from legion_core.tasks import LEGION10
        tasks = list(LEGION10)
    missing = [t for t in tasks if t not in descriptions]
    if missing:
        raise NodeConfigError(f'no descriptions for tasks {missing}; described: {sorted(descriptions)}')
    return list(tasks)


def make_matcher(encoder, descriptions: dict[str, list[str]], tasks: list[str],
                 intents_file: str = '') -> IntentMatcher:
    """The step matcher of the instruction node (and of ``legion sim``'s early check): the skills
    ``tasks`` (empty: legion10) allowed, see :func:`legion_ros.instructions.intent_matcher`."""
    try:
        return intent_matcher(encoder, descriptions, allowed_skills(descriptions, tasks), intents_file)
    except ValueError as error:
        raise NodeConfigError(str(error)) from None


class InstructionNode(Node):
    """The ROS face of an :class:`~legion_ros.instruction_desk.InstructionDesk`."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = p = declare_parameters(self, PARAMETERS)
        import torch

        from legion_core.language import LanguageEncoder  # slow import (sentence-transformers)

        # One sentence at a time: a second intra-op thread only spin-waits on shared cores (one step's
        # embedding took 67-77 ms median with 2 threads beside two training runs, 11-23 ms with 1).
        torch.set_num_threads(1)
        self.encoder = LanguageEncoder()
        descriptions = load_descriptions(p.descriptions_file)
        allowed = allowed_skills(descriptions, p.tasks)
        # Every task with paraphrases takes part in matching, so that a step meaning a task the robot has
        # not learnt is rejected as such instead of landing on a look-alike (open -> close the drawer).
        self.matcher = make_matcher(self.encoder, descriptions, p.tasks, p.intents_file)
        # The policy was trained on each task's own (canonical) embedding, not on the user's wording.
        self.task_embedding = dict(zip(allowed, np.asarray(
            self.encoder.embed([descriptions[t][0] for t in allowed]), dtype=np.float32), strict=True))
        self.sequencer = Sequencer(p.step_timeout_s, p.stop_on_failure)
        self.node_status = StatusPublisher(self)
        self.desk = InstructionDesk(
            self.matcher, self.sequencer, max_bytes=p.max_bytes, max_steps=p.max_steps,
            max_pending=p.max_pending, step_clock=p.step_time_topic,
            sim2real_unconfigured_s=p.sim2real_unconfigured_s, logger=self.get_logger(),
            warn=lambda text: self.get_logger().warning(text, throttle_duration_sec=1.0),
            notify=self.node_status.publish)

        self.status_pub = self.create_publisher(String, STATUS.name, STATUS_QOS)
        self.step_pub = self.create_publisher(String, ACTIVE_STEP.name, qos.LATCHED)
        self.embedding_pub = self.create_publisher(Float32MultiArray, ACTIVE_EMBEDDING.name, qos.LATCHED)
        if p.step_time_topic:
            from rosgraph_msgs.msg import Clock

            self.create_subscription(Clock, p.step_time_topic, self.on_twin_clock, qos.SENSOR)
        self.create_subscription(String, INSTRUCTION.name, self.on_instruction, INSTRUCTION_QOS, raw=True)
        self.create_subscription(String, STEP_SUCCESS.name, self.on_step_success, qos.STATE)
        self.create_subscription(String, ARM_STATUS.name, self.on_arm_status, qos.LATCHED)
        self.create_service(Trigger, '~/cancel', lambda _q, r: self._answer(r, *self.desk.cancel(self.now())))
        self.create_service(Trigger, '~/skip', lambda _q, r: self._answer(r, *self.desk.skip(self.now())))
        self.create_timer(0.1, lambda: self._emit(self.desk.tick(clock_s(self))))
        self.create_timer(PLAN_PERIOD_S, lambda: self._emit(self.desk.plan_next(self.now())))
        self._publish_step()
        self._emit([self.sequencer.status('idle')])
        self.node_status.publish('ready', skills=self.matcher.allowed, unworded=self.matcher.unworded)
        if self.matcher.unworded:
            self.get_logger().warning(f'no paraphrases for {self.matcher.unworded}: they cannot be asked for '
                                      f'in words (add sentences to the intents_file)')
        thresholds = self.matcher.model.thresholds
        self.get_logger().info(f'ready: {len(allowed)} skills; intent model on {len(self.matcher.tasks)} '
                               f'tasks, {thresholds}')

    def now(self) -> float:
        return self.desk.now(clock_s(self))

    # -- inputs ---------------------------------------------------------------------------------
    def on_instruction(self, raw: bytes) -> None:
        """Take the message into the inbox at once (cheap); planning happens on the plan timer."""
        try:
            payload = decode_string(raw)
        except BadMessageError as error:
            self._emit(self.desk.malformed(str(error)))
            return
        self._emit(self.desk.receive(payload))

    def on_arm_status(self, message: String) -> None:
        try:
            status = ARM_STATUS.decode(message.data)
        except BadMessageError as error:
            self.desk.bad_input(ARM_STATUS.name, str(error))
            return
        self._emit(self.desk.arm_status(status, self.now()))

    def on_step_success(self, message: String) -> None:
        try:
            report = STEP_SUCCESS.decode(message.data)
        except BadMessageError as error:
            self.desk.bad_input(STEP_SUCCESS.name, f'malformed step_success: {error}')
            self.get_logger().warning(f'ignored malformed step_success ({error})', throttle_duration_sec=2.0)
            return
        self._emit(self.desk.step_success(report, self.now()))

    def _answer(self, response, events: list[dict], message: str):
        self._emit(events)
        response.success = bool(events)
        response.message = message
        return response

    def on_twin_clock(self, message) -> None:
        self.desk.twin_time.update(message.clock.sec + message.clock.nanosec * 1e-9, time.monotonic())

    # -- outputs --------------------------------------------------------------------------------
    def _emit(self, events: list[dict]) -> None:
        for event in self.desk.stamped(events, clock_s(self), time.monotonic()):
            self.status_pub.publish(String(data=STATUS.encode(event)))
        if events:
            self._publish_step()

    def _publish_step(self) -> None:
        changed, active = self.desk.active_step()
        if not changed:
            return
        if active is not None:
            # Embedding first: a reader that acts on the step finds the matching embedding already there.
            self.embedding_pub.publish(array_message(self.task_embedding[active.task],
                                                     f'embedding:{active.task}'))
        self.step_pub.publish(String(data=ACTIVE_STEP.encode(ActiveStep(
            sequence_id=self.sequencer.sequence_id, index=None if active is None else active.index,
            task=None if active is None else active.task,
            instruction=None if active is None else active.instruction))))


def main(args=None) -> int:
    return run_node(InstructionNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
