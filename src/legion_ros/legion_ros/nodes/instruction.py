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
* sub ``/legion/sim2real/status`` (String JSON, latched: sim2real's state): while the arm stands in a
  latched e-stop (``estop``) the running instruction ends at once, its step failed and the rest
  cancelled, and new instructions are rejected (``arm_stopped``) until the e-stop is reset.
* pub ``/legion/active_step`` (String JSON ``{sequence_id, index, task, instruction}``, latched;
  ``task`` is null when nothing runs), ``/legion/active_embedding`` (Float32MultiArray, the task's
  language embedding, latched), ``/legion/status`` (String JSON, latched: queued / running /
  succeeded / failed / rejected / cancelled, each step's state and the reasons).
* services ``~/cancel`` and ``~/skip`` (std_srvs/Trigger).

All matching and sequencing logic is in :mod:`legion_ros.instructions`; this is the ROS adapter.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import Trigger

from legion_kuka.commander import ArmState
from legion_ros import qos
from legion_ros.instructions import (
    MAX_INSTRUCTION_BYTES,
    Inbox,
    InstructionRejectedError,
    InstructionRequest,
    IntentMatcher,
    Reason,
    Sequencer,
    TwinTime,
    intent_matcher,
    validate_instruction,
)
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
ARM_STATUS = SIM2REAL_STATUS  # the arm side's state: a latched e-stop stops the job

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
    'max_pending': Param(16, 'instructions received and waiting to be planned; one more is rejected '
                         '(queue_full)', range=(1, 1024)),
}
PLAN_PERIOD_S = 0.01  # how often the inbox is looked at: one instruction planned per look


def _shown(text: str | bytes) -> str:
    """At most 200 characters of an instruction, for a status event."""
    return text[:200].decode('utf-8', errors='replace') if isinstance(text, bytes) else text[:200]


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
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = declare_parameters(self, PARAMETERS)
        import torch

        from legion_core.language import LanguageEncoder  # slow import (sentence-transformers)

        # One sentence at a time: a second intra-op thread only spin-waits on shared cores (one step's
        # embedding took 67-77 ms median with 2 threads beside two training runs, 11-23 ms with 1).
        torch.set_num_threads(1)
        self.encoder = LanguageEncoder()
        descriptions = load_descriptions(self.params.descriptions_file)
        allowed = allowed_skills(descriptions, self.params.tasks)
        # Every task with paraphrases takes part in matching, so that a step meaning a task the robot has
        # not learnt is rejected as such instead of landing on a look-alike (open -> close the drawer).
        self.matcher = make_matcher(self.encoder, descriptions, self.params.tasks, self.params.intents_file)
        # The policy was trained on each task's own (canonical) embedding, not on the user's wording.
        self.task_embedding = dict(zip(allowed, np.asarray(
            self.encoder.embed([descriptions[t][0] for t in allowed]), dtype=np.float32), strict=True))
        self.sequencer = Sequencer(self.params.step_timeout_s, self.params.stop_on_failure)
        self.node_status = StatusPublisher(self)

        self.status_pub = self.create_publisher(String, STATUS.name, STATUS_QOS)
        self.step_pub = self.create_publisher(String, ACTIVE_STEP.name, qos.LATCHED)
        self.embedding_pub = self.create_publisher(Float32MultiArray, ACTIVE_EMBEDDING.name, qos.LATCHED)
        self.twin_time = None
        if self.params.step_time_topic:
            from rosgraph_msgs.msg import Clock

            self.twin_time = TwinTime()
            self.create_subscription(Clock, self.params.step_time_topic, self.on_twin_clock, qos.SENSOR)
        self.inbox = Inbox(self.params.max_pending)
        self.duplicates = 0
        self.create_subscription(String, INSTRUCTION.name, self.on_instruction, INSTRUCTION_QOS, raw=True)
        self.create_subscription(String, STEP_SUCCESS.name, self.on_step_success, qos.STATE)
        self.arm_stopped: str | None = None  # why the arm stands in a latched e-stop; None: it may move
        self.create_subscription(String, ARM_STATUS.name, self.on_arm_status, qos.LATCHED)
        self.create_service(Trigger, '~/cancel', self.on_cancel)
        self.create_service(Trigger, '~/skip', self.on_skip)
        self.create_timer(0.1, self.on_tick)
        self.create_timer(PLAN_PERIOD_S, self.on_pending)
        self._active_key = None
        self.rejected: dict[str, int] = {}  # per input topic, as every node's status says it
        self._publish_step()
        self._emit([self.sequencer.status('idle')])
        self.node_status.publish('ready', skills=self.matcher.allowed, unworded=self.matcher.unworded)
        if self.matcher.unworded:
            self.get_logger().warning(f'no paraphrases for {self.matcher.unworded}: they cannot be asked for '
                                      f'in words (add sentences to the intents_file)')
        thresholds = self.matcher.model.thresholds
        self.get_logger().info(f'ready: {len(allowed)} skills; intent model on {len(self.matcher.tasks)} '
                               f'tasks, {thresholds}')

    # -- inputs ---------------------------------------------------------------------------------
    def on_instruction(self, raw: bytes) -> None:
        """Take the message into the inbox at once (cheap); planning happens in :meth:`on_pending`."""
        try:
            request = InstructionRequest.from_payload(decode_string(raw))
        except BadMessageError as error:
            self._reject('<unreadable>', [{'code': Reason.MALFORMED.value, 'message': str(error)}])
            return
        except InstructionRejectedError as error:
            self._reject('<unreadable>', error.reasons, error.instruction_id)
            return
        verdict, request = self.inbox.offer(request)
        if verdict == 'duplicate':  # a client resending an instruction it is not sure arrived
            self.duplicates += 1
        elif verdict == 'full':
            self._reject(_shown(request.text), [{
                'code': Reason.QUEUE_FULL.value,
                'message': f'{len(self.inbox)} instructions are already waiting (max_pending '
                           f'{self.params.max_pending}); send it again later'}], request.id)

    def on_pending(self) -> None:
        request = self.inbox.take()
        if request is None:
            return
        if self.arm_stopped is not None:
            self._reject(_shown(request.text), [{'code': Reason.ARM_STOPPED.value, 'message':
                         f'{self.arm_stopped}: reset the e-stop first'}], request.id)
            return
        try:
            text = validate_instruction(request.text, self.params.max_bytes)
            plan = self.matcher.plan(text, self.params.max_bytes, self.params.max_steps)
        except InstructionRejectedError as error:
            self._reject(_shown(request.text), error.reasons, request.id)
            return
        self.get_logger().info(f'instruction {request.id} "{text}" -> {[p.task for p in plan]}')
        self._emit(self.sequencer.load(text, plan, self.step_now(), request.id))

    def on_arm_status(self, message: String) -> None:
        """sim2real's state. A latched e-stop ends the running instruction at once, failed, instead of
        letting each step time out while the arm stands, and refuses new ones until it is reset."""
        try:
            status = ARM_STATUS.decode(message.data)
        except BadMessageError as error:
            self._count_rejection(ARM_STATUS.name, str(error))
            return
        state = status['state']
        if state != ArmState.ESTOP:
            if state in {arm.value for arm in ArmState}:  # (other messages are events, not states)
                self.arm_stopped = None
            return
        reasons = status.get('reasons')
        detail = ', '.join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ''
        self.arm_stopped = 'the arm stopped in an e-stop' + (f' ({detail[:200]})' if detail else '')
        events = self.sequencer.halt(self.step_now(), self.arm_stopped)
        if events:
            self.get_logger().error(f'{self.arm_stopped}: instruction {self.sequencer.instruction_id} ended')
        self._emit(events)

    def on_step_success(self, message: String) -> None:
        try:
            report = STEP_SUCCESS.decode(message.data)
        except BadMessageError as error:
            self._count_rejection(STEP_SUCCESS.name, f'malformed step_success: {error}')
            self.get_logger().warning(f'ignored malformed step_success ({error})', throttle_duration_sec=2.0)
            return
        if report['success']:
            self._emit(self.sequencer.report_success(self.step_now(), report.get('task'), report.get('index'),
                                                     report.get('sequence_id')))

    def on_cancel(self, _request, response):
        events = self.sequencer.cancel(self.step_now())
        self._emit(events)
        response.success = bool(events)
        response.message = 'cancelled' if events else 'nothing is running'
        return response

    def on_skip(self, _request, response):
        active = self.sequencer.active
        events = self.sequencer.skip(self.step_now())
        self._emit(events)
        response.success = bool(events)
        response.message = (f'skipped step {active.index + 1} ({active.task})' if events
                            else 'nothing is running')
        return response

    def on_tick(self) -> None:
        self._emit(self.sequencer.tick(self.step_now()))

    def on_twin_clock(self, message) -> None:
        self.twin_time.update(message.clock.sec + message.clock.nanosec * 1e-9, time.monotonic())

    def step_now(self) -> float:
        """The time steps are timed in: the twin's (step_time_topic) or the node clock."""
        return self.twin_time.elapsed_s if self.twin_time is not None else clock_s(self)

    # -- outputs --------------------------------------------------------------------------------
    def _count_rejection(self, topic: str, reason: str) -> None:
        self.rejected[topic] = self.rejected.get(topic, 0) + 1
        self.node_status.publish('input_rejected', topic=topic, reason=reason[:300],
                                 rejected=dict(self.rejected))

    def _reject(self, text: str, reasons: list[dict], instruction_id: str | None = None) -> None:
        self._count_rejection(INSTRUCTION.name, '; '.join(r['message'] for r in reasons))
        self.get_logger().warning(f'instruction {instruction_id} rejected: '
                                  + '; '.join(r['message'] for r in reasons), throttle_duration_sec=1.0)
        self._emit(self.sequencer.reject(text, reasons, instruction_id))

    def _emit(self, events: list[dict]) -> None:
        factor = None if self.twin_time is None else self.twin_time.real_time_factor(time.monotonic())
        for event in events:
            event['stamp'] = clock_s(self)
            if self.twin_time is not None:  # how fast the twin runs: below 1, steps take longer in wall time
                event['step_clock'] = self.params.step_time_topic
                event['real_time_factor'] = None if factor is None else round(factor, 3)
            self.status_pub.publish(String(data=STATUS.encode(event)))
        if events:
            self._publish_step()

    def _publish_step(self) -> None:
        active = self.sequencer.active
        key = None if active is None else (self.sequencer.sequence_id, active.index)
        if key == self._active_key and key is not None:
            return
        self._active_key = key
        if active is None:
            self.step_pub.publish(String(data=ACTIVE_STEP.encode(ActiveStep(
                sequence_id=self.sequencer.sequence_id, index=None, task=None, instruction=None))))
            return
        # Embedding first: a reader that acts on the step finds the matching embedding already there.
        self.embedding_pub.publish(array_message(self.task_embedding[active.task],
                                                 f'embedding:{active.task}'))
        self.step_pub.publish(String(data=ACTIVE_STEP.encode(ActiveStep(
            sequence_id=self.sequencer.sequence_id, index=active.index, task=active.task,
            instruction=active.instruction))))


def main(args=None) -> int:
    return run_node(InstructionNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
