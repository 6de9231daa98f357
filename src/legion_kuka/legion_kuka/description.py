"""The KUKA LBR iiwa 7 R800 robot description: datasheet numbers, joint-name profiles, URDF, MuJoCo.

``urdf/iiwa7.urdf`` (shipped inside this package through a link) is the one description that ROS and
MuJoCo both load. :data:`IIWA7` is the single Python source of the datasheet numbers; the tests
compare the URDF against it, and :mod:`legion_kuka.kinematics` computes from it.

The arm stands straight up at the zero posture with every joint frame parallel to the base frame:
A1, A3, A5, A7 turn about +z, A2 and A6 about +y, A4 about -y (KUKA's sign convention).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

_DEG = math.pi / 180.0


@dataclass(frozen=True)
class IiwaDatasheet:
    """Published numbers of one LBR iiwa model (lengths in m, angles in rad, masses in kg)."""

    model: str
    #: base -> A2 axis, A2 -> A4, A4 -> A6, A6 -> flange face, along the straight-up arm.
    link_offsets: tuple[float, float, float, float]
    position_limits: tuple[float, ...]  # symmetric: joint i stays within +-position_limits[i]
    velocity_limits: tuple[float, ...]  # rad/s
    effort_limits: tuple[float, ...]  # N m, maximum joint torques
    #: links lbr_link_0 (base) .. lbr_link_7; the split is an assumption, the sum is the datasheet's.
    link_masses: tuple[float, ...]
    #: joint axes at the zero posture, in the base frame.
    joint_axes: tuple[tuple[float, float, float], ...]

    @property
    def mass(self) -> float:
        return sum(self.link_masses)

    @property
    def reach(self) -> float:
        """Base to flange at the zero posture (the arm stretched straight up)."""
        return sum(self.link_offsets)

    @property
    def lower(self) -> np.ndarray:
        return -np.asarray(self.position_limits)

    @property
    def upper(self) -> np.ndarray:
        return np.asarray(self.position_limits)


IIWA7 = IiwaDatasheet(
    model='LBR iiwa 7 R800',
    link_offsets=(0.340, 0.400, 0.400, 0.126),
    position_limits=tuple(d * _DEG for d in (170, 120, 170, 120, 170, 120, 175)),
    velocity_limits=tuple(d * _DEG for d in (98, 98, 100, 130, 140, 180, 180)),
    effort_limits=(176.0, 176.0, 110.0, 110.0, 110.0, 40.0, 40.0),
    link_masses=(4.8, 3.7, 3.6, 3.2, 3.0, 2.6, 2.4, 0.6),
    joint_axes=((0, 0, 1), (0, 1, 0), (0, 0, 1), (0, -1, 0), (0, 0, 1), (0, 1, 0), (0, 0, 1)),
)


@dataclass(frozen=True)
class GripperSpec:
    """The generic parallel gripper on the flange (an assumption of this project, not a product)."""

    finger_stroke: float = 0.040  # m per finger; 0 = closed, both fingers open = 2 * stroke
    tcp_offset: float = 0.105  # flange face -> tool centre point, along the tool z axis
    finger_effort: float = 40.0  # N, the URDF's finger effort limit (this description's own servo)
    # The gripper command (legion_kuka.gripper, the twin's fingers): speed of the opening and grip force
    # as a Robotiq 2F-85 takes them (the original LEGION's gripper: 20-150 mm/s, 20-235 N), and the
    # grip force of a command that names none. legion_kuka.gripper clips commands to these.
    speed_range: tuple[float, float] = (0.020, 0.150)  # m/s
    force_range: tuple[float, float] = (20.0, 235.0)  # N
    grip_force: float = 100.0  # N

    @property
    def max_opening(self) -> float:
        """Distance between the pads, fully open (m)."""
        return 2.0 * self.finger_stroke


GRIPPER = GripperSpec()

#: Home posture: the tcp at (0.5, 0, 0.2) m in the robot base frame (Meta-World's initial hand position
#: (0, 0.6, 0.2) with the base at :data:`METAWORLD_BASE_POSE`), the tool pointing straight down with
#: the fingers sliding along the base x axis (Meta-World's y, as the Sawyer's fingers do), the elbow
#: up, A1 = A3 = A5 = 0, A7 = -90 deg (all mid-range). A4 is the joint nearest its limit (19 deg
#: inside): the point is close to the shoulder, so the elbow folds. A2, A4, A6 solved in closed form
#: for the planar arm; the tests check the pose with MuJoCo's forward kinematics.
HOME = (0.0, 0.5083, 0.0, -1.7649, 0.0, 0.8684, -1.5708)

#: Where the iiwa base stands in Meta-World's world frame: (x, y, z, yaw). The base sits on the
#: table's near edge, 0.1 m closer to the table than the Sawyer's base at the origin, and faces +y
#: (robot x = world y, robot y = world -x). Meta-World's hand box (-0.2..0.2, 0.55..0.75, 0.05..0.3)
#: is then 0.45..0.65 m in front of the robot: A2 -> wrist stays within 0.41..0.79 m of the 0.80 m
#: the arm can stretch with the tool pointing down, with 5 cm margins. At the Sawyer's origin the far
#: top corner of the box would be out of reach with the tool pointing down.
METAWORLD_BASE_POSE = (0.0, 0.1, 0.0, math.pi / 2)

#: Tasks whose base stands elsewhere (station placement); every other task uses
#: :data:`METAWORLD_BASE_POSE`. Read it through :func:`base_pose`. The yaw stays that of
#: METAWORLD_BASE_POSE, so the tool-down hand has Meta-World's orientation in every scene.
#: door-open: the opening door brings its handle within 0.23-0.47 m of the shared placement's base
#: axis, where the tool-down iiwa needs A4 beyond the safety filter's 115 deg (docs/experts.md). 0.4 m
#: to the side (+x) and 0.1 m back, where :func:`legion_kuka.approaches.door_open` holds the hand (door
#: 0-85 deg, the goal variants' extremes) is reached tool down without tilt, |A4| <= 98 deg.
TASK_BASE_POSES: dict[str, tuple[float, float, float, float]] = {
    'door-open-v3': (0.4, 0.0, 0.0, math.pi / 2),
}


def base_pose(task: str | None = None) -> tuple[float, float, float, float]:
    """Where the iiwa base stands in ``task``'s Meta-World world frame: (x, y, z, yaw)."""
    return TASK_BASE_POSES.get(task, METAWORLD_BASE_POSE)

#: Meta-World's default hand (mocap) box in its world frame (sawyer_xyz_env.py hand_low / hand_high).
METAWORLD_HAND_LOW = (-0.2, 0.55, 0.05)
METAWORLD_HAND_HIGH = (0.2, 0.75, 0.3)
#: The tcp workspace the kinematics are tested and benchmarked on, in the robot base frame: Meta-World's
#: hand box with 5 cm margins sideways, far and on top; 2 cm on the near side (closer, the tool-down
#: elbow would have to fold beyond A4's safety limit, 5 deg inside its 120 deg); 2 cm above the table
#: at the bottom (the fingertips reach 15 mm below the tcp).
WORKSPACE_LOW = (0.43, -0.25, 0.02)
WORKSPACE_HIGH = (0.70, 0.25, 0.35)


def _base_pose_matrix(base_pose) -> tuple[np.ndarray, np.ndarray]:
    x, y, z, yaw = base_pose
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), np.array([x, y, z], dtype=float)


def metaworld_to_base(points, base_pose=METAWORLD_BASE_POSE) -> np.ndarray:
    """Points ``[..., 3]`` in Meta-World's world frame -> the robot base frame."""
    rot, origin = _base_pose_matrix(base_pose)
    return (np.asarray(points, dtype=float) - origin) @ rot


def base_to_metaworld(points, base_pose=METAWORLD_BASE_POSE) -> np.ndarray:
    """Points ``[..., 3]`` in the robot base frame -> Meta-World's world frame."""
    rot, origin = _base_pose_matrix(base_pose)
    return np.asarray(points, dtype=float) @ rot.T + origin

#: Joint-name profiles of the ROS 2 drivers this project talks to.
JOINT_NAME_PROFILES: dict[str, list[str]] = {
    'lbr': [f'lbr_A{i}' for i in range(1, 8)],  # lbr-stack/lbr_fri_ros2_stack (since Oct 2024)
    'iiwa_ros2': [f'joint_a{i}' for i in range(1, 8)],  # ICube-Robotics/iiwa_ros2
}
# Every other name of the shipped (lbr) URDF gets the profile's prefix instead of 'lbr_'.
_NAME_PREFIXES = {'lbr': 'lbr_', 'iiwa_ros2': 'iiwa_'}

#: MuJoCo site names added by :func:`arm_spec` (the same for every profile).
TCP_SITE = 'tcp'
FLANGE_SITE = 'flange'

#: Position-servo gains of :func:`arm_spec` for the arm joints (N m/rad and N m s/rad). kv is about
#: critical damping for the link inertia seen at the home posture plus the armature; gravity is
#: compensated by the bodies' ``gravcomp`` (the KUKA controller compensates it too), so kp only
#: has to track, not to hold the arm up.
ARM_KP = (2000.0, 2000.0, 1000.0, 1000.0, 500.0, 300.0, 100.0)
ARM_KV = (110.0, 100.0, 40.0, 40.0, 15.0, 10.0, 5.0)
#: Reflected motor inertia added to every arm joint (kg m^2): harmonic drives with ratio ~100-160
#: make it dominate the distal joints; it also keeps the servo loop stable at Meta-World's 2.5 ms step.
ARM_ARMATURE = 0.1
GRIPPER_KP = 300.0  # N/m
GRIPPER_KV = 10.0  # N s/m


def _check_profile(profile: str) -> None:
    if profile not in JOINT_NAME_PROFILES:
        raise ValueError(f'unknown joint-name profile {profile!r}; choose one of '
                         f'{", ".join(sorted(JOINT_NAME_PROFILES))}')


def joint_names(profile: str = 'lbr') -> list[str]:
    """The seven arm joint names, A1 first, as the driver of ``profile`` publishes them."""
    _check_profile(profile)
    return list(JOINT_NAME_PROFILES[profile])


def driver_joint_names(names, profile: str = 'lbr') -> list[str]:
    """The arm's joint names as a driver is configured (``driver.joint_names``, ``driver.name``): ``names``
    if given, else the profile's. Raises ValueError unless they are seven distinct names."""
    names = list(names) or joint_names(profile)
    if len(names) != 7 or len(set(names)) != 7:
        raise ValueError(f'driver.joint_names must name 7 distinct joints, got {names}')
    return names


def rename(name: str, profile: str) -> str:
    """Map one name of the shipped (lbr) URDF to ``profile``'s name."""
    _check_profile(profile)
    lbr_joints = JOINT_NAME_PROFILES['lbr']
    if name in lbr_joints:
        return JOINT_NAME_PROFILES[profile][lbr_joints.index(name)]
    if name.startswith('lbr_'):
        return _NAME_PREFIXES[profile] + name[len('lbr_'):]
    return name


def link_names(profile: str = 'lbr') -> list[str]:
    """Base link, the seven moving links, the flange, in order (``lbr_link_0`` .. ``lbr_link_ee``)."""
    return [rename(f'lbr_link_{i}', profile) for i in range(8)] + [rename('lbr_link_ee', profile)]


def gripper_joint_names(profile: str = 'lbr') -> list[str]:
    """The left (driven) and right (mimic) finger joints."""
    return [rename('lbr_finger_left_joint', profile), rename('lbr_finger_right_joint', profile)]


def tcp_link_name(profile: str = 'lbr') -> str:
    return rename('lbr_tcp', profile)


def urdf_path() -> Path:
    """The shipped URDF (lbr names); a file on disk for robot_state_publisher and MuJoCo."""
    path = Path(str(files('legion_kuka') / 'urdf' / 'iiwa7.urdf'))
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: reinstall legion_kuka from the workspace '
                                '(pip install -e src/legion_kuka); the urdf/ link must point at the '
                                "workspace's urdf/ directory")
    return path


@lru_cache(maxsize=8)
def urdf_text(profile: str = 'lbr') -> str:
    """The URDF with ``profile``'s joint and link names (the shipped file for ``'lbr'``)."""
    _check_profile(profile)
    text = urdf_path().read_text()
    if profile == 'lbr':
        return text
    root = ET.fromstring(text)
    for element in root.iter():
        if element.tag in ('link', 'joint') and 'name' in element.attrib:
            element.set('name', rename(element.get('name'), profile))
        elif element.tag in ('parent', 'child') and 'link' in element.attrib:
            element.set('link', rename(element.get('link'), profile))
        elif element.tag == 'mimic':
            element.set('joint', rename(element.get('joint'), profile))
        elif element.tag in ('visual', 'collision') and 'name' in element.attrib:
            element.set('name', rename(element.get('name'), profile))
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding='unicode') + '\n'


def arm_spec(profile: str = 'lbr', actuators: str = 'position', *, keyframe: bool = True,
             gravity_compensation: bool = True):
    """The arm + gripper as a ``mujoco.MjSpec`` compiled from the URDF, ready to attach to a scene.

    Adds what URDF cannot say: sites ``'flange'`` and ``'tcp'``, the right finger following the
    left (an equality constraint; MuJoCo ignores URDF ``<mimic>``), no contact between the two
    fingers, joint armature, gravity compensation on the robot's bodies, and with
    ``actuators='position'`` one position servo per arm joint named like the joint (gains
    :data:`ARM_KP` / :data:`ARM_KV`, control range = joint range, force range = effort limits) plus
    ``'gripper'`` driving the left finger (0 = closed, ``GRIPPER.finger_stroke`` = open).
    ``actuators='none'`` leaves the joints unactuated (for kinematics or mocap-driven use).
    ``keyframe`` adds ``'home'`` (:data:`HOME`, gripper open).
    """
    import mujoco  # lazy: importing this module must stay cheap

    if actuators not in ('position', 'none'):
        raise ValueError(f"actuators must be 'position' or 'none', not {actuators!r}")
    spec = mujoco.MjSpec.from_string(urdf_text(profile))
    spec.modelname = f'iiwa7_{profile}'
    flange_body = spec.body(rename('lbr_link_ee', profile))
    tcp_body = spec.body(tcp_link_name(profile))
    flange_body.add_site(name=FLANGE_SITE, size=[0.005, 0, 0], rgba=[0, 0, 1, 1], group=4)
    tcp_body.add_site(name=TCP_SITE, size=[0.005, 0, 0], rgba=[1, 0, 0, 1], group=4)

    arm_joints = joint_names(profile)
    left, right = gripper_joint_names(profile)
    for name in arm_joints:
        spec.joint(name).armature = ARM_ARMATURE
    if gravity_compensation:
        for body in spec.bodies:
            if body.name:  # every body of this spec belongs to the robot (the world body has no name)
                body.gravcomp = 1.0
    mimic = spec.add_equality(name='finger_mimic', type=mujoco.mjtEq.mjEQ_JOINT,
                              name1=right, name2=left, objtype=mujoco.mjtObj.mjOBJ_JOINT)
    mimic.data[:5] = [0.0, 1.0, 0.0, 0.0, 0.0]  # right = 0 + 1 * left
    spec.add_exclude(bodyname1=rename('lbr_finger_left', profile),
                     bodyname2=rename('lbr_finger_right', profile))

    if actuators == 'position':
        for i, name in enumerate(arm_joints):
            _add_position_servo(spec, mujoco, name, name, ARM_KP[i], ARM_KV[i],
                                (-IIWA7.position_limits[i], IIWA7.position_limits[i]), IIWA7.effort_limits[i])
        _add_position_servo(spec, mujoco, 'gripper', left, GRIPPER_KP, GRIPPER_KV,
                            (0.0, GRIPPER.finger_stroke), GRIPPER.finger_effort)
    if keyframe:
        qpos = [*HOME, GRIPPER.finger_stroke, GRIPPER.finger_stroke]
        key = spec.add_key(name='home', qpos=qpos)
        if actuators == 'position':
            key.ctrl = [*HOME, GRIPPER.finger_stroke]
    return spec


def _add_position_servo(spec, mujoco, name: str, joint: str, kp: float, kv: float,
                        ctrlrange: tuple[float, float], force: float) -> None:
    actuator = spec.add_actuator(name=name, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    actuator.gainprm[0] = kp
    actuator.biasprm[:3] = [0.0, -kp, -kv]
    actuator.ctrllimited = True
    actuator.ctrlrange = list(ctrlrange)
    actuator.forcelimited = True
    actuator.forcerange = [-force, force]


def load_mujoco_model(profile: str = 'lbr', actuators: str = 'position', **kwargs):
    """Compile :func:`arm_spec` into a ``mujoco.MjModel`` (the arm alone, base at the world origin)."""
    return arm_spec(profile, actuators, **kwargs).compile()
