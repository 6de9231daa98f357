"""The policy → arm chain end to end without ROS: real2sim → policy → sim2real → safety → twin.

This is the same chain the ROS nodes run on the real arm, with the twin standing in for the driver and
for perception, and every piece the real one:

1. :class:`~legion_kuka.real2sim.Real2Sim` builds the observation from the twin's joint state, gripper
   opening, ground-truth object poses and goal (robot base frame), in the station's task frame.
2. The policy maps it to a Meta-World action (dx, dy, dz, gripper).
3. :class:`~legion_kuka.sim2real.Sim2Real` turns the action into joint targets for the control cycles
   of one policy step (IK, fixed tool orientation, time scaling, hand box).
4. :class:`~legion_kuka.safety.SafetyFilter` checks every target against the arm's limits and the
   freshness of the joint state, as it does in front of the real driver.
5. The twin tracks the accepted targets at the controller rate; Meta-World's success criterion decides.

Meta-World's scripted experts read the 39-d observation: :func:`run_expert_through_twin` runs them
with ``layout='full39'``, i.e. on the observation that real2sim reconstructs from the twin's state,
so the experts test real2sim too. A learned LEGION policy uses ``layout='legion12'``.

Things the chain does on top of the pieces, and why:

- The policy's hand is the scene's ``hand`` point (Meta-World's observation), not the gripper tcp:
  real2sim and sim2real use :meth:`Twin.hand_kinematics`; the safety filter's box bounds the tcp and
  is derived from the task's hand box (:meth:`ChainRunner.task_workspace`).
- Sim2real plans IK inside the safety filter's position limits, so the filter rate-limits the targets
  but does not clip (and bend) them.
- Some Meta-World resets put the hand where the tool-down iiwa reaches only at its joint limits
  (hand start (0, 0.4, 0.2): faucet, button-press-topdown, window-*). The filter does not move an arm
  outside its limits, so the episode starts from the nearest reachable tool-down posture instead, as
  an operator would jog the arm.
- A hand position the upright tool reaches only with a joint beyond the filter's limits is reached
  with the tool tilted by the smallest angle up to 10 deg (:class:`~legion_kuka.sim2real.Sim2Real`):
  with the tool down, the elbow angle A4 is fixed by the hand position alone.

Measured (Meta-World's experts, seeds 0-4, default chain: 10 Hz policy, stiff arm, default safety
limits with the task box; ``legion kuka experts --through-twin --episodes 5``, table and command in
docs/experts.md): reach, push, pick-place, faucet-open, button-press-topdown, drawer-close,
window-open, window-close 5/5; peg-unplug-side 2/5; door-open 0/5 (the KUKA env with its mocap hand:
5/5 except door-open 4/5). Why the two fall short:

- door-open: the expert lowers the hand 2 cm behind the handle bar (task y), which leaves the KUKA
  gripper's right pad about a millimetre clear of the end of the bar. Meta-World's mocap hand
  overshoots that aim (to 3 cm) and its pads land on top of the arm that holds the bar and slide
  over it. The twin's hand follows its target without that overshoot and comes down at 1.5 cm (0.3
  cm without the filter): the pad hits the end of the bar side on (contact normal along the bar),
  the arm jams and the filter's tracking-error e-stop latches. Not the filter's doing: without it,
  with joint impedance (60-300 N m/rad) or with sim2real's hand lead at 2-20 cm it is 0/3-0/5 too;
  what would help is another approach path, i.e. another policy.
- peg-unplug-side (Meta-World's expert 0/10 through the twin since 2026-12-05): the expert closes the
  fingers while coming down and its pads land on top of the plug, about as wide as the open fingers.
  The approach written for this gripper (:mod:`legion_kuka.approaches`, what ``legion kuka experts
  --through-twin`` runs for it) aligns, comes down open, grips with the gripper's default force
  (:mod:`legion_kuka.gripper`) and pulls: 10/10 over seeds 0-9 (docs/experts.md).
- drawer-close (fixed, 0/3 before the tool tilt): the expert lowers the hand 0.40 m from the base
  axis, where the upright tool needs A4 at about 118 deg, beyond the filter's 115 deg (5 deg margin).
  The tool tilts by up to 10 deg on about 20 of the episode's ~95 steps.

The default safety limits (10 % of the datasheet joint velocities) also make the arm slower than the
0.1 m/s that sim2real allows at 10 Hz; episodes take 60-110 of their 150 steps.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from legion_kuka.real2sim import Real2Sim
from legion_kuka.sim2real import Sim2Real
from legion_kuka.twin import Twin

Policy = Callable[[np.ndarray], Any]


@dataclass
class EpisodeResult:
    """What happened in one episode through the chain."""

    success: bool
    steps: int  # policy steps run
    first_success_step: int | None
    sim_time_s: float
    ik_failures: int = 0  # policy steps whose hand target had no IK solution (the arm held)
    safety_interventions: int = 0  # control cycles the safety filter changed or refused the target
    safety_reasons: dict[str, int] = field(default_factory=dict)
    max_hand_speed_m_s: float = 0.0  # measured hand speed, highest over control cycles
    max_joint_speed: np.ndarray = field(default_factory=lambda: np.zeros(7))  # rad/s per joint, measured
    max_tool_tilt_rad: float = 0.0  # largest tool tilt sim2real planned (see legion_kuka.sim2real)
    # Why the safety filter latched its e-stop (e.g. tracking_error: the arm hit something), empty while
    # it has not. A latched episode ends there: the real arm would stand until an operator resets it.
    estop_reasons: tuple[str, ...] = ()


def expert_policy(task: str, gripper_approaches: bool = False) -> Policy:
    """Meta-World's scripted expert of ``task`` as ``obs39 -> action``; with ``gripper_approaches`` the
    approach written for the KUKA's gripper where there is one (:mod:`legion_kuka.approaches`)."""
    from metaworld.policies import ENV_POLICY_MAP

    from legion_kuka.approaches import APPROACHES

    if gripper_approaches and task in APPROACHES:
        return APPROACHES[task]()
    if task not in ENV_POLICY_MAP:
        raise ValueError(f'Meta-World has no scripted expert for {task!r}')
    expert = ENV_POLICY_MAP[task]()
    return expert.get_action


class ChainRunner:
    """Runs a policy on the twin through real2sim, sim2real and the safety filter.

    Args:
        policy_fn: ``obs -> action[4]``; ``obs`` in ``layout`` (``legion12`` for LEGION, ``full39`` for
            Meta-World's experts). None: no policy; the caller steps the chain with :meth:`begin` and
            :meth:`act` (an env, see :mod:`legion_kuka.twin_env`).
        task: Meta-World task name.
        seed: goal variant of the first episode; episode i of :meth:`run` uses ``seed + i``.
        policy_rate_hz, control_rate_hz: see :class:`~legion_kuka.sim2real.Sim2Real`.
        max_steps: policy steps per episode (150, the original's episode length).
        stop_on_success: end an episode at its first successful step (Meta-World counts an episode
            as a success if any step succeeds, so the rate is the same; it saves time).
        safety: the safety filter's :class:`~legion_kuka.safety.SafetyLimits`; True: the description's
            defaults with :meth:`task_workspace` as the box; a dict: those with some
            ``SafetyLimits.from_description`` arguments replaced (e.g. ``{'velocity_scale': 0.3}``);
            False: no filter. A fresh filter guards every episode.
        stiffness: the twin's joint impedance (see :class:`~legion_kuka.twin.Twin`); None: stiff
            position control.
        twin: an existing twin to reuse (it is reset per episode, and here unless ``reset_twin`` is
            False: a workcell's next step starts where the previous one left the arm).
    """

    def __init__(self, policy_fn: Policy | None, task: str, *, seed: int = 0, layout: str = 'legion12',
                 policy_rate_hz: float = 10.0, control_rate_hz: float = 100.0, max_steps: int = 150,
                 stop_on_success: bool = True, safety: Any = True, profile: str = 'lbr',
                 stiffness: Any = None, twin: Twin | None = None, reset_twin: bool = True) -> None:
        if policy_fn is not None and not callable(policy_fn):
            raise TypeError('policy_fn must be callable: obs -> action[4] (or None: drive the runner with '
                            'begin() and act())')
        if max_steps < 1:
            raise ValueError(f'max_steps must be >= 1, got {max_steps}')
        self.policy_fn, self.task, self.seed = policy_fn, task, int(seed)
        self.max_steps, self.stop_on_success = int(max_steps), bool(stop_on_success)
        self.twin = twin if twin is not None else Twin(task, seed=seed, profile=profile,
                                                       control_rate_hz=control_rate_hz, stiffness=stiffness)
        if twin is not None and reset_twin:
            self.twin.reset(task=task, seed=seed)
        # The policy's 'hand' is the scene's hand point, not necessarily the gripper's tcp.
        self.kinematics = self.twin.hand_kinematics()
        frame = self.twin.station_frame(task)
        if safety is True or isinstance(safety, dict):
            from legion_kuka.safety import SafetyLimits
            options = {'workspace': self.task_workspace(), **(safety if isinstance(safety, dict) else {})}
            safety = SafetyLimits.from_description(**options)
        self.safety_limits = safety or None
        self.safety = None
        self.real2sim = Real2Sim(self.kinematics, layout=layout, task_frame=frame, task=task)
        self.sim2real = Sim2Real(self._planning_kinematics(), task_frame=frame,
                                 control_rate_hz=control_rate_hz,
                                 policy_rate_hz=policy_rate_hz, hand_low=self.twin.hand_low,
                                 hand_high=self.twin.hand_high)

    def _planning_kinematics(self) -> Any:
        """Hand kinematics whose IK stays inside the safety filter's position limits (by 0.5°)."""
        if self.safety_limits is None:
            return self.kinematics
        from legion_kuka.safety import planning_kinematics

        return planning_kinematics(self.safety_limits, self.twin.hand_offset)

    def task_workspace(self, margin_m: float = 0.02,
                       floor_margin_m: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
        """The safety filter's tcp box for this task (:func:`legion_kuka.safety.hand_box_workspace`)."""
        from legion_kuka.safety import hand_box_workspace

        return hand_box_workspace(self.twin.hand_low, self.twin.hand_high,
                                  self.twin.station_frame(self.task), self.twin.hand_offset,
                                  margin_m=margin_m, floor_margin_m=floor_margin_m)

    def _make_safety(self) -> Any:
        from legion_kuka.kinematics import IiwaKinematics
        from legion_kuka.safety import SafetyFilter

        period = self.twin.control_period_s
        # The filter's workspace box bounds the gripper's tcp (not the policy's hand point).
        return SafetyFilter(self.safety_limits, IiwaKinematics(tool='tcp'), control_period_s=period,
                            stale_after_s=3 * period)

    def _bring_inside_limits(self, seed: int | None) -> None:
        posture = posture_inside_limits(self.twin, self.safety_limits)
        if posture is not None:
            self.twin.reset(task=self.task, seed=self.seed if seed is None else int(seed), posture=posture)

    def observe(self) -> np.ndarray:
        """The policy's observation of the twin's current state, through real2sim."""
        twin = self.twin
        return self.real2sim.observation(twin.joint_state().position, twin.gripper_opening(),
                                         twin.object_poses(), twin.goal_position())

    def episode(self, seed: int | None = None) -> EpisodeResult:
        """Reset the twin to the task's initial state for ``seed`` and run one episode."""
        if self.policy_fn is None:
            raise RuntimeError('this runner has no policy: drive it with begin() and act(action)')
        self.reset_episode(seed)
        return self.run_from_here()

    def reset_episode(self, seed: int | None = None) -> None:
        """Reset the twin to the task's initial state for ``seed`` (default: the runner's), with the
        arm inside the safety filter's limits; :meth:`begin` then starts the episode there."""
        self.twin.reset(task=self.task, seed=self.seed if seed is None else int(seed))
        if self.safety_limits is not None:
            self._bring_inside_limits(seed)

    def run_from_here(self) -> EpisodeResult:
        """One episode from the twin's current state (no reset): a step of a workcell sequence."""
        if self.policy_fn is None:
            raise RuntimeError('this runner has no policy: drive it with begin() and act(action)')
        result = self.begin()
        for _ in range(self.max_steps):
            self.act(self.policy_fn(self.observe()), result)
            if result.estop_reasons or (result.success and self.stop_on_success):
                break
        return result

    def begin(self) -> EpisodeResult:
        """Start an episode from the twin's current state: anchor sim2real at the arm's posture and arm
        a fresh safety filter. Returns the episode's record, which :meth:`act` fills in."""
        twin = self.twin
        # Reloading a seed's scene can move the station (per-task frames): follow it.
        frame = twin.station_frame(self.task)
        self.real2sim.set_task_frame(frame)
        self.sim2real.set_task_frame(frame)
        self.real2sim.reset()
        q = twin.joint_state().position
        self.sim2real.reset(q, now=twin.time_s)
        self.safety = self._make_safety() if self.safety_limits is not None else None
        self._start_s = twin.time_s
        self._tcp_prev, self._q_prev = self.kinematics.fk(q)[0], q
        return EpisodeResult(success=False, steps=0, first_success_step=None, sim_time_s=0.0)

    def act(self, action: Any, result: EpisodeResult, measure: bool = True) -> bool:
        """One policy step: ``action`` (Meta-World's 4 values) through sim2real and the safety filter
        to the twin, for the step's control cycles. Updates ``result`` (``measure``: also the hand
        and joint speeds, one forward kinematics per cycle) and returns whether the task succeeds now.
        Once the safety filter has latched (``result.estop_reasons``) the arm stands and nothing succeeds
        any more, as on the real arm until an operator resets the e-stop."""
        twin = self.twin
        if result.estop_reasons:
            return False
        action = np.asarray(action, dtype=np.float64)
        state = twin.joint_state()
        plan = self.sim2real.plan(action, state.position, now=twin.time_s)
        result.ik_failures += not plan.ik_success
        result.max_tool_tilt_rad = max(result.max_tool_tilt_rad, plan.tool_tilt_rad)
        twin.set_gripper(plan.gripper_command)
        for target in plan.targets:
            self._command(target, result)
            twin.step(1)
            if measure:
                q_now = twin.joint_state().position
                tcp = self.kinematics.fk(q_now)[0]
                speed = float(np.linalg.norm(tcp - self._tcp_prev)) / twin.control_period_s
                result.max_hand_speed_m_s = max(result.max_hand_speed_m_s, speed)
                result.max_joint_speed = np.maximum(result.max_joint_speed,
                                                    np.abs(q_now - self._q_prev) / twin.control_period_s)
                self._tcp_prev, self._q_prev = tcp, q_now
        result.steps += 1
        result.sim_time_s = twin.time_s - self._start_s
        if self.safety is not None and self.safety.latched:
            result.estop_reasons = self.safety.latch_reasons
            return False
        succeeded = twin.task_success(self.task)
        if succeeded:
            if result.first_success_step is None:
                result.first_success_step = result.steps
            result.success = True
        return succeeded

    def _command(self, target: np.ndarray, result: EpisodeResult) -> None:
        if self.safety is None:
            self.twin.set_joint_targets(target)
        else:
            command_through_filter(self.safety, self.twin, target, result)

    def run(self, episodes: int, progress: bool = False,
            make_policy: Callable[[], Policy] | None = None) -> list[EpisodeResult]:
        """``episodes`` episodes, episode i on the goal variant of ``seed + i``; ``make_policy``: a fresh
        policy for each episode (one that keeps state within an episode, as the approaches do)."""
        if episodes < 1:
            raise ValueError(f'episodes must be >= 1, got {episodes}')
        indices = range(int(episodes))
        if progress:
            from tqdm import tqdm
            indices = tqdm(indices, desc=f'{self.task} through the twin', unit='episode')
        results = []
        for i in indices:
            if make_policy is not None:
                self.policy_fn = make_policy()
            results.append(self.episode(self.seed + i))
        return results


def command_through_filter(safety: Any, twin: Twin, target: np.ndarray, result: Any) -> None:
    """One control cycle's ``target`` through the safety filter to the twin, as a driver receives it;
    ``result.safety_interventions`` / ``safety_reasons`` count the cycles the filter changed or refused."""
    state = twin.joint_state()
    safety.update_joint_state(state.position, state.stamp_s)
    decision = safety.command(target, stamp=state.stamp_s, now=state.stamp_s)
    if decision.position is None or not np.allclose(decision.position, target, atol=1e-9):
        result.safety_interventions += 1
        for reason in decision.reasons:
            result.safety_reasons[reason] = result.safety_reasons.get(reason, 0) + 1
    if decision.position is not None:
        twin.set_joint_targets(decision.position)
    # No position: the filter refuses to move; the twin holds its last target, like a driver that
    # receives no new command.


def run_expert_through_twin(task: str, episodes: int = 10, seed: int = 0, max_steps: int = 150, *,
                            policy_rate_hz: float = 10.0, progress: bool = False,
                            runner_kwargs: dict[str, Any] | None = None,
                            gripper_approaches: bool = True) -> float:
    """Success rate of Meta-World's scripted expert of ``task`` (or, with ``gripper_approaches``, the
    approach written for this gripper where there is one) through the whole chain on the twin.

    Episode i uses the goal variant of ``seed + i`` (like the expert on the simulated KUKA env with the
    same seeds); the expert reads the 39-d observation that real2sim reconstructs from the twin's state.
    """
    runner = ChainRunner(expert_policy(task, gripper_approaches), task, seed=seed, layout='full39',
                         max_steps=max_steps,
                         policy_rate_hz=policy_rate_hz, **(runner_kwargs or {}))
    # A fresh expert each episode: the approaches keep their phase (pushing, pulling) in the episode.
    results = runner.run(episodes, progress=progress,
                         make_policy=lambda: expert_policy(task, gripper_approaches))
    return float(np.mean([r.success for r in results]))


def posture_inside_limits(twin: Twin, limits: Any, inset_rad: float = math.radians(1.0),
                          q: Any = None) -> np.ndarray | None:
    """Where to start a freshly reset twin whose arm stands outside ``limits`` (a
    :class:`~legion_kuka.safety.SafetyLimits`); None when it is inside.

    The safety filter does not move an arm that stands outside its limits (on the real arm someone
    jogs it in). Some task resets leave the arm at its joint limits (hand start positions the iiwa
    reaches only there, tool down): the closest posture inside the limits (less ``inset_rad``) with
    the same tool orientation, as an operator would choose. Used by the chain and by the sim bridge,
    so that both start an episode alike; apply it with ``twin.reset(posture=...)``. ``q``: judge that
    posture instead of the arm's (a workcell station's start posture, reached by a transit).
    """
    from legion_kuka.description import HOME
    from legion_kuka.kinematics import nearest_reachable_posture
    from legion_kuka.safety import planning_kinematics

    q = twin.joint_state().position if q is None else np.asarray(q, dtype=float)
    if limits.within_positions(q):
        return None
    lower, upper = limits.lower + inset_rad, limits.upper - inset_rad
    # Aim for Meta-World's hand pose (its mocap target), tool orientation included: the tool frame is
    # fixed to the hand body, so the offset measured here holds at the target too.
    hand_pos, hand_rot = twin.metaworld_hand_target()
    _, body_rot = twin.hand_pose()
    tool_in_body = body_rot.T @ twin.hand_kinematics().fk(twin.joint_state().position)[1]
    planner = planning_kinematics(limits, twin.hand_offset)
    # Home, turned about A1 towards the target (a workcell station may lie to the side).
    start = np.asarray(HOME, dtype=float).copy()
    start[0] += math.atan2(hand_pos[1], hand_pos[0])
    start = np.clip(start, lower, upper)
    # The target may lie too close to the base for the tool-down arm: the nearest reachable point
    # straight outwards (as the training scene's reset does).
    posture, _, _ = nearest_reachable_posture(planner, hand_pos, hand_rot @ tool_in_body, start)
    return np.clip(posture, lower, upper)
