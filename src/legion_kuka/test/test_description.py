"""The shipped iiwa7 URDF against the datasheet table, both name profiles, and MuJoCo loading it."""
import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from legion_kuka import description as desc

ARM_AXES = [(0, 0, 1), (0, 1, 0), (0, 0, 1), (0, -1, 0), (0, 0, 1), (0, 1, 0), (0, 0, 1)]


def _tree(profile='lbr'):
    return ET.fromstring(desc.urdf_text(profile))


def _vec(element, attribute, default='0 0 0'):
    return np.array([float(v) for v in (element.get(attribute) or default).split()])


def _joints(root):
    return {j.get('name'): j for j in root.findall('joint')}


def _chain(root, tip):
    """Joints from the root link down to ``tip``, root first (walks child -> parent)."""
    by_child = {j.find('child').get('link'): j for j in root.findall('joint')}
    chain = []
    link = tip
    while link in by_child:
        joint = by_child[link]
        chain.append(joint)
        link = joint.find('parent').get('link')
    return chain[::-1], link


def test_urdf_is_a_tree_with_seven_revolute_arm_joints_in_order():
    root = _tree()
    assert root.tag == 'robot'
    links = {link.get('name') for link in root.findall('link')}
    children = [j.find('child').get('link') for j in root.findall('joint')]
    assert len(children) == len(set(children)), 'a link has two parents'
    roots = links - set(children)
    assert roots == {'lbr_link_0'}
    chain, base = _chain(root, 'lbr_link_ee')
    assert base == 'lbr_link_0'
    revolute = [j for j in chain if j.get('type') == 'revolute']
    assert [j.get('name') for j in revolute] == desc.joint_names('lbr')
    for joint, axis in zip(revolute, ARM_AXES, strict=True):
        assert np.allclose(_vec(joint.find('axis'), 'xyz'), axis)
        assert np.allclose(_vec(joint.find('origin'), 'rpy'), 0), 'frames stay parallel at zero posture'


def test_link_offsets_match_the_datasheet_and_sum_to_1266_mm():
    root = _tree()
    chain, _ = _chain(root, 'lbr_link_ee')
    heights = np.cumsum([_vec(j.find('origin'), 'xyz')[2] for j in chain])
    for joint in chain:
        assert np.allclose(_vec(joint.find('origin'), 'xyz')[:2], 0), 'the zero posture is a straight line'
    names = [j.get('name') for j in chain]
    z = dict(zip(names, heights, strict=True))
    a2, a4, a6, flange = z['lbr_A2'], z['lbr_A4'], z['lbr_A6'], z['lbr_joint_ee']
    assert np.allclose([a2, a4 - a2, a6 - a4, flange - a6], desc.IIWA7.link_offsets, atol=1e-9)
    assert flange == pytest.approx(1.266)
    assert desc.IIWA7.reach == pytest.approx(1.266)


def test_limits_equal_the_datasheet_table():
    joints = _joints(_tree())
    for i, name in enumerate(desc.joint_names('lbr')):
        limit = joints[name].find('limit')
        assert float(limit.get('lower')) == pytest.approx(-desc.IIWA7.position_limits[i], abs=1e-5)
        assert float(limit.get('upper')) == pytest.approx(desc.IIWA7.position_limits[i], abs=1e-5)
        assert float(limit.get('velocity')) == pytest.approx(desc.IIWA7.velocity_limits[i], abs=1e-5)
        assert float(limit.get('effort')) == pytest.approx(desc.IIWA7.effort_limits[i])
    degrees = np.degrees(desc.IIWA7.position_limits)
    assert np.allclose(degrees, [170, 120, 170, 120, 170, 120, 175])
    assert np.allclose(np.degrees(desc.IIWA7.velocity_limits), [98, 98, 100, 130, 140, 180, 180])


def test_masses_and_inertias_are_physical():
    root = _tree()
    arm_masses = []
    for i in range(8):
        link = root.find(f"link[@name='lbr_link_{i}']")
        arm_masses.append(float(link.find('inertial/mass').get('value')))
    assert arm_masses == pytest.approx(list(desc.IIWA7.link_masses))
    assert sum(arm_masses) == pytest.approx(23.9)
    for link in root.findall('link'):
        inertia = link.find('inertial/inertia')
        if inertia is None:
            continue
        ixx, iyy, izz = (float(inertia.get(k)) for k in ('ixx', 'iyy', 'izz'))
        assert min(ixx, iyy, izz) > 0, link.get('name')
        # principal moments of a rigid body satisfy the triangle inequality
        assert ixx + iyy >= izz and iyy + izz >= ixx and ixx + izz >= iyy, link.get('name')


def test_only_primitive_geometry_and_a_gripper_with_mimic_and_tcp():
    root = _tree()
    shapes = {g.tag for g in root.iter() if g.tag in ('mesh', 'cylinder', 'box', 'sphere')}
    assert 'mesh' not in shapes and shapes
    joints = _joints(root)
    left, right = joints['lbr_finger_left_joint'], joints['lbr_finger_right_joint']
    assert left.get('type') == right.get('type') == 'prismatic'
    assert right.find('mimic').get('joint') == 'lbr_finger_left_joint'
    assert float(left.find('limit').get('upper')) == pytest.approx(desc.GRIPPER.finger_stroke)
    chain, _ = _chain(root, 'lbr_tcp')
    assert chain[-1].get('type') == 'fixed'
    flange_to_tcp = sum(_vec(j.find('origin'), 'xyz')[2] for j in chain[8:])
    assert flange_to_tcp == pytest.approx(desc.GRIPPER.tcp_offset)


@pytest.mark.parametrize('profile', sorted(desc.JOINT_NAME_PROFILES))
def test_every_profile_renders_with_its_own_names(profile):
    root = _tree(profile)
    names = _joints(root)
    for name in desc.joint_names(profile):
        assert names[name].get('type') == 'revolute'
    links = {link.get('name') for link in root.findall('link')}
    assert set(desc.link_names(profile)) <= links
    if profile != 'lbr':
        assert not any(n.startswith('lbr_') for n in [*names, *links])
    chain, base = _chain(root, desc.tcp_link_name(profile))
    assert base == desc.link_names(profile)[0]
    assert [j.get('name') for j in chain if j.get('type') == 'revolute'] == desc.joint_names(profile)


def test_profile_names():
    assert desc.joint_names('lbr') == [f'lbr_A{i}' for i in range(1, 8)]
    assert desc.joint_names('iiwa_ros2') == [f'joint_a{i}' for i in range(1, 8)]
    assert desc.link_names('lbr')[0] == 'lbr_link_0'
    with pytest.raises(ValueError, match='unknown joint-name profile'):
        desc.joint_names('kroshu')


@pytest.mark.parametrize('profile', sorted(desc.JOINT_NAME_PROFILES))
def test_mujoco_loads_the_description(profile):
    model = desc.load_mujoco_model(profile)
    names = desc.joint_names(profile)
    assert [model.joint(i).name for i in range(7)] == names
    assert model.nq == 9 and model.nu == 8 and model.neq == 1
    for i, name in enumerate(names):
        limit = desc.IIWA7.position_limits[i]
        assert np.allclose(model.joint(name).range, [-limit, limit])
    arm_mass = sum(model.body(n).mass[0] for n in desc.link_names(profile)[:8])
    assert arm_mass == pytest.approx(23.9)
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    assert np.allclose(data.site(desc.FLANGE_SITE).xpos, [0, 0, 1.266])
    assert np.allclose(data.site(desc.TCP_SITE).xpos, [0, 0, 1.266 + desc.GRIPPER.tcp_offset])


def test_home_puts_the_tool_down_over_the_table():
    model = desc.load_mujoco_model()
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key('home').id)
    mujoco.mj_kinematics(model, data)
    assert np.allclose(data.site(desc.TCP_SITE).xpos, [0.5, 0.0, 0.2], atol=1e-3)
    tool_z = data.site(desc.TCP_SITE).xmat.reshape(3, 3)[:, 2]
    assert tool_z @ np.array([0, 0, -1.0]) > math.cos(math.radians(0.1))
    margins = np.asarray(desc.IIWA7.position_limits) - np.abs(desc.HOME)
    assert margins.min() > math.radians(15)  # A4 is the closest: 19 deg inside its limit


def test_position_servos_hold_home_and_the_mimic_finger_follows():
    model = desc.load_mujoco_model()
    data = mujoco.MjData(model)
    data.ctrl[:7] = desc.HOME
    data.ctrl[7] = 0.02
    for _ in range(800):  # 2 s at the default 2 ms step
        mujoco.mj_step(model, data)
    assert np.allclose(data.qpos[:7], desc.HOME, atol=2e-3)
    left, right = data.qpos[7:9]
    assert left == pytest.approx(0.02, abs=1e-3)
    assert right == pytest.approx(left, abs=1e-3)


def test_no_actuators_and_bad_arguments():
    assert desc.load_mujoco_model(actuators='none').nu == 0
    with pytest.raises(ValueError, match="'position' or 'none'"):
        desc.arm_spec(actuators='torque')


def test_arm_attaches_into_a_scene_at_the_metaworld_base_pose():
    scene = mujoco.MjSpec()
    scene.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1, 1, 0.1])
    x, y, z, yaw = desc.METAWORLD_BASE_POSE
    frame = scene.worldbody.add_frame(pos=[x, y, z], quat=[math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    frame.attach_body(desc.arm_spec().worldbody.first_body(), 'iiwa/', '')
    model = scene.compile()
    assert model.nu == 8 and model.neq == 1 and model.nkey == 1
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    mujoco.mj_kinematics(model, data)
    tcp = data.site('iiwa/' + desc.TCP_SITE).xpos
    # HOME puts the tool point at Meta-World's initial hand position
    assert np.allclose(tcp, [0.0, 0.6, 0.2], atol=1e-3)
    assert np.allclose(desc.metaworld_to_base(tcp), [0.5, 0.0, 0.2], atol=1e-3)
