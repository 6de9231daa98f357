"""The twin run as a driver (no ROS): what the ``sim_bridge`` node decides between its messages.

The node (``legion_ros.nodes.sim_bridge``) declares parameters, decodes commands and encodes states; a
:class:`TwinDriver` owns the twin and decides:

* which commands are applied: exactly 7 finite joint positions, a finite gripper command; anything else
  is counted and its reason kept for the status (:func:`command_problem`);
* simulated time: it advances with each cycle the twin steps and never jumps back on a reset (``/clock``);
* where a scene starts the arm: inside the safety filter's limits, as an operator would jog it in
  (:func:`start_inside_limits`);
* what a ``task`` / ``seed`` change does: in a workcell with the same seed, another station becomes
  active and nothing moves (the arm gets there by sim2real's transit); in a job of several workcells
  (:mod:`legion_kuka.job`), a task of the next workcell loads that workcell with every object's state
  carried over; otherwise the twin loads that scene, or keeps the current one and says why not;
* the state log (:mod:`legion_kuka.state_log`): the scene's positions every ``state_log_every`` cycles of
  simulated time, notes beside them, and a new segment per scene, the one before written to disk;
* the real-time factor reported every ``report_every`` cycles.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

ARM_DOF = 7
REPORT_EVERY = 100  # control cycles between status updates with the real-time factor


def command_problem(values, expected: int = ARM_DOF) -> str | None:
    """Why a joint command must not be applied, or ``None`` when it is fine."""
    if len(values) != expected:
        return f'expected {expected} joint positions, got {len(values)}'
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        return f'non-finite joint positions at indices {bad}: {[values[i] for i in bad]}'
    return None


def start_limits(margin_rad: float):
    """The joint limits a twin's arm starts inside: the datasheet's shrunk by ``margin_rad`` (sim2real's
    safety filter's position limits; no tcp box). One :class:`~legion_kuka.safety.SafetyLimits` serves
    every scene load, reset and station change (the margin is read-only)."""
    from legion_kuka.safety import SafetyLimits

    return SafetyLimits.from_description(position_margin=float(margin_rad), workspace=None)


def start_inside_limits(twin, limits) -> bool:
    """Move a freshly reset twin's arm inside ``limits`` (:func:`start_limits`; None: leave it as the
    scene put it) if it stands outside them, to the posture the pure chain starts its episodes from
    (:func:`legion_kuka.chain.posture_inside_limits`); True if it moved."""
    from legion_kuka.chain import posture_inside_limits

    if limits is None:
        return False
    posture = posture_inside_limits(twin, limits)
    if posture is None:
        return False
    twin.reset(posture=posture)
    return True


def build_twin(task: str, *, seed: int = 0, workcell=(), job=(), profile: str = 'lbr',
               control_rate_hz: float = 100.0):
    """A :class:`~legion_kuka.twin.Twin` of ``task``, or with ``workcell`` a
    :class:`~legion_kuka.workcell.WorkcellTwin` whose active station is ``task``, or with ``job`` (the
    tasks of a job's steps) one that runs the job's workcells, starting with the first step's;
    ``ValueError`` says why not (a task that is not one of the stations, a scene that does not build)."""
    workcell, job = list(workcell), list(job)
    if job:
        if workcell:
            raise ValueError('give a workcell or a job, not both (a job plans its own workcells)')
        if task != job[0]:
            raise ValueError(f'a job\'s twin starts at its first step\'s task {job[0]!r}, not {task!r}')
        from legion_kuka.workcell import WorkcellTwin

        try:
            return WorkcellTwin(task=task, job=job, seed=seed, profile=profile,
                                control_rate_hz=control_rate_hz)
        except (ValueError, KeyError) as error:
            raise ValueError(f'cannot build the workcells of the job {job}: {error}') from None
    if workcell and task not in workcell:
        raise ValueError(f'task {task!r} is not one of the workcell\'s stations {workcell}: '
                         'task (task:=) picks the active station, one of workcell (workcell:=)')
    from legion_kuka.twin import Twin  # MuJoCo + Meta-World: heavy, only once the arguments are fine

    try:
        if workcell:
            from legion_kuka.workcell import WorkcellTwin
            return WorkcellTwin(workcell, task, seed=seed, profile=profile, control_rate_hz=control_rate_hz)
        return Twin(task, seed=seed, profile=profile, control_rate_hz=control_rate_hz)
    except (ValueError, KeyError) as error:
        what = f'the workcell {workcell}' if workcell else f'the twin for task {task!r}'
        raise ValueError(f'cannot build {what}: {error}') from None


@dataclass(frozen=True)
class Objects:
    """The task's objects, then the goal, in the robot base frame: what the object topics report."""
    names: list[str]
    poses: list[tuple[Any, Any]]  # (position xyz, quaternion wxyz) per name
    names_changed: bool           # the names differ from those last reported (or were forgotten by a reset)
    success: bool


class TwinDriver:
    def __init__(self, twin, *, start_margin_rad: float = 0.0, poses_every: int = 1,
                 state_log_every: int | None = None, state_log_path: str = '',
                 report_every: int = REPORT_EVERY, logger=None) -> None:
        self.twin = twin
        self.log = logger or logging.getLogger(__name__)
        self.start_margin_rad = start_margin_rad
        self.limits = start_limits(start_margin_rad)  # where each scene starts the arm, the station's too
        self._jog_limits = self.limits if start_margin_rad > 0 else None  # 0: the scene's posture as is
        self.period_ns = round(twin.control_period_s * 1e9)
        self.sim_time_ns = 0
        self.rejected = 0
        self.last_rejection: str | None = None
        self.poses_every = max(1, int(poses_every))
        self.report_every = report_every
        self.cycle = 0
        self._rate_mark: tuple[int, int] | None = None
        self._names: list[str] = []
        self.start_inside()
        self.state_log = self.state_log_path = None
        if state_log_every:
            from legion_kuka.state_log import StateRecorder

            self.state_log, self.state_log_path = StateRecorder(every=max(1, state_log_every)), state_log_path
            self._begin_state_segment()

    @property
    def sim_time_s(self) -> float:
        return self.sim_time_ns * 1e-9

    def start_inside(self) -> bool:
        """After a reset to a task's initial state: jog the arm inside the safety limits if needed."""
        if not start_inside_limits(self.twin, self._jog_limits):
            return False
        q = self.twin.joint_state().position
        self.log.info(f'{self.twin.task} starts the arm outside the joint limits less '
                      f'{math.degrees(self.start_margin_rad):g} deg: starting from the nearest posture '
                      f'inside them instead (deg: {", ".join(f"{math.degrees(v):.1f}" for v in q)})')
        return True

    def scene(self) -> dict:
        """The scene the arm was placed in: task, seed and the posture it jumped to (no real arm jumps)."""
        return {'task': self.twin.task, 'seed': int(self.twin.seed),
                'posture': self.twin.joint_state().position.tolist()}

    def status(self) -> tuple[str, dict]:
        return ('paused' if self.twin.paused else 'running',
                {'task': self.twin.task, 'seed': self.twin.seed, 'sim_time_s': self.sim_time_s,
                 'rejected_commands': self.rejected, 'last_rejection': self.last_rejection})

    # -- stepping ---------------------------------------------------------------------------------
    def tick(self) -> tuple[bool, float | None]:
        """One control cycle: whether the object poses are due, and the real-time factor when due
        (below 1 the machine cannot step the twin at the controller rate)."""
        if self.twin.tick():
            self._advance()
        self.cycle += 1
        factor = self._rate() if self.cycle % self.report_every == 0 else None
        return self.cycle % self.poses_every == 0, factor

    def step(self) -> str | None:
        """One cycle while paused (``~/step``); otherwise why not."""
        if not self.twin.paused:
            return 'not paused: ~/step advances one cycle only while paused (~/set_pause true)'
        self.twin.step(1)
        self.sim_time_ns += self.period_ns  # not logged: the state log follows the running twin
        return None

    def _advance(self) -> None:
        self.sim_time_ns += self.period_ns
        self._record_state()

    def _rate(self) -> float | None:
        wall_ns, sim_ns = time.monotonic_ns(), self.sim_time_ns
        mark, self._rate_mark = self._rate_mark, (wall_ns, sim_ns)
        if mark is None or wall_ns <= mark[0]:
            return None
        return round((sim_ns - mark[1]) / (wall_ns - mark[0]), 3)

    # -- commands ---------------------------------------------------------------------------------
    def _reject(self, what: str, reason: str) -> bool:
        self.rejected += 1
        self.last_rejection = f'{what}: {reason}'
        self.log.warning(f'rejected {what} ({reason}); holding the previous target')
        return False

    def command(self, values) -> bool:
        """Apply a joint position command, held until the next; False: rejected, the previous target held."""
        values = list(values)
        problem = command_problem(values)
        if problem is not None:
            return self._reject('joint command', problem)
        self.twin.set_joint_targets(values)
        return True

    def gripper(self, value: float) -> bool:
        if not math.isfinite(value):
            return self._reject('gripper command', f'non-finite value {value}')
        self.twin.set_gripper(value)
        return True

    # -- scenes -----------------------------------------------------------------------------------
    def reset(self, keyframe: str | None = None) -> str:
        """The scene's initial state (``keyframe``: with the arm there); the object names are reported
        again, so that a hostile publisher's replacement of them does not stand until the scene changes."""
        self.twin.reset(keyframe=keyframe)
        if keyframe is None:
            self.start_inside()
        self._names = []
        return f'reset {self.twin.task} seed {self.twin.seed}' + (f' to {keyframe}' if keyframe else '')

    def load(self, task: str, seed: int, workcell: bool = False) -> str:
        """Switch to ``task`` / ``seed``: ``'station'`` (another station of the same workcell, nothing
        moves) or ``'scene'`` (the twin loaded it: a job's next workcell, its objects as they were left,
        or the task's scene); ``ValueError``: the current scene is kept."""
        if workcell and seed == self.twin.seed:
            # ValueError for a task that is not a station (of any of a job's workcells)
            if self.twin.enter(task) == 'station':
                self.log.info(f'station {task} active')
                return 'station'
            self.log.info(f'workcell {list(self.twin.tasks)} loaded for {task}, objects as they were left')
            return self._scene_loaded()
        try:
            self.twin.reset(task=task, seed=seed)
        except Exception as error:  # unknown task, scene that does not build: keep the current one
            reason = f'cannot load {task!r} seed {seed}: {type(error).__name__}: {error}'
            self.log.warning(reason)
            raise ValueError(reason) from None
        self.log.info(f'scene {task} (seed {seed}) loaded')
        return self._scene_loaded()

    def _scene_loaded(self) -> str:
        self.start_inside()
        if self.state_log is not None:
            self._begin_state_segment()
            self.save_state_log()  # what the scene before recorded is safe on disk
        return 'scene'

    def objects(self) -> Objects:
        poses = self.twin.object_poses()
        names = [*poses, 'goal']
        changed, self._names = names != self._names, names
        return Objects(names, [*poses.values(), (self.twin.goal_position(), (1.0, 0.0, 0.0, 0.0))], changed,
                       bool(self.twin.task_success()))

    # -- state log --------------------------------------------------------------------------------
    def _record_state(self) -> None:
        # Every `every`-th cycle of simulated time, so that the log's rate holds however the twin is paced.
        if self.state_log is not None and self.state_log.due(self.sim_time_ns // self.period_ns):
            self.state_log.record(self.sim_time_s, self.twin.scene_state())

    def _begin_state_segment(self) -> None:
        from legion_kuka.state_log import Scene

        self.state_log.begin(Scene.of(self.twin), self.twin.model.nq)
        self._record_state()

    def note(self, name: str, data: Any) -> None:
        """A timestamped note beside the states (the active step, its success); nothing without a log."""
        if self.state_log is not None:
            self.state_log.note(self.sim_time_s, name, data)

    def save_state_log(self) -> None:
        """Write the state log (atomically); a failure is logged, never raised: the twin goes on."""
        if self.state_log is None:
            return
        from legion_kuka.state_log import save_state_log

        try:
            path = save_state_log(self.state_log_path, self.state_log.snapshot())
        except Exception as error:  # a full disk or a bad path must not stop the twin
            self.log.error(f'cannot write the state log {self.state_log_path}: '
                           f'{type(error).__name__}: {error}')
            return
        self.log.info(f'state log: {self.state_log.rows} states in {path}')
