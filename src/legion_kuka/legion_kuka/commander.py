"""The arm's commander: policy actions -> safe joint position commands, one control cycle at a time
(pure Python, no ROS; the ``sim2real`` node is a thin adapter over it).

Chain per policy action: :class:`~legion_kuka.sim2real.Sim2Real` (task-frame hand target, IK, time
scaling, interpolation over the control cycles of one policy step) -> :class:`~legion_kuka.safety.
SafetyFilter`. Nothing the commander returns to send has not passed the filter.

The caller feeds it what happens, each with the time of its own clock (``now``, seconds) and, for
joint states, a cycle id (an increasing integer per control cycle, e.g. the joint state's stamp in ns):

- :meth:`ArmCommander.joint_state`: one control cycle. It gets at most one command (the filter's
  velocity and acceleration bounds hold per call): the next target of the current policy step's
  interpolation, or of a transit. A cycle id going backwards (the stamps re-anchored after a clock
  jump) starts the count afresh; ``now`` going backwards (sim time: the twin restarted) starts the
  filter from rest at the measured joints instead of refusing every sample as out of order.
- :meth:`ArmCommander.action`: a policy action. Its first target goes out at once if its cycle has no
  command yet (``send_on_action``): the latency from a joint-state sample to its command is then not
  a timer phase. After a hold the hand target is anchored at the measured hand again: no jump.
- :meth:`ArmCommander.watchdog`: no action for ``action_timeout_s`` (policy dead, step ended,
  observation stale): holding; a position controller holds the last commanded target.
- :meth:`ArmCommander.estop` / :meth:`ArmCommander.reset_estop`: the e-stop latches when requested or
  when the filter latches itself (tracking error). A reset is refused while the e-stop is still
  requested and without a fresh joint state; it applies a task box that came in the meantime.
- :meth:`ArmCommander.new_step`, :meth:`ArmCommander.station`: a new step starts from where the arm
  is; a new task box or workcell station replaces the translator and (``workspace='task'``) the
  filter's box. A station with a start posture is reached first by a :class:`~legion_kuka.workcell.
  Transit` (fingers opened, the workcell's box), one target per cycle; actions are ignored until it
  is there, then the filter takes the station's own box.
- :meth:`ArmCommander.deactivate` / :meth:`ArmCommander.activate`: a managed node leaving and entering
  ``active``. Inactive, nothing is commanded: the arm holds (a position controller keeps the last
  command), actions are dropped, a transit cut short is planned again from where the arm is once
  active; joint states, e-stop, scenes and stations are still followed (a tracking error latches as
  always). Active again, the filter starts from rest at the measured joints (a latched e-stop stays
  latched) and the commander holds until the next action, anchored at the measured hand.
- :meth:`ArmCommander.scene`: a simulator announces that it places the arm at a posture (a new scene:
  the twin jumps, no arm moves like that). The first joint state at that posture (within
  :data:`SCENE_POSTURE_TOLERANCE_RAD`) re-anchors instead of counting as a tracking error: the filter
  starts from rest there, the commander holds until the next action. Any other joint state is checked
  as always (a collision still latches), and an announcement never releases a latched e-stop.

Every call returns a :class:`Commands`: the joint positions and/or gripper command to send now, and
:class:`Event` s for the caller's status and log.

:class:`~legion_kuka.chain.ChainRunner` (and so ``env.embodiment=twin``) does not go through it: the
chain is synchronous, a whole planned step with each target on its own twin cycle after the joint
state of that cycle, while here a target is chosen by the clock (``Sim2Real.next_target``) and an
action's first target goes out before its cycle's next joint state. Mapped onto the commander the chain
would send other targets (an extra one at each step's first cycle), and a training run depends on it.
"""
from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from legion_kuka.sim2real import Sim2Real

ARM_DOF = 7
#: How close a joint state must be to an announced scene posture to be that scene's jump (rad): the
#: twin publishes the posture it was reset to, so only float noise and a cycle of sag separate them;
#: the filter's tracking limit (0.2 rad) is 20 times wider.
SCENE_POSTURE_TOLERANCE_RAD = 0.01


class ArmState(str, Enum):
    HOLDING = 'holding'  # nothing streams; the controller holds the last command
    COMMANDING = 'commanding'  # policy steps stream, one target per cycle
    TRANSIT = 'transit'  # on the way to a new station; actions wait
    ESTOP = 'estop'  # latched: nothing goes out until reset_estop()


@dataclass(frozen=True)
class Event:
    """Something the caller reports. ``kind``: ``estop`` (requested), ``filter_estop`` (the filter
    latched itself; ``reasons``), ``holding`` (stale actions), ``transit`` (started; ``duration_s``),
    ``at_station``, ``fault`` (no task box / no transit path), ``rejected`` (an action that cannot be
    translated), ``scene`` (a posture announced), ``rescene`` (the arm reported it: re-anchored)."""

    kind: str
    text: str
    reasons: tuple[str, ...] = ()
    duration_s: float | None = None


@dataclass
class Commands:
    """What to send now (``position``: 7 joint positions, ``gripper``: in [-1, 1]), and what happened."""

    position: np.ndarray | None = None
    gripper: float | None = None
    events: list[Event] = field(default_factory=list)

    def in_order(self) -> list[tuple[str, Any]]:
        """``('position' | 'gripper', value)`` in the order to send them: an action's arm command before
        its gripper's, a transit's fingers opened before its first target."""
        sends = [] if self.position is None else [('position', self.position)]
        if self.gripper is not None:
            transit = any(event.kind == 'transit' for event in self.events)
            sends.insert(0 if transit else len(sends), ('gripper', float(self.gripper)))
        return sends


@dataclass(frozen=True)
class CommanderConfig:
    """The commander's settings (the node's parameters of the same names; see config/sim2real.yaml)."""

    controller_rate_hz: float = 100.0
    policy_rate_hz: float = 10.0
    action_timeout_s: float = 0.3
    joint_state_timeout_s: float = 0.05
    velocity_scale: float = 0.1
    position_margin_rad: float = math.radians(5.0)
    hand_offset_m: float = 0.0  # flange -> the policy's hand point along the tool axis
    hand_response: str = 'metaworld'
    task_workspace: bool = True  # the filter's box from the hand box; False: the default cell box
    task_hand_box: bool = True  # a step's hand box is its task's (step()); False: Meta-World's default
    send_on_action: bool = True


@dataclass(frozen=True)
class Station:
    """A workcell station: its task frame, hand box and, to be reached by a transit, the start posture,
    the workcell's box and the swing height. :meth:`from_message` reads sim_bridge's station JSON."""

    task_frame: tuple[np.ndarray, np.ndarray]
    hand_box: tuple[np.ndarray, np.ndarray] | None = None
    start_posture: np.ndarray | None = None
    workcell_box: tuple[np.ndarray, np.ndarray] | None = None
    lift_to_m: float | None = None

    @classmethod
    def from_message(cls, station: dict) -> Station:
        """Raises ValueError, KeyError or TypeError on a malformed description."""
        frame = station['frame']
        task_frame = (np.asarray(frame['position'], dtype=float),
                      np.asarray(frame['quaternion_wxyz'], dtype=float))
        hand_box = None
        if 'hand_low' in station and 'hand_high' in station:
            hand_box = (np.asarray(station['hand_low'], dtype=float),
                        np.asarray(station['hand_high'], dtype=float))
        if 'start_posture' not in station:
            return cls(task_frame, hand_box)
        goal = read_finite(station['start_posture'], ARM_DOF, 'start_posture')
        low = read_finite(station['workspace_low'], 3, 'workspace_low')
        high = read_finite(station['workspace_high'], 3, 'workspace_high')
        lift = float(station['lift_to_m'])
        if not np.isfinite(lift) or np.any(low >= high):
            raise ValueError('the workcell box or swing height is not valid')
        return cls(task_frame, hand_box, goal, (low, high), lift)


def read_finite(values, size: int, what: str) -> np.ndarray:
    """``size`` finite numbers from a JSON field, or ValueError saying what is wrong."""
    array = np.asarray(values, dtype=float)
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f'{what} must be {size} finite numbers, got {values!r}')
    return array


@functools.cache  # building a Meta-World env takes a while: once per task and process
def task_hand_box(task: str) -> tuple[np.ndarray, np.ndarray]:
    """The mocap box Meta-World clips the hand to in ``task`` (task frame), read-only. Raises what the
    env raises for an unknown task (not cached)."""
    from legion_kuka.metaworld_kuka import kuka_env_class

    env = kuka_env_class(task)()
    try:
        box = (np.array(env.mocap_low, dtype=float), np.array(env.mocap_high, dtype=float))
    finally:
        env.close()
    for side in box:
        side.setflags(write=False)
    return box


def _same_box(a, b) -> bool:
    return a is not None and b is not None and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


class ArmCommander:
    """Policy actions, joint states, e-stop and stations in; joint and gripper commands out. See module.

    ``task_frame``: pose of the task frame in the robot base frame, (position, quaternion wxyz); None:
    the single-task placement. Raises ValueError for settings the translator refuses.
    """

    def __init__(self, config: CommanderConfig = CommanderConfig(), task_frame: Any = None,
                 active: bool = True) -> None:
        from legion_kuka.kinematics import IiwaKinematics
        from legion_kuka.safety import planning_kinematics

        if config.task_hand_box:
            import legion_kuka.metaworld_kuka  # noqa: F401  (slow first import: here, not at the first step)
        self.config = config
        self.period_s = 1.0 / config.controller_rate_hz
        self.kinematics = IiwaKinematics(tool='tcp')  # the safety filter's box bounds the gripper's tcp
        self.task_frame = task_frame
        self.hand_box: tuple | None = None
        limits = self._limits()
        # IK moves the policy's hand point inside the filter's position limits, as the chain does.
        self.planning = planning_kinematics(limits, config.hand_offset_m)
        self.translator = self._make_translator(task_frame, None)
        self.safety = self._make_filter(limits)
        self.workspace: list | None = None  # the filter's tcp box as reported (None: the default box)
        self._pending_workspace = None  # a task's box waiting for the e-stop reset

        self.q: np.ndarray | None = None  # measured joints
        self._q_time: float | None = None  # when they arrived (commander clock)
        self.cycle: int | None = None  # id of the newest control cycle
        self._commanded: int | None = None  # the cycle that got a command
        self._state = ArmState.HOLDING
        self.active = active  # False: nothing is commanded (see deactivate)
        self.estop_requested = False
        self.anchored = False  # translator anchored at the measured hand
        # Where the fingers were last sent (m closed): a re-anchored or new translator models the
        # finger on from there, not from open (a held object stays held across a hold or a new step).
        self._gripper_closing = 0.0
        self._pending_action = False  # an action whose first target is not out yet
        self._last_action_s: float | None = None
        self._transit_targets: deque[np.ndarray] = deque()
        self._pending_transit: Station | None = None  # waiting for a joint state / the e-stop reset
        self._transit_under_way: Station | None = None
        self._announced_posture: np.ndarray | None = None  # a scene's jump, expected on a joint state
        self.scenes = 0  # announced jumps taken as re-anchors (status)
        self.sent = 0
        self.refused: dict[str, int] = {}

    @property
    def state(self) -> ArmState:
        return self._state

    @property
    def takes_actions(self) -> bool:
        """Whether an action would be acted on now (active, a joint state known, no e-stop, no transit)."""
        return self.active and self._state not in (ArmState.ESTOP, ArmState.TRANSIT) and self.q is not None

    def report(self) -> dict[str, Any]:
        """What a status shows of the commander besides its state."""
        return {'commands_sent': self.sent, 'refused': dict(self.refused), 'joint_state': self.q is not None,
                'workspace': self.workspace, 'scenes': self.scenes}

    # -- builders ---------------------------------------------------------------------------------
    def _limits(self, workspace=None):
        from legion_kuka.safety import SafetyLimits

        options = {'position_margin': self.config.position_margin_rad,
                   'velocity_scale': self.config.velocity_scale}
        if workspace is not None:
            options['workspace'] = workspace
        return SafetyLimits.from_description(**options)

    def _make_translator(self, task_frame, hand_box) -> Sim2Real:
        kwargs = {} if hand_box is None else {'hand_low': hand_box[0], 'hand_high': hand_box[1]}
        return Sim2Real(self.planning, task_frame=task_frame, control_rate_hz=self.config.controller_rate_hz,
                        policy_rate_hz=self.config.policy_rate_hz, hand_response=self.config.hand_response,
                        **kwargs)

    def _make_filter(self, limits):
        from legion_kuka.safety import SafetyFilter

        return SafetyFilter(limits, self.kinematics, control_period_s=self.period_s,
                            stale_after_s=self.config.joint_state_timeout_s)

    def _rebuild_filter(self, workspace) -> None:
        """A filter with the new box; it starts from rest at the measured joints (a step boundary)."""
        self.safety = self._make_filter(self._limits(workspace))
        if self.q is not None:
            self.safety.update_joint_state(self.q, self._q_time)
        self._pending_workspace = None
        self.workspace = [workspace[0].round(4).tolist(), workspace[1].round(4).tolist()]

    def task_workspace(self, hand_box) -> tuple[np.ndarray, np.ndarray]:
        """The tcp box for a hand box (task frame), as legion_kuka's chain derives it."""
        from legion_kuka.frames import Frame, default_task_frame
        from legion_kuka.safety import hand_box_workspace

        frame = default_task_frame() if self.task_frame is None else Frame.of(self.task_frame)
        return hand_box_workspace(*hand_box, frame, self.config.hand_offset_m)

    # -- inputs -----------------------------------------------------------------------------------
    def joint_state(self, q: np.ndarray, cycle: int, now: float) -> Commands:
        """A measured joint state: one control cycle (see module)."""
        out = Commands()
        if self.cycle is not None and cycle < self.cycle:
            self._commanded = None  # the stamps re-anchored after a clock jump: cycles count afresh
        self.cycle = cycle
        self.q = np.asarray(q, dtype=float)
        # The filter's freshness check runs on the commander's clock: the sample is fresh when it arrives.
        if self._q_time is not None and now < self._q_time and not self.safety.latched:
            # The clock went back (sim time: the twin restarted): start from rest at the measured
            # joints, as at a step boundary (a transit goes on).
            self.safety.reset(now)
            self.anchored = False
            if self._state is ArmState.COMMANDING:
                self._state = ArmState.HOLDING
        self._q_time = now
        if self._announced_posture is not None and self._state is not ArmState.ESTOP \
                and np.max(np.abs(self.q - self._announced_posture)) <= SCENE_POSTURE_TOLERANCE_RAD:
            self._take_scene_jump(now, out)
        self.safety.update_joint_state(self.q, now)
        if self.safety.latched and self._state is not ArmState.ESTOP:  # the arm is not where it was sent
            self._latched_by_filter(out)
            return out
        if self._pending_transit is not None and self._state is not ArmState.ESTOP:  # station came first
            self._apply_station(out)
        self._on_cycle(now, out)
        return out

    def action(self, action: Any, now: float, cycle: int | None = None) -> Commands:
        """A policy action (4 values). ``cycle``: the control cycle it was computed from, when the
        caller knows and believes it (it may be newer than the newest joint state seen here)."""
        out = Commands()
        if not self.takes_actions:
            return out
        if not self.anchored or self._state is ArmState.HOLDING:
            # re-anchor at the measured hand: no jump on resume
            self.translator.reset(self.q, now=now, gripper_closing=self._gripper_closing)
            self.anchored = True
        try:
            plan = self.translator.plan(np.clip(np.asarray(action, dtype=float), -1.0, 1.0), self.q, now=now)
        except ValueError as error:
            out.events.append(Event('rejected', f'cannot translate: {error}'))
            return out
        self._last_action_s = now
        self._state = ArmState.COMMANDING
        self._pending_action = True
        cycle = self.cycle if cycle is None else max(cycle, self.cycle or 0)
        if self.config.send_on_action and (self._commanded is None or cycle > self._commanded):
            self._send(self.translator.next_target(now), now, out, cycle)
        # Meta-World's finger after one env step, as legion_kuka's chain sends it (see legion_kuka.sim2real):
        # the raw action would close the fingers 1/speed_scale (8x at 10 Hz) faster per policy step than
        # in training, before the hand has come down (push through the graph: stuck 6 cm above the puck).
        out.gripper = self._gripper_closing = float(plan.gripper_command)
        return out

    def watchdog(self, now: float) -> Commands:
        """Call now and then: stale actions make the hold visible (streaming stops per cycle anyway)."""
        out = Commands()
        if self._state is ArmState.COMMANDING and self._stale(now):
            self._state = ArmState.HOLDING
            timeout = self.config.action_timeout_s
            out.events.append(Event('holding', f'no action for {timeout:.2f} s: holding'))
        return out

    def estop(self, requested: bool) -> Commands:
        """The e-stop request (latched topic): true latches at once; false only allows a reset."""
        out = Commands()
        self.estop_requested = bool(requested)
        if requested and self._state is not ArmState.ESTOP:
            self._state = ArmState.ESTOP
            self.safety.estop('estop_topic')
            out.events.append(Event('estop', 'E-STOP: no more joint commands until ~/reset_estop'))
        return out

    def reset_estop(self, now: float) -> str | None:
        """Release the e-stop; holding until the next action. Returns why not (``estop_requested``,
        ``no_fresh_joint_state``) or None on success."""
        if self.estop_requested:
            return 'estop_requested'
        if not self.safety.reset(now):
            return 'no_fresh_joint_state'
        if self._transit_targets:  # an e-stop cut a transit short: plan it again from where the arm is
            self._transit_targets, self._pending_transit = deque(), self._transit_under_way
        self._commanded = None
        self._announced_posture = None  # a scene announced after the latch: the reset starts over anyway
        if self._pending_workspace is not None:  # a new task's box waited for the reset
            self._rebuild_filter(self._pending_workspace)
        self._state, self.anchored = ArmState.HOLDING, False
        return None

    def deactivate(self) -> Commands:
        """Command nothing from now on (see module): holding; a transit cut short waits for activate()."""
        self.active = False
        if self._transit_targets:
            self._transit_targets, self._pending_transit = deque(), self._transit_under_way
        self._pending_action = self.anchored = False
        if self._state is not ArmState.ESTOP:
            self._state = ArmState.HOLDING
        return Commands(events=[Event('inactive', 'inactive: no commands; the controller holds the last')])

    def activate(self, now: float) -> Commands:
        """Commands may flow again (see module); holding until the next action."""
        self.active, self.anchored = True, False
        if not self.safety.latched:  # the motion before the pause is history: start from rest
            self.safety.reset(now)
            self._commanded = None
        return Commands(events=[Event('active', 'active: holding until the next action')])

    def step(self, task: str | None) -> Commands:
        """A new step of ``task`` (None: none known): :meth:`new_step` with the task's hand box
        (``task_hand_box``). A task without a box, or one the translator refuses, keeps the previous box
        (a ``fault`` event says why)."""
        out, box = Commands(), None
        if task is not None and self.config.task_hand_box:
            try:
                box = task_hand_box(task)
            except Exception as error:  # an unknown task (Meta-World's own error)
                out.events.append(Event('fault', f'no hand box for {task}: {error}'))
        try:
            out.events += self.new_step(box).events
        except ValueError as error:
            out.events.append(Event('fault', f'hand box of {task}: {error}'))
        return out

    def new_step(self, hand_box: tuple | None = None) -> Commands:
        """A new step starts from where the arm is, not from the previous step's hand target;
        ``hand_box``: its task's hand box (task frame), None: keep the current one."""
        out = Commands()
        self.anchored = False
        if hand_box is not None and not _same_box(hand_box, self.hand_box):
            self.translator = self._make_translator(self.task_frame, hand_box)
            self.hand_box = hand_box
            self._guard_with_task_box()
        return out

    def station(self, station: Station) -> Commands:
        """A new workcell station (see module). Raises ValueError, changing nothing, for a frame or
        box the translator refuses."""
        hand_box = self.hand_box if station.hand_box is None else station.hand_box
        self.translator = self._make_translator(station.task_frame, hand_box)
        self.task_frame, self.hand_box = station.task_frame, hand_box
        self.anchored = False
        self._pending_transit = station if station.start_posture is not None else None
        out = Commands()
        self._apply_station(out)
        return out

    def scene(self, posture: Any) -> Commands:
        """A simulator will place (or has just placed) the arm at ``posture`` (7 joints, rad): see module.
        Raises ValueError, changing nothing, for a posture that is not 7 finite numbers."""
        self._announced_posture = read_finite(posture, ARM_DOF, 'posture')
        out = Commands()
        out.events.append(Event('scene', 'a new scene: the arm is expected at its start posture'))
        if self.q is not None and self._state is not ArmState.ESTOP and \
                np.max(np.abs(self.q - self._announced_posture)) <= SCENE_POSTURE_TOLERANCE_RAD:
            # The jump's joint state came first: the filter may have seen no command since, so check
            # now; one that already latched stays latched (the operator's reset, as for any latch).
            self._take_scene_jump(self._q_time, out)
            self.safety.update_joint_state(self.q, self._q_time)
        return out

    def _take_scene_jump(self, now: float, out: Commands) -> None:
        """The arm stands at the announced posture: start over from rest there (not a tracking error),
        holding until the next action; a transit under way is planned again from there."""
        self._announced_posture = None
        self.safety.reset(now)  # not latched here: forgets the last command, the jump is no tracking error
        if self._transit_targets:
            self._transit_targets, self._pending_transit = deque(), self._transit_under_way
        self._commanded, self._pending_action = None, False
        self._state, self.anchored = ArmState.HOLDING, False
        self._gripper_closing = 0.0  # a new scene starts with the fingers open, as Meta-World's reset
        self.scenes += 1
        out.events.append(Event('rescene', 'the arm is at the new scene\'s start: holding until the next '
                                'action'))

    # -- stations and transits --------------------------------------------------------------------
    def _apply_station(self, out: Commands) -> None:
        """Move to the new station if a transit is asked for and possible now (joint state known, no
        e-stop: else it waits for them); otherwise guard with the station's own box."""
        if self._pending_transit is not None and self.q is not None and self._state is not ArmState.ESTOP \
                and self.active:
            station, self._pending_transit = self._pending_transit, None
            if self._start_transit(station, out):
                return
        self._guard_with_task_box()

    def _guard_with_task_box(self) -> None:
        """With the task workspace, the filter's box becomes the current hand box's (during a transit:
        at its end; while e-stopped: at the reset, never releasing the e-stop)."""
        if self.hand_box is None or not self.config.task_workspace or self._transit_targets:
            return
        workspace = self.task_workspace(self.hand_box)
        if self._state is ArmState.ESTOP:
            self._pending_workspace = workspace
        else:
            self._rebuild_filter(workspace)

    def _start_transit(self, station: Station, out: Commands) -> bool:
        """Move the arm to the station's start posture through a filter with the workcell's box;
        policy actions wait until it is there. False: no path."""
        from legion_kuka.workcell import TRANSIT_GRIPPER, TRANSIT_SETTLE_CYCLES, Transit

        limits = self._limits(station.workcell_box)
        try:
            path = Transit(self.q, station.start_posture, limits, self.kinematics,
                           control_period_s=self.period_s, lift_to_m=station.lift_to_m)
        except ValueError as error:
            out.events.append(Event('fault', f'no transit to the new station: {error}'))
            return False
        self.safety = self._make_filter(limits)
        self.safety.update_joint_state(self.q, self._q_time)
        self._transit_under_way = station
        self._transit_targets = deque([*path.targets, *[station.start_posture] * TRANSIT_SETTLE_CYCLES])
        out.gripper = TRANSIT_GRIPPER  # each skill starts with the fingers open
        self._gripper_closing = 0.0
        self._state, self._pending_action = ArmState.TRANSIT, False
        out.events.append(Event('transit', f'transit to the next station: {path.duration_s:.1f} s',
                                duration_s=path.duration_s))
        return True

    # -- output -----------------------------------------------------------------------------------
    def _on_cycle(self, now: float, out: Commands) -> None:
        """Stream the interpolation of the current policy step (or a transit, or the pending action's
        first target): at most one command per cycle."""
        if self._state is ArmState.ESTOP or self.q is None or not self.active:
            return
        done = self._commanded is not None and self._commanded >= self.cycle
        if self._state is ArmState.TRANSIT:
            if not done:
                self._send(self._transit_targets.popleft(), now, out)
                if not self._transit_targets:  # there: the station's own box from now on (after a
                    # reset if the last target latched the filter)
                    if self._state is ArmState.TRANSIT:
                        self._state = ArmState.HOLDING
                    self.anchored = False
                    self._apply_station(out)
                    out.events.append(Event('at_station', 'at the station: waiting for actions'))
            return
        if self._state is not ArmState.COMMANDING or self._stale(now) or not self.anchored or done:
            return
        if self.translator.cycles_per_step > 1 or self._pending_action:
            self._send(self.translator.next_target(now), now, out)

    def _stale(self, now: float) -> bool:
        return self._last_action_s is None or now - self._last_action_s > self.config.action_timeout_s

    def _latched_by_filter(self, out: Commands) -> None:
        self._state = ArmState.ESTOP
        reasons = self.safety.latch_reasons
        out.events.append(Event('filter_estop', f'E-STOP by the safety filter: {", ".join(reasons)}',
                                reasons=reasons))

    def _send(self, target: np.ndarray, now: float, out: Commands, cycle: int | None = None) -> None:
        decision = self.safety.command(target, stamp=self._q_time, now=now)
        if self.safety.latched and self._state is not ArmState.ESTOP:  # the filter latched (tracking error)
            self._latched_by_filter(out)
            return
        for reason in decision.reasons or ([] if decision.position is not None else ['refused']):
            self.refused[reason] = self.refused.get(reason, 0) + 1
        if decision.position is None:
            return
        out.position = np.asarray(decision.position, dtype=np.float64)
        self._commanded = self.cycle if cycle is None else cycle
        self._pending_action = False
        self.sent += 1
