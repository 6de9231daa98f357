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
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

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
#: before the approach lets go and grasps again.
PULL = 0.2
PULL_SLACK = np.array([0.02, 0.01, 0.01])


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


#: Tasks with an approach for this gripper, and its factory.
APPROACHES: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    'peg-unplug-side-v3': peg_unplug_side,
}
