"""Per-task placement of the base (description.base_pose): door-open's own, every other task's the shared
METAWORLD_BASE_POSE, read the same way by the env, the twin, the task frames and the workcell."""
import math

import mujoco
import numpy as np
import pytest

from legion_kuka import description as desc
from legion_kuka.frames import Frame, default_task_frame
from legion_kuka.metaworld_kuka import KUKA_TASKS, base_to_world, world_to_base
from legion_kuka.real2sim import Real2Sim

DOOR = 'door-open-v3'


def test_only_door_open_has_its_own_placement():
    assert set(desc.TASK_BASE_POSES) == {DOOR}
    for task in KUKA_TASKS:
        if task != DOOR:
            assert desc.base_pose(task) == desc.METAWORLD_BASE_POSE, task
    assert desc.base_pose(None) == desc.METAWORLD_BASE_POSE
    assert desc.base_pose(DOOR) != desc.METAWORLD_BASE_POSE
    # The yaw is the shared one: the tool-down hand keeps Meta-World's orientation in every scene.
    assert all(pose[3] == desc.METAWORLD_BASE_POSE[3] for pose in desc.TASK_BASE_POSES.values())


def test_task_frames_and_world_conversions_follow_the_tasks_placement():
    point = np.array([0.1, 0.7, 0.15])
    for task in (DOOR, 'reach-v3'):
        frame = default_task_frame(task)
        assert np.allclose(frame.matrix, Frame.of(desc.base_pose(task)).inverse().matrix)
        in_base = world_to_base(point, task)
        assert np.allclose(in_base, frame.apply(point))
        assert np.allclose(in_base, desc.metaworld_to_base(point, desc.base_pose(task)))
        assert np.allclose(base_to_world(in_base, task), point)
    assert not np.allclose(world_to_base(point, DOOR), world_to_base(point, 'reach-v3'))
    assert np.allclose(Real2Sim(_FkOnly(), layout='full39', task=DOOR).task_frame.matrix,
                       default_task_frame(DOOR).matrix)


class _FkOnly:
    def fk(self, q):
        return np.zeros(3), np.eye(3)


@pytest.mark.parametrize('task', [DOOR, 'reach-v3'])
def test_the_env_and_the_twin_place_the_base_where_the_task_says(task):
    from legion_kuka.metaworld_kuka import kuka_env_class
    from legion_kuka.twin import Twin

    x, y, z, yaw = desc.base_pose(task)
    env = kuka_env_class(task)()
    mujoco.mj_kinematics(env.model, env.data)
    base = env.data.body('lbr_link_0')
    assert np.allclose(base.xpos, [x, y, z], atol=1e-9)
    assert np.allclose(base.xmat.reshape(3, 3)[:, 0], [math.cos(yaw), math.sin(yaw), 0.0], atol=1e-9)
    twin = Twin(task, seed=0)
    assert np.allclose(twin.station_frame(task).matrix, default_task_frame(task).matrix, atol=1e-6)
    env.close()


def test_a_workcell_station_keeps_its_tasks_placement_relative_to_the_base():
    from legion_kuka.workcell import _about_a1, station_place

    points = np.array([[0.1, 0.7, 0.15], [-0.2, 0.45, 0.3]])
    for yaw in (0.0, math.pi / 2):
        # the shared placement: the station is only turned about A1
        place = station_place('reach-v3', yaw)
        assert np.allclose(place.matrix, _about_a1(yaw).matrix)
        # door-open: seen from the workcell's base (at METAWORLD_BASE_POSE, turned back by yaw), its
        # points lie where they lie from door-open's own base
        cell = station_place(DOOR, yaw).apply(points)
        unturned = _about_a1(-yaw).apply(cell)
        assert np.allclose(desc.metaworld_to_base(unturned),
                           desc.metaworld_to_base(points, desc.base_pose(DOOR)), atol=1e-9)


def _door_paths(seeds):
    """Where the door-open approach holds the hand (world) with the door at rest: the hook on the bar
    while the door opens 0-30 deg (where the pull ends), the crossing's waypoints over the panel's top
    at 30-40 deg (the door coasts on a little), the push on the panel's back 30-85 deg (success needs
    about 79 deg), for each goal variant."""
    from legion_kuka.approaches import CROSSING, DOOR_HOOK_ALONG, _door_world, door_hook_hand, door_push_hand
    from legion_kuka.twin import Twin

    twin = Twin(DOOR, seed=seeds[0])
    points = []
    for seed in seeds:
        twin.reset(seed=seed)
        mujoco.mj_kinematics(twin.model, twin.data)
        hinge = twin.data.joint('doorjoint').xanchor.copy()
        arm = twin.data.geom('handle').xpos.copy() - hinge
        for degrees, target in ((range(0, 31, 5), door_hook_hand), (range(30, 86, 5), door_push_hand)):
            for angle in np.radians(degrees):  # the door opens towards negative joint angles
                c, s = math.cos(-angle), math.sin(-angle)
                handle = hinge + np.array([c * arm[0] - s * arm[1], s * arm[0] + c * arm[1], arm[2]])
                points.append(target(handle, angle, 0.0))
        for angle in np.radians([30.0, 35.0, 40.0]):
            c, s = math.cos(-angle), math.sin(-angle)
            handle = hinge + np.array([c * arm[0] - s * arm[1], s * arm[0] + c * arm[1], arm[2]])
            for (along, behind, z), _ in CROSSING:
                points.append(_door_world(handle, angle, (DOOR_HOOK_ALONG if along is None else along,
                                                          behind, z)))
    return np.array(points)


def _reachable_tool_down(points_world, pose, hand_offset):
    """How many of the points the hand reaches tool down inside the filter's planning limits, and the
    largest |A4| on the way (rad)."""
    from legion_kuka.metaworld_kuka import _hand_rotation_in_base
    from legion_kuka.safety import SafetyLimits, planning_kinematics

    kin = planning_kinematics(SafetyLimits.from_description(), hand_offset)
    q = np.array(desc.HOME)
    reached, a4 = 0, 0.0
    for point in desc.metaworld_to_base(points_world, pose):
        result = kin.ik(point, q, target_rot=_hand_rotation_in_base(), restarts=3)
        if bool(np.all(result.success)):
            reached, q = reached + 1, np.asarray(result.q)
            a4 = max(a4, abs(float(q[3])))
    return reached, a4


def test_the_door_open_path_is_reachable_tool_down_at_door_opens_placement():
    from legion_kuka.safety import SafetyLimits
    from legion_kuka.twin import Twin

    hand_offset = Twin(DOOR, seed=0).hand_offset
    # goal variants with the door nearest / farthest / leftmost / rightmost
    path = _door_paths([3, 8, 5, 9])
    reached, a4 = _reachable_tool_down(path, desc.base_pose(DOOR), hand_offset)
    assert reached == len(path)
    assert a4 < float(SafetyLimits.from_description().upper[3]) - math.radians(5.0)  # margin kept
    # ...which the shared placement cannot: the open door comes too close to the base.
    reached_shared, _ = _reachable_tool_down(path, desc.METAWORLD_BASE_POSE, hand_offset)
    assert reached_shared < len(path) * 0.8
