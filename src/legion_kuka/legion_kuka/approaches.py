"""Scripted approaches written for the KUKA's gripper, where Meta-World's expert (written for the
Sawyer's slim hand and its strong, slow finger servo) only grazes.

Each is a policy ``obs39 -> action[4]`` like Meta-World's experts (``metaworld.policies``) that reads
only the observation, written for the chain (real2sim, sim2real at 10 Hz, the gripper of
:mod:`legion_kuka.gripper`): through the twin and on the real arm. Its waits and pull speed count
policy steps of 0.1 s; in Meta-World's envs (12.5 ms steps, their own finger servo) it does not work
(peg-unplug-side: 0/10 in the KUKA env and on the Sawyer). :func:`legion_kuka.chain.expert_policy`
hands them out in place of Meta-World's expert where ``gripper_approaches`` is asked for (the twin
column of ``legion kuka experts``).

- **peg-unplug-side** (:func:`peg_unplug_side`). Meta-World's expert starts to close the fingers while
  it comes down 4 cm off the plug, aims the hand 3.5 cm above the plug's axis and 2 cm behind its end.
  With this gripper the pads (80 mm apart open) then land on top of the plug's 76 mm wide body, and
  the palm (5 mm above the hand point, 14 cm across) would sit below the body's top. This approach
  aligns the open fingers over the body's centre to 2 mm, comes down with the fingers open until the
  palm is 2 cm above the body (the pads then cover its upper 3 cm; a pad rubbing down the body's
  side drags the plug down in its soft socket, the deeper the more), closes and waits until the
  opening settles (the grip force is the gripper's default, 100 N), and only then pulls the plug out
  along its axis at constant height, slowly enough that the plug follows the grip.
- **door-open** (:func:`door_open`). The gripper housing (14 cm across the fingers) does not fit between
  the handle bar and the door panel (9 cm), where Meta-World's expert goes. This approach reads the
  door's angle from the handle's orientation and the hinge from the handle's position; with the fingers
  open it comes down with the pads either side of the bar near its root, drags the bar along the door's
  arc with the rear pad to 30 deg, crosses over the panel's top and pushes the panel's back with the rear
  pad until the door is open. Through the chain the hand moves at most about 8 mm a step (the safety
  filter's braking bound with sim2real's 5 cm lead), so the time goes to the path: the crossing is a few
  waypoints that the hand's target (estimated from the approach's own actions, as sim2real moves it) goes
  straight to, each beyond where the pads must get, so that the hand neither stops before the panel's top
  nor overshoots it (docs/experts.md, "Door-open within Meta-World's 150 steps").
- **push** (:func:`push`). Meta-World's expert pushes only once the hand is within 4 cm of the puck's
  height, and goes back over the puck (fingers open) whenever the hand is 2 cm off it. This gripper's
  hand stops 37-42 mm above a gripped puck (the pads reach the table, and the puck sinks 2-3 mm into it
  under the grip), and the hand runs up to 2 cm ahead of the puck it drags. Through the chain the
  expert's hand came to 39-40 mm and pushed, through the graph's commander it stood at 41 mm and the
  expert asked for 1 mm more for the rest of the step (docs/experts.md, "The six-step job through the
  graph"). This approach is that expert, except that it pushes from as low as the hand gets (no lower by
  1 mm in 3 steps, within 1 cm of the expert's height), keeps pushing until the puck is 4 cm off, and
  pushes at the height the hand came down to (pressing the pads on the table slowed the hand to 2 mm a
  step).
- **drawer-close** (:func:`drawer_close`). Meta-World's expert comes down in front of the handle at full
  speed until the hand is 4 cm from its aim; the hand trails its target by 2.7 steps, so the target runs
  2.5-4.5 cm below the aim. Depending on the policy steps' phase against the control cycles the pads then
  either pushed the drawer from there and rose to the handle, or caught the drawer's front under the
  handle and were dragged sideways: a tracking error of 0.13-0.15 rad (the safety filter latches at 0.2)
  through the graph's commander at seed 1, where the graph once latched. This approach is that expert,
  except that within 6 cm of the aim's height it moves the hand up or down with a gain of 8 instead of 25.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from legion_kuka.sim2real import MAX_LEAD_M

#: The plug's body (a box 76 mm across, 70 mm tall) from the observed plug point (Meta-World's
#: ``pegEnd`` site): its centre lies 15 mm back along the plug's axis (-x), its top 35 mm above.
PLUG_BODY_FROM_END = np.array([-0.015, 0.0, 0.0])
PLUG_BODY_TOP = 0.035
#: The hand point at the grasp above the body's top: the palm (5 mm above the hand) 2 cm above it.
GRASP_HAND_ABOVE_TOP = 0.015
#: Height above the grasp at which the hand travels over the plug.
CLEARANCE = 0.08
#: How closely the hand is aligned over the body before it comes down (m, horizontal) and how far
#: from the grasp height it may be to grasp (m).
ALIGN_TOLERANCE = 0.002
HEIGHT_TOLERANCE = 0.006
#: A grasp has settled when the fingers have been closing for this many policy steps and the observed
#: opening changed less than ``SETTLED`` in the last (the observation's opening reads 1.0 until the
#: fingers are 2 cm closed: it cannot tell a grip on the 76 mm body from open fingers).
CLOSING_STEPS = 4
SETTLED = 0.002
GAIN = 25.0  # action per metre of error, Meta-World's experts' ``p``, for the travel
#: ... and near the plug: the policy moves a target that the hand trails by 2.7 steps (as Meta-World's
#: mocap), so a high gain runs the target centimetres past the grasp height and the palm into the plug.
FINE_GAIN = 8.0
#: Action along +x while pulling (2 mm a step: the plug, a 16 mm interference fit in its socket, slides
#: out at about 1.5 cm/s under 100 N) and how far the hand may get from the grasp on the plug (per axis)
#: before the approach lets go and grasps again. In the socket the plug trails the pads by about 1 mm a
#: step; 2 cm along x let go of 4 in 20 seeds just before the plug came free, 3 cm of none (2026-12-07).
PULL = 0.2
PULL_SLACK = np.array([0.03, 0.01, 0.01])


def peg_unplug_side() -> Callable[[np.ndarray], np.ndarray]:
    """Pull the plug out of its socket with a grasp that suits this gripper (see the module)."""
    closing = 0  # policy steps the fingers have been closing at the grasp (any other phase resets it)
    pulling = False  # the grasp has settled: pull until the hand loses the plug

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal closing, pulling
        obs = np.asarray(obs, dtype=np.float64)
        hand, opening, plug, previous_opening = obs[:3], obs[3], obs[4:7], obs[21]
        grasp = plug + PLUG_BODY_FROM_END + np.array([0.0, 0.0, PLUG_BODY_TOP + GRASP_HAND_ABOVE_TOP])
        error = grasp - hand
        horizontal = float(np.linalg.norm(error[:2]))
        above = error[2] + CLEARANCE  # to the travel height over the grasp
        if pulling and np.all(np.abs(error) < PULL_SLACK):
            # Held: pull along the plug's axis, keeping the height and the line.
            move, effort = np.array([PULL, FINE_GAIN * error[1], FINE_GAIN * error[2]]), 1.0
        elif horizontal > 0.01:  # not over the plug: across at the travel height, fingers open
            move, effort = GAIN * np.array([error[0], error[1], above]), -1.0
            if above > 0.02:  # too low to move across the plug: straight up first
                move[:2] = 0.0
        elif horizontal > ALIGN_TOLERANCE and error[2] < -HEIGHT_TOLERANCE:
            move, effort = GAIN * np.array([error[0], error[1], 0.0]), -1.0  # align, then go down
        elif error[2] < -HEIGHT_TOLERANCE:
            move, effort = np.array([GAIN * error[0], GAIN * error[1], FINE_GAIN * error[2]]), -1.0
        else:
            move, effort = FINE_GAIN * error, 1.0  # close at the grasp until the opening settles
            closing += 1
            pulling = closing > CLOSING_STEPS and abs(opening - previous_opening) < SETTLED
        if effort < 0:
            closing, pulling = 0, False
        return np.concatenate([np.clip(move, -1.0, 1.0), [effort]]).astype(np.float32)

    return act


#: door-open's door, from Meta-World's scene (the handle is the observed object): the handle's centre
#: relative to the hinge with the door shut (m, world axes), and the yaw of the handle geom's third axis
#: then (it turns with the door).
DOOR_HANDLE_FROM_HINGE = np.array([0.3757, -0.1071])
DOOR_HANDLE_AXIS_YAW = -0.4302  # rad, atan2(-0.417, 0.909)
DOOR_BAR_AXIS_Y = -0.120  # the handle bar's axis, 12 cm in front of the panel's plane (hinge y)
#: Where along the door (from the hinge) the rear pad hooks the bar: near its root (the arm to the panel
#: ends at 0.338 m), where the bar's y falls least as the door turns, so the pull gets furthest inside
#: the hand box (0.42 m, near the free end: the pull ended at 33-39 deg, 158-178 steps to success).
DOOR_HOOK_ALONG = 0.36
#: Where along the panel (from the hinge; its edge is at 0.365 m) the rear pad pushes its back (m).
DOOR_PUSH_ALONG = 0.30
#: The pads' centres are 46 mm either side of the hand along world y and span 45 mm below to 5 mm
#: above it; the housing (14 cm along y) starts 5 mm above the hand. Pushing, the hand is at 0.28 m: the
#: housing passes over the panel's top (0.273 m), the pads' lower 4 cm reach down beside the panel, the
#: rear pad 25 mm behind the panel's plane (the panel is 20 mm thick), the front pad in front of it (and
#: beyond its edge where the door's turn brings it into the panel's plane).
PAD_Y = 0.046
PUSH_BEHIND, PUSH_Z = 0.025, 0.295
#: Hooking, the rear pad is 33 mm behind the bar's axis (bar radius 23 mm: 4 mm of slack), the hand 28 mm
#: above it (the housing clear of the bar's top, the pads on either side of the bar).
HOOK_BEHIND, HOOK_Z = 0.033, 0.178
#: The pull ends where the hand would leave Meta-World's hand box (y >= 0.40) or at this angle: further,
#: the turned bar comes to lie across the open pads and jams between them (seed 0 at 47 deg).
HOOK_HAND_MIN_Y = 0.405
HOOK_MAX_ANGLE = math.radians(30.0)
DOOR_SHUT = math.radians(3.0)
#: The pull starts this close (m) above the hook's height: the pads reach below the bar's axis, and the
#: last of the way down goes with the pull's first steps instead of before them.
PULL_FROM_DZ = 0.016
#: How far ahead of the door the hand is sent along the arc (rad): it pushes the door on.
DOOR_LEAD = math.radians(10.0)
#: The crossing from the bar over the panel's top to behind the panel, as waypoints of the rear pad in the
#: door's frame: (along the door from the hinge, None: where the pull left it; behind the panel's plane;
#: height). Each lies beyond where the pad has to get, so that the hand heads on at full speed, and the
#: hand turns to the next one once the pad has got there: (its height at least, how far behind the
#: panel's plane at least). The pads clear the bar's top (0.173 m) with the hand at 0.218 m, the panel's
#: top (0.273 m) at 0.318 m; the rear pad (12 mm thick) clears the panel (20 mm) 16 mm from its plane.
CROSSING = [
    ((None, -0.06, 0.30), (0.205, -1.0)),  # up, the rear pad from the bar towards the panel: over the bar
    ((DOOR_PUSH_ALONG, -0.03, 0.36), (0.317, -1.0)),  # up and along, in front of the panel: over its top
    ((DOOR_PUSH_ALONG, 0.06, 0.325), (0.0, 0.022)),  # across the top: the rear pad behind the panel
    ((DOOR_PUSH_ALONG, PUSH_BEHIND, PUSH_Z), (0.0, -1.0)),  # down behind it
]
PUSH_FROM_Z = 0.31  # the pads reach 8 mm below the panel's top: push
#: How the hand's target moves (sim2real, like Meta-World's mocap): 1 cm per unit action and step, inside
#: door-open's hand box, at most MAX_LEAD_M ahead of the hand.
ACTION_SCALE = 0.01
HAND_LOW, HAND_HIGH = np.array([-0.5, 0.40, 0.05]), np.array([0.5, 1.0, 0.5])
#: Gain across the bar while aiming at the hook: lower than along it, as the pads must not land on the bar.
DOOR_GAIN = 10.0


def _door_angle(quat_xyzw: np.ndarray) -> float:
    """How far the door is open (rad, >= 0) from the handle's orientation (scipy's x, y, z, w)."""
    x, y, z, w = quat_xyzw
    axis = (2 * (x * z + w * y), 2 * (y * z - w * x))  # the handle geom's third axis, horizontal
    return DOOR_HANDLE_AXIS_YAW - math.atan2(axis[1], axis[0])


def _turned(vector, angle: float) -> np.ndarray:
    """A horizontal door-frame vector with the door open by ``angle`` (the door turns clockwise)."""
    c, s = math.cos(-angle), math.sin(-angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def door_push_hand(handle: np.ndarray, angle: float, lead: float = DOOR_LEAD) -> np.ndarray:
    """The hand's push target (world) with the door open by ``angle`` and the hand ``lead`` ahead."""
    hinge = np.asarray(handle, dtype=np.float64)[:2] - _turned(DOOR_HANDLE_FROM_HINGE, angle)
    ahead = angle + lead
    behind = np.array([math.sin(ahead), math.cos(ahead)])  # the panel's back side
    rear_pad = hinge + _turned((DOOR_PUSH_ALONG, 0.0), ahead) + PUSH_BEHIND * behind
    return np.array([rear_pad[0], rear_pad[1] - PAD_Y, PUSH_Z])


def door_hook_hand(handle: np.ndarray, angle: float, lead: float = DOOR_LEAD) -> np.ndarray:
    """The hand's target (world) with the rear pad behind the handle bar, ``lead`` ahead of the door."""
    hinge = np.asarray(handle, dtype=np.float64)[:2] - _turned(DOOR_HANDLE_FROM_HINGE, angle)
    ahead = angle + lead
    behind = np.array([math.sin(ahead), math.cos(ahead)])
    rear_pad = hinge + _turned((DOOR_HOOK_ALONG, DOOR_BAR_AXIS_Y), ahead) + HOOK_BEHIND * behind
    return np.array([rear_pad[0], rear_pad[1] - PAD_Y, HOOK_Z])


def _door_local(handle: np.ndarray, angle: float, hand: np.ndarray) -> np.ndarray:
    """The rear pad's place in the door's frame: (along the door from the hinge, behind the panel's
    plane, height)."""
    hinge = np.asarray(handle, dtype=np.float64)[:2] - _turned(DOOR_HANDLE_FROM_HINGE, angle)
    rear = hand[:2] + np.array([0.0, PAD_Y]) - hinge
    return np.array([*_turned(rear, -angle), hand[2]])


def _door_world(handle: np.ndarray, angle: float, local) -> np.ndarray:
    """The hand (world) that puts the rear pad at ``local`` (see :func:`_door_local`)."""
    hinge = np.asarray(handle, dtype=np.float64)[:2] - _turned(DOOR_HANDLE_FROM_HINGE, angle)
    rear = hinge + _turned(local[:2], angle)
    return np.array([rear[0], rear[1] - PAD_Y, local[2]])


def door_open() -> Callable[[np.ndarray], np.ndarray]:
    """Open the door with this gripper (see the module): pull the handle bar with the rear pad to 30 deg,
    then, over the panel's top, push the panel's back with the rear pad, each time following the door's
    arc about its hinge. ``act.phase`` tells the phase of the last step."""
    phase = 'over_hook'
    waypoint, pulled_along = 0, DOOR_HOOK_ALONG  # the crossing's next waypoint; where the pull ended
    mocap = None  # where the actions so far have put the hand's target (Meta-World's mocap)

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal phase, waypoint, pulled_along, mocap
        obs = np.asarray(obs, dtype=np.float64)
        hand, handle = obs[:3], obs[4:7]
        angle = _door_angle(obs[7:11])
        gain = GAIN
        # A shut door with the hand away from the bar: a new episode (one policy may run several), or
        # the bar lost before the pull is done: aim at the hook again.
        hook = door_hook_hand(handle, angle, 0.0)
        if (phase in ('over_push', 'push') and angle < DOOR_SHUT) or (
                phase in ('down_hook', 'pull') and np.linalg.norm(hook[:2] - hand[:2]) > 0.03):
            phase = 'over_hook'
        if (mocap is None or np.linalg.norm(mocap - hand) > MAX_LEAD_M + 0.005
                or (np.linalg.norm(hand - obs[18:21]) < 0.001 and np.linalg.norm(mocap - hand) > 0.01)):
            # A new episode, or a hand that stands still away from where its target should be (a driver that
            # anchored the target at the hand after a hold): the target starts at the hand.
            mocap = hand.copy()
        if phase == 'over_hook':  # above the hook with the door as it is now (no lead)
            target, gain = door_hook_hand(handle, angle, 0.0), np.array([GAIN, DOOR_GAIN, GAIN])
            target[2] += 0.03
            # across the bar (y) the pad must be close; along it (x) the bar's root arm is 1 cm away
            if abs(target[0] - hand[0]) < 0.008 and abs(target[1] - hand[1]) < 0.004:
                phase = 'down_hook'
        elif phase == 'down_hook':  # the pads straddle the bar: an overshoot down does no harm
            target = door_hook_hand(handle, angle, 0.0)
            if abs(target[2] - hand[2]) < PULL_FROM_DZ:
                phase = 'pull'
        elif phase == 'pull':
            target = door_hook_hand(handle, angle)
            if target[1] < HOOK_HAND_MIN_Y or angle > HOOK_MAX_ANGLE:
                phase, waypoint = 'over_push', 0
                pulled_along = float(_door_local(handle, angle, hand)[0])
        if phase == 'over_push':  # over the panel's top to behind its back, through the waypoints
            rear = _door_local(handle, angle, hand)
            while waypoint < len(CROSSING) - 1:
                lowest, least_behind = CROSSING[waypoint][1]
                if rear[2] < lowest or rear[1] < least_behind:
                    break
                waypoint += 1
            along, behind, z = CROSSING[waypoint][0]
            target = _door_world(handle, angle, (pulled_along if along is None else along, behind, z))
            if waypoint == len(CROSSING) - 1 and hand[2] < PUSH_FROM_Z:
                phase = 'push'
        if phase == 'push':  # after the door
            target = door_push_hand(handle, angle)
        act.phase = phase
        if phase == 'over_push':
            # The hand's target goes straight to the waypoint, and no further: the hand, which trails it,
            # does not overshoot (a gain on the hand's error did, or slowed down before the waypoint).
            move = (target - mocap) / ACTION_SCALE
            move /= max(1.0, float(np.max(np.abs(move))))  # (saturated: the direction kept)
        else:
            move = np.clip(gain * (target - hand), -1.0, 1.0)
        # where this action puts the hand's target, as sim2real (and Meta-World's mocap) moves it
        mocap = np.clip(mocap + move * ACTION_SCALE, HAND_LOW, HAND_HIGH)
        lead = mocap - hand
        if np.linalg.norm(lead) > MAX_LEAD_M:
            mocap = np.clip(hand + lead * MAX_LEAD_M / np.linalg.norm(lead), HAND_LOW, HAND_HIGH)
        return np.concatenate([move, [-1.0]]).astype(np.float32)

    act.phase = phase
    return act


#: push-v3: Meta-World's expert's aim at the puck and its heights (m): it travels this far above the puck,
#: comes down within ``PUSH_ALIGN`` of the aim, closes the fingers from ``PUSH_GRAB_FROM`` above it and
#: pushes once the hand is within ``PUSH_DOWN`` of the puck's height.
PUSH_AIM = np.array([-0.005, 0.0, 0.0])
PUSH_OVER = 0.2
PUSH_DROP_TO = 0.03
PUSH_ALIGN = 0.02
PUSH_GRAB_FROM = 0.10
PUSH_DOWN = 0.04
PUSH_GRAB = 0.6
PUSH_GAIN = 10.0
#: This gripper's hand stops 37-42 mm above a gripped puck (the pads on the table; the puck sinks 2-3 mm
#: into it under the grip): a hand that has come no lower by ``PUSH_STALL_M`` for ``PUSH_STALL_STEPS``
#: policy steps within ``PUSH_NEAR`` over ``PUSH_DOWN`` is as low as it gets, and pushes.
PUSH_NEAR = 0.01
PUSH_STALL_M = 0.001
PUSH_STALL_STEPS = 3
#: While pushing, the hand runs up to 2 cm ahead of the puck it drags; only a puck further off than this
#: (horizontally) is lost, and the hand goes over it again.
PUSH_LOST = 0.04


def push() -> Callable[[np.ndarray], np.ndarray]:
    """Meta-World's push expert with this gripper's margins (see the module): it pushes from as low as the
    hand gets, and keeps pushing while the puck trails the hand."""
    pushing = False
    lowest, still = math.inf, 0  # the lowest hand height on the way down, steps without getting lower

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal pushing, lowest, still
        obs = np.asarray(obs, dtype=np.float64)
        hand, opening, puck, goal, previous_opening = obs[:3], obs[3], obs[4:7], obs[-3:], obs[21]
        aim = puck + PUSH_AIM
        off = float(np.linalg.norm(hand[:2] - aim[:2]))
        height = float(hand[2] - puck[2])
        if pushing and off > PUSH_LOST:
            pushing = False
        if not pushing and off > PUSH_ALIGN:  # over the puck at the travel height, fingers open
            lowest, still = math.inf, 0
            target, effort = aim + np.array([0.0, 0.0, PUSH_OVER]), 0.0
        elif not pushing:  # down onto the puck, closing the fingers on the way
            if hand[2] < lowest - PUSH_STALL_M:
                lowest, still = float(hand[2]), 0
            else:
                still += 1
            low = height <= PUSH_DOWN or (height <= PUSH_DOWN + PUSH_NEAR and still >= PUSH_STALL_STEPS)
            # ... and the fingers have closed: pushing off while they still close grips the puck off
            # centre, and the hand loses it on the way (Meta-World's fingers take 10 steps to close).
            pushing = low and opening < 1.0 and abs(opening - previous_opening) < SETTLED
            target = aim + np.array([0.0, 0.0, PUSH_DROP_TO])
            effort = PUSH_GRAB if height <= PUSH_GRAB_FROM else 0.0
        if pushing:  # to the goal at the height the hand came down to: the pads do not press on the table
            target, effort = np.array([goal[0], goal[1], min(lowest, hand[2])]), PUSH_GRAB
        return np.concatenate([np.clip(PUSH_GAIN * (target - hand), -1.0, 1.0), [effort]]).astype(np.float32)

    return act


#: drawer-close-v3: Meta-World's expert's aim (m): the handle's centre 2 cm lower, the hand comes down 7.5 cm
#: in front of it (travelling 23 cm above it, rising to 50 cm when behind it) and pushes once within 4 cm
#: of the aim's height.
DRAWER_AIM = np.array([0.0, 0.0, -0.02])
DRAWER_FRONT = np.array([0.0, -0.075, 0.0])
DRAWER_TRAVEL = 0.23
DRAWER_RISE = 0.5
DRAWER_AT = 0.04
DRAWER_GAIN = 25.0
#: ... and within this height of the aim the hand comes down with a gain that does not run the target
#: (2.7 steps ahead of the hand, up to sim2real's 5 cm lead) centimetres below it: with the expert's
#: gain the hand came down to 2.5-4.5 cm below the aim, where the pads caught the drawer's front under
#: the handle (docs/experts.md).
DRAWER_FINE_WITHIN = 0.06
DRAWER_FINE_GAIN = 8.0


def drawer_close() -> Callable[[np.ndarray], np.ndarray]:
    """Meta-World's drawer-close expert, coming down to the handle without running the target below it
    (see the module)."""

    def act(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        hand, aim = obs[:3], obs[4:7] + DRAWER_AIM
        if hand[1] > aim[1]:  # behind the handle: up, then over to its front
            target = (np.array([hand[0], hand[1], aim[2] + DRAWER_RISE]) if hand[2] < aim[2] + DRAWER_TRAVEL
                      else aim + DRAWER_FRONT + np.array([0.0, 0.0, DRAWER_TRAVEL]))
            move = DRAWER_GAIN * (target - hand)
        else:
            target = aim + DRAWER_FRONT if abs(hand[2] - aim[2]) > DRAWER_AT else aim
            move = DRAWER_GAIN * (target - hand)
            if abs(target[2] - hand[2]) < DRAWER_FINE_WITHIN:
                move[2] = DRAWER_FINE_GAIN * (target[2] - hand[2])
        return np.concatenate([np.clip(move, -1.0, 1.0), [1.0]]).astype(np.float32)

    return act


#: Tasks with an approach for this gripper, and its factory.
APPROACHES: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    'peg-unplug-side-v3': peg_unplug_side,
    'door-open-v3': door_open,
    'push-v3': push,
    'drawer-close-v3': drawer_close,
}

#: Tasks whose demonstrations on the twin (``train.demo_episodes``) come from Meta-World's own expert
#: although an approach exists: the approach counts policy steps, a state no policy of the observation
#: has, while Meta-World's expert reads only the observation and works through the twin. Peg-unplug-side
#: since its socket's firm fit (:data:`legion_kuka.metaworld_kuka.PLUG_HEAD_RADIUS`): Meta-World's expert
#: 19/20 through the twin, an MLP cloned from 50 of its episodes 0.5, from 50 of the approach's 0.0.
DEMONSTRATE_WITH_METAWORLD = ('peg-unplug-side-v3',)
