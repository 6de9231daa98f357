"""What the ``instruction`` node decides between its messages (no rclpy).

The node (``legion_ros.nodes.instruction``) decodes messages and publishes what an
:class:`InstructionDesk` returns: the status events of each input (lists of dicts, as the
:class:`~legion_ros.instructions.Sequencer`'s methods return them) and the active step when it changes.
The desk decides:

* an instruction is taken into a bounded :class:`~legion_ros.instructions.Inbox` at once (a duplicate id
  is counted, one more than ``max_pending`` rejected ``queue_full``) and planned from there one at a
  time into a sequence of skills, or rejected with the matcher's reasons;
* while the arm stands in a latched e-stop (sim2real's status ``estop``) the running instruction ends at
  once, its step failed and the rest cancelled, and new instructions are rejected ``arm_stopped`` until
  another arm state clears it;
* while sim2real is not ``active`` (its status's ``lifecycle``: an operator's ``ros2 lifecycle set
  /legion/sim2real deactivate``) the arm holds, so the active step's clock is paused and every event
  says why (``waiting``: ``sim2real_inactive`` / ``sim2real_unconfigured``); once sim2real is active
  again the step goes on with the time it had left. Unconfigured for ``sim2real_unconfigured_s`` (node
  clock) while a step waits, or ``finalized``, the running instruction fails as on an e-stop; while
  sim2real is finalized new instructions are rejected ``arm_unavailable``. Until sim2real's status
  has been heard nothing waits (a graph without it, as before);
* a step succeeds on the task monitor's report, fails after ``step_timeout_s``; cancel and skip say
  whether anything was running;
* every rejected input is counted per topic (``notify``: the node's status).

Times: ``now`` is the time steps are timed in, the twin's when a step clock is set
(:class:`~legion_ros.instructions.TwinTime`), else the node clock's.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from legion_kuka.commander import ArmState
from legion_ros.instructions import (
    Inbox,
    InstructionRejectedError,
    InstructionRequest,
    Reason,
    Sequencer,
    StepRecord,
    TwinTime,
    validate_instruction,
)
from legion_ros.interfaces import INSTRUCTION, LIFECYCLE_STATES, SIM2REAL_CHANGE_STATE, BadMessageError

ARM_STATES = {arm.value for arm in ArmState}
UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = LIFECYCLE_STATES
_SET = f'ros2 lifecycle set {SIM2REAL_CHANGE_STATE.name.removesuffix("/change_state")}'  # /legion/sim2real


def _shown(text: str | bytes) -> str:
    """At most 200 characters of an instruction, for a status event."""
    return text[:200].decode('utf-8', errors='replace') if isinstance(text, bytes) else text[:200]


class InstructionDesk:
    def __init__(self, matcher, sequencer: Sequencer, *, max_bytes: int, max_steps: int, max_pending: int,
                 step_clock: str = '', sim2real_unconfigured_s: float = 60.0, logger=None,
                 warn: Callable[[str], None] | None = None,
                 notify: Callable[..., None] | None = None) -> None:
        self.matcher, self.sequencer = matcher, sequencer
        self.max_bytes, self.max_steps, self.max_pending = max_bytes, max_steps, max_pending
        self.step_clock = step_clock
        self.twin_time = TwinTime() if step_clock else None
        self.log = logger or logging.getLogger(__name__)
        self.warn = warn or self.log.warning  # rejections: the node throttles them
        self.notify = notify or (lambda state, **fields: None)
        self.inbox = Inbox(max_pending)
        self.duplicates = 0
        self.arm_stopped: str | None = None  # why the arm stands in a latched e-stop; None: it may move
        self.sim2real: str | None = None     # sim2real's lifecycle state; None: not heard (nothing waits)
        self.sim2real_unconfigured_s = sim2real_unconfigured_s
        # (sequence id, node clock): since when that instruction's step waits on an unconfigured sim2real
        self._unconfigured_since: tuple[int, float] | None = None
        self.rejected: dict[str, int] = {}   # per input topic, as every node's status says it
        self._active_key = None

    def now(self, node_clock_s: float) -> float:
        """The time steps are timed in: the twin's (a step clock) or the node clock."""
        return self.twin_time.elapsed_s if self.twin_time is not None else node_clock_s

    # -- instructions ---------------------------------------------------------------------------
    def receive(self, payload: bytes) -> list[dict]:
        """Take an instruction message's payload into the inbox (cheap); :meth:`plan_next` plans it."""
        try:
            request = InstructionRequest.from_payload(payload)
        except BadMessageError as error:
            return self.malformed(str(error))
        except InstructionRejectedError as error:
            return self.reject('<unreadable>', error.reasons, error.instruction_id)
        verdict, request = self.inbox.offer(request)
        if verdict == 'duplicate':  # a client resending an instruction it is not sure arrived
            self.duplicates += 1
        elif verdict == 'full':
            return self.reject(_shown(request.text), [{
                'code': Reason.QUEUE_FULL.value,
                'message': f'{len(self.inbox)} instructions are already waiting (max_pending '
                           f'{self.max_pending}); send it again later'}], request.id)
        return []

    def malformed(self, message: str) -> list[dict]:
        return self.reject('<unreadable>', [{'code': Reason.MALFORMED.value, 'message': message}])

    def plan_next(self, now: float) -> list[dict]:
        """Plan the oldest waiting instruction into a sequence (preempting a running one), or reject it."""
        request = self.inbox.take()
        if request is None:
            return []
        if self.arm_stopped is not None:
            return self.reject(_shown(request.text), [{'code': Reason.ARM_STOPPED.value, 'message':
                               f'{self.arm_stopped}: reset the e-stop first'}], request.id)
        if self.sim2real == FINALIZED:
            return self.reject(_shown(request.text), [{'code': Reason.ARM_UNAVAILABLE.value, 'message':
                               'sim2real is finalized: nothing can command the arm; start it again'}],
                               request.id)
        try:
            text = validate_instruction(request.text, self.max_bytes)
            plan = self.matcher.plan(text, self.max_bytes, self.max_steps)
        except InstructionRejectedError as error:
            return self.reject(_shown(request.text), error.reasons, request.id)
        self.log.info(f'instruction {request.id} "{text}" -> {[p.task for p in plan]}')
        return self.sequencer.load(text, plan, now, request.id)

    def reject(self, text: str, reasons: list[dict], instruction_id: str | None = None) -> list[dict]:
        self.bad_input(INSTRUCTION.name, '; '.join(r['message'] for r in reasons))
        self.warn(f'instruction {instruction_id} rejected: ' + '; '.join(r['message'] for r in reasons))
        return self.sequencer.reject(text, reasons, instruction_id)

    def bad_input(self, topic: str, reason: str) -> None:
        self.rejected[topic] = self.rejected.get(topic, 0) + 1
        self.notify('input_rejected', topic=topic, reason=reason[:300], rejected=dict(self.rejected))

    # -- the arm and the steps ------------------------------------------------------------------
    def arm_status(self, status: dict, now: float) -> list[dict]:
        """sim2real's state (``interfaces.ManagedNodeStatus``). A latched e-stop ends the running
        instruction at once, failed, instead of letting each step time out while the arm stands, and
        refuses new ones until it is reset; its ``lifecycle`` pauses, resumes or ends the active step
        (see module)."""
        state, lifecycle = status['state'], status.get('lifecycle')
        events = []
        if state == ArmState.ESTOP:
            reasons = status.get('reasons')
            detail = ', '.join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ''
            self.arm_stopped = 'the arm stopped in an e-stop' + (f' ({detail[:200]})' if detail else '')
            events = self._halt(now, self.arm_stopped)
        elif state in ARM_STATES or lifecycle is not None:  # (other messages are events, not states; a
            self.arm_stopped = None  # state with its lifecycle reads estop whenever one is latched)
        if lifecycle is not None and lifecycle != self.sim2real:
            self.sim2real = lifecycle
            events += self._follow_sim2real(now)
        return events

    def _follow_sim2real(self, now: float) -> list[dict]:
        """sim2real's lifecycle changed to ``self.sim2real``: the active step waits, goes on, or ends."""
        if self.sim2real == ACTIVE:
            events = self.sequencer.resume(now)
            if events:
                self.log.info(f'sim2real is active again: instruction {self.sequencer.instruction_id} '
                              'goes on')
            return events
        if self.sim2real == FINALIZED:
            self.sequencer.waiting = None  # no pause to show: the step ends
            return self._halt(now, 'sim2real is finalized: nothing can command the arm any more')
        how = (f'`{_SET} activate` resumes it' if self.sim2real == INACTIVE else
               f'configure, then activate it (`{_SET} configure`); the instruction fails if sim2real stays '
               f'unconfigured for {self.sim2real_unconfigured_s:g} s')
        waiting = {'code': f'sim2real_{self.sim2real}', 'sim2real': self.sim2real, 'message':
                   f'waiting for sim2real to be active (it is {self.sim2real}): the arm holds and the '
                   f'step\'s clock is paused; {how}'}
        events = self.sequencer.pause(now, waiting)
        if events:
            self.log.warning(f'instruction {self.sequencer.instruction_id} waits: sim2real is '
                             f'{self.sim2real}')
        return events

    def _halt(self, now: float, reason: str) -> list[dict]:
        events = self.sequencer.halt(now, reason)
        if events:
            self.log.error(f'{reason}: instruction {self.sequencer.instruction_id} ended')
        return events

    def tick(self, node_clock_s: float) -> list[dict]:
        """Time passes: a step times out on its own clock, and an instruction that has waited
        ``sim2real_unconfigured_s`` (node clock) for an unconfigured sim2real fails (each instruction
        waits that long: one that preempts another starts its own wait)."""
        now = self.now(node_clock_s)
        events = self.sequencer.tick(now)
        sequence = self.sequencer.sequence_id
        if self.sim2real != UNCONFIGURED or self.sequencer.active is None:
            self._unconfigured_since = None
        elif self._unconfigured_since is None or self._unconfigured_since[0] != sequence:
            self._unconfigured_since = (sequence, node_clock_s)
        elif node_clock_s - self._unconfigured_since[1] >= self.sim2real_unconfigured_s:
            self._unconfigured_since = None
            events += self._halt(now, f'sim2real stayed unconfigured for {self.sim2real_unconfigured_s:g} s: '
                                 f'nothing commands the arm (`{_SET} configure`, then `activate`)')
        return events

    def step_success(self, report: dict, now: float) -> list[dict]:
        if not report['success']:
            return []
        return self.sequencer.report_success(now, report.get('task'), report.get('index'),
                                             report.get('sequence_id'))

    def cancel(self, now: float) -> tuple[list[dict], str]:
        events = self.sequencer.cancel(now)
        return events, 'cancelled' if events else 'nothing is running'

    def skip(self, now: float) -> tuple[list[dict], str]:
        active = self.sequencer.active
        events = self.sequencer.skip(now)
        return events, (f'skipped step {active.index + 1} ({active.task})' if events
                        else 'nothing is running')

    # -- outputs --------------------------------------------------------------------------------
    def stamped(self, events: list[dict], stamp_s: float, wall_s: float) -> list[dict]:
        """``events`` with their stamp and, with a step clock, how fast the twin runs (below 1, steps take
        longer in wall time)."""
        factor = None if self.twin_time is None else self.twin_time.real_time_factor(wall_s)
        for event in events:
            event['stamp'] = stamp_s
            if self.twin_time is not None:
                event['step_clock'] = self.step_clock
                event['real_time_factor'] = None if factor is None else round(factor, 3)
        return events

    def active_step(self) -> tuple[bool, StepRecord | None]:
        """Whether the active step is to be published (it changed, or nothing runs) and which it is."""
        active = self.sequencer.active
        key = None if active is None else (self.sequencer.sequence_id, active.index)
        if key == self._active_key and key is not None:
            return False, active
        self._active_key = key
        return True, active
