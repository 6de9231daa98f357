"""The gripper command (opening, speed, grip force) and the twin's fingers that execute it."""
import math

import mujoco
import numpy as np
import pytest

from legion_kuka.description import GRIPPER
from legion_kuka.gripper import (
    GripperCommand,
    MetaworldFinger,
    command_from_effort,
    effort_of,
    gripper_command,
    observed_opening,
)
from legion_kuka.twin import Twin


@pytest.fixture(scope='module')
def twin():
    return Twin('pick-place-v3', seed=0)


@pytest.fixture
def fresh(twin):
    twin.reset(seed=0)
    return twin


def pad_forces(twin, body):
    """Normal contact force of each pad on ``body`` (N)."""
    model, data = twin.model, twin.data
    pads = {model.geom(f'{side}pad_geom').id: side for side in ('right', 'left')}
    forces, wrench = {'right': 0.0, 'left': 0.0}, np.zeros(6)
    for i in range(data.ncon):
        contact = data.contact[i]
        pair = {contact.geom1, contact.geom2}
        pad = pair & pads.keys()
        if pad and body in (model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2]):
            mujoco.mj_contactForce(model, data, i, wrench)
            forces[pads[pad.pop()]] += wrench[0]
    return forces


def puck_between_the_pads(twin):
    """The pick-place puck (40 mm across) held still between the open pads, gravity off, so that only the
    fingers press on it."""
    model, data = twin.model, twin.data
    puck = model.body('obj').id
    joint = model.body_jntadr[puck]
    middle = (data.geom('rightpad_geom').xpos + data.geom('leftpad_geom').xpos) / 2.0
    data.qpos[model.jnt_qposadr[joint]:model.jnt_qposadr[joint] + 3] = middle
    data.qvel[model.jnt_dofadr[joint]:model.jnt_dofadr[joint] + 6] = 0.0
    return puck


@pytest.mark.parametrize('force', [20.0, 40.0, 100.0, 235.0])
def test_the_fingers_squeeze_a_held_object_with_the_commanded_force(fresh, force):
    puck = puck_between_the_pads(fresh)
    gravity = fresh.model.opt.gravity.copy()
    fresh.model.opt.gravity[:] = 0.0
    try:
        fresh.set_gripper_command(gripper_command(0.0, 0.15, force))
        fresh.step(60)
        forces = pad_forces(fresh, puck)
    finally:
        fresh.model.opt.gravity[:] = gravity
    assert forces['right'] == pytest.approx(force, rel=0.01)
    assert forces['left'] == pytest.approx(force, rel=0.01)
    # Stopped by the 40 mm puck, not at the commanded (closed) opening.
    assert 0.6 < fresh.gripper_opening() < 0.7


def test_the_fingers_hold_the_puck_against_gravity(fresh):
    puck = puck_between_the_pads(fresh)
    fresh.set_gripper_command(gripper_command(0.0, 0.15, GRIPPER.grip_force))
    fresh.step(100)
    held = fresh.data.xpos[puck].copy()
    fresh.step(100)
    assert np.linalg.norm(fresh.data.xpos[puck] - held) < 1e-3


@pytest.mark.parametrize('speed', [0.02, 0.05, 0.15])
def test_the_opening_moves_at_the_commanded_speed(fresh, speed):
    from legion_kuka.twin import FINGER_ACCELERATION

    assert fresh.gripper_command.opening_m == GRIPPER.max_opening  # a reset opens the gripper
    fresh.set_gripper_command(gripper_command(0.0, speed))

    def cycles_until_closed_by(distance):  # from rest: up to speed, then at speed
        return round((distance / speed + speed / (2.0 * FINGER_ACCELERATION)) * fresh.control_rate_hz)

    # Between 30 and 45 mm closed (the observation reads 1.0 for the first 2 cm; braking starts later).
    fresh.step(cycles_until_closed_by(0.030))
    first = fresh.gripper_opening() * 0.1  # the observation divides the finger distance by 0.1 m
    cycles = cycles_until_closed_by(0.045) - cycles_until_closed_by(0.030)
    fresh.step(cycles)
    second = fresh.gripper_opening() * 0.1
    assert (first - second) * fresh.control_rate_hz / cycles == pytest.approx(speed, rel=0.03)


def test_the_fingers_stop_at_the_commanded_opening(fresh):
    fresh.set_gripper_command(gripper_command(0.03, 0.15))
    fresh.step(100)
    fresh.set_gripper_command(gripper_command(GRIPPER.max_opening, 0.15))
    fresh.step(100)
    assert fresh.gripper_opening() == 1.0  # open again
    fresh.set_gripper_command(gripper_command(0.05, 0.15))
    fresh.step(100)
    half = fresh.gripper_opening()
    fresh.set_gripper_command(gripper_command(0.03, 0.15))
    fresh.step(100)
    # 20 mm less opening is 20 mm less finger distance, 0.2 in the observation's units.
    assert half - fresh.gripper_opening() == pytest.approx(0.2, abs=0.005)


def test_the_speed_and_force_are_clipped_to_the_grippers_limits_and_nan_is_refused():
    command = gripper_command(0.2, 1.0, 1000.0)
    assert (command.opening_m, command.speed_m_s, command.force_n) == (
        GRIPPER.max_opening, GRIPPER.speed_range[1], GRIPPER.force_range[1])
    command = gripper_command(-0.1, 0.0, 0.0)
    assert (command.opening_m, command.speed_m_s, command.force_n) == (
        0.0, GRIPPER.speed_range[0], GRIPPER.force_range[0])
    with pytest.raises(ValueError, match='outside'):
        gripper_command(0.2, clip=False)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match='finite'):
            gripper_command(0.04, bad)
        with pytest.raises(ValueError, match='finite'):
            command_from_effort(bad)
    with pytest.raises(ValueError, match='number'):
        gripper_command('open')
    with pytest.raises(ValueError, match='outside'):
        GripperCommand(0.04, 0.1, 500.0)
    with pytest.raises(ValueError, match='finite'):
        GripperCommand(math.nan, 0.1, 40.0)


def test_the_twin_refuses_what_is_not_a_command(fresh):
    with pytest.raises(TypeError, match='GripperCommand'):
        fresh.set_gripper_command((0.0, 0.1, 40.0))
    with pytest.raises(ValueError, match='gripper command'):
        fresh.set_gripper(math.nan)


def test_the_policy_channel_maps_to_meta_worlds_finger_target_with_the_default_force():
    stroke = GRIPPER.finger_stroke
    # Open: any value <= 0; closed: beyond the stroke (Meta-World's servo target, metres per finger).
    assert command_from_effort(-1.0).opening_m == command_from_effort(0.0).opening_m == GRIPPER.max_opening
    assert command_from_effort(1.0).opening_m == command_from_effort(stroke).opening_m == 0.0
    assert command_from_effort(stroke / 4).opening_m == pytest.approx(GRIPPER.max_opening - stroke / 2)
    # Speed: the gripper's fastest, a position command (sim2real shapes the motion); or the one named.
    assert {command_from_effort(e).speed_m_s for e in (-1.0, 0.01, 0.125, 1.0)} == {GRIPPER.speed_range[1]}
    # Force: the default, whatever the value; both may be named.
    assert {command_from_effort(e).force_n for e in (-1.0, 0.01, 0.125, 1.0)} == {GRIPPER.grip_force}
    named = command_from_effort(1.0, speed_m_s=0.05, force_n=60.0)
    assert (named.speed_m_s, named.force_n) == (0.05, 60.0)
    assert command_from_effort(5.0) == command_from_effort(1.0)  # beyond [-1, 1]: clipped
    assert effort_of(command_from_effort(0.02)) == pytest.approx(0.02)
    assert effort_of(command_from_effort(-0.5)) == -1.0


def test_set_gripper_executes_the_mapped_command(fresh):
    fresh.set_gripper(0.125)
    assert fresh.gripper_command == command_from_effort(0.125)
    fresh.step(150)
    assert fresh.gripper_opening() == pytest.approx(0.25, abs=0.01)  # closed
    fresh.set_gripper(0.02)  # half the stroke: a position, reached at the gripper's speed
    fresh.step(50)
    assert fresh.gripper_opening() == pytest.approx(observed_opening(0.02), abs=0.01)


def action_sequence():
    """Gripper actions a policy sends: full, small and reversed commands, then random ones."""
    rng = np.random.default_rng(0)
    fixed = [(1.0, 30), (-1.0, 30), (0.125, 80), (-0.5, 40), (0.5, 8), (-1.0, 8), (0.2, 20), (0.03, 40)]
    return fixed + [(float(rng.uniform(-1, 1)), int(rng.integers(1, 10))) for _ in range(30)]


def test_the_finger_model_follows_meta_worlds_finger():
    """sim2real sends the gripper MetaworldFinger's closing: it must be where the training env's finger
    is, step by step (the env's soft joint limit lets its finger overshoot the stroke by about 1 mm)."""
    from legion_kuka.metaworld_kuka import make_kuka_env

    env = make_kuka_env('reach-v3', 0)
    obs, _ = env.reset(seed=0)
    finger, errors, observed = MetaworldFinger(), [], []
    for action, steps in action_sequence():
        for _ in range(steps):
            obs, *_ = env.step(np.array([0.0, 0.0, 0.0, action]))
            closing = finger.step(action)
            errors.append(abs(closing - float(env.unwrapped.data.joint('r_close').qpos[0])))
            observed.append(abs(observed_opening(closing) - float(obs[3])))
    env.close()
    assert max(errors) < 2.5e-3 and float(np.mean(errors)) < 1e-3  # measured: 2.2 mm and 0.58 mm
    assert float(np.mean(observed)) < 0.015  # obs[3]; measured 0.0098
    with pytest.raises(ValueError, match='finite'):
        finger.step(math.nan)


@pytest.mark.parametrize('value', [0.15, 0.3, 1.0])
def test_the_twins_fingers_move_per_policy_step_as_meta_worlds(value):
    """The twin env (sim2real at 10 Hz, the twin's gripper) against Meta-World's KUKA env under a constant
    gripper action, hand still: the opening the policy observes matches step by step. Before the finger
    model a small value closed the twin's fingers at once (20 mm/s, the gripper's slowest), 0.4 of the
    stroke ahead of Meta-World's after 9 steps at 0.15 (docs/training.md)."""
    from legion_core.envs import TaskVectorEnv

    openings = {}
    for embodiment in ('kuka', 'twin'):
        env = TaskVectorEnv('push-v3', 1, embodiment=embodiment, layout='full39', goal='random', seed=3,
                            autoreset=False)
        env.reset()
        action = np.array([[0.0, 0.0, 0.0, value]])
        openings[embodiment] = [float(env.step(action)[0][0, 3]) for _ in range(30)]
        env.close()
    gap = np.abs(np.subtract(openings['twin'], openings['kuka']))
    assert gap.max() < 0.05, (openings, gap)


def _plug_after(twin: Twin, force: np.ndarray, lever: float = 0.0) -> np.ndarray:
    """The plug's displacement (m) after 0.5 s of ``force`` (N, world) at ``lever`` m along its axis from
    its origin, then 0.5 s left alone."""
    plug = twin.model.body('plug').id
    twin.reset()
    twin.step(300)
    rest = twin.data.xpos[plug].copy()
    arm = twin.data.xmat[plug].reshape(3, 3)[:, 0] * lever
    twin.data.xfrc_applied[plug] = np.concatenate([force, np.cross(arm, force)])
    twin.step(50)
    twin.data.xfrc_applied[plug] = 0.0
    twin.step(50)
    return twin.data.xpos[plug] - rest


def test_the_socket_holds_the_plug_as_a_firm_socket_does_and_lets_a_pull_take_it_out():
    # peg-unplug-side's socket holds the plug with about 80 N along its axis (Meta-World's 2,700 N
    # interference fit made the pull a matter of soft contacts' creep), under the noslip solver every
    # scene of the twin runs.
    twin = Twin('peg-unplug-side-v3', seed=0)
    assert twin.model.opt.noslip_iterations > 0
    plug = twin.model.body('plug').id
    start = twin.data.xpos[plug].copy()
    twin.step(300)
    assert np.linalg.norm(twin.data.xpos[plug] - start) < 2e-3  # left alone it settles (1 mm) and stays
    assert _plug_after(twin, np.array([60.0, 0.0, 0.0]))[0] < 1e-3  # held
    assert _plug_after(twin, np.array([100.0, 0.0, 0.0]))[0] > 5e-3  # pulled out along its axis
    for across in ([0.0, 0.0, -100.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]):
        # a hard knock across its far end (the knob, 6 cm out) leaves it in the socket
        assert np.abs(_plug_after(twin, np.array(across), lever=0.06)).max() < 4e-3, across
