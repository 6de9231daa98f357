"""Meta-World v3 tasks with the KUKA LBR iiwa 7 R800 + gripper in place of the Sawyer (``embodiment=kuka``).

Each KUKA task env is a subclass of Meta-World's own v3 task class, so the observation (39-d: hand xyz,
gripper opening, object poses, previous frame, goal), the action (4-d: hand displacement of 1 cm per
step and unit, gripper), the reward, ``info['success']``, the goal variants (``set_task`` with
Meta-World's MT1 tasks) and the episode logic are Meta-World's code, unchanged. Only the model differs:

- The scene is Meta-World's task XML with the Sawyer's bodies removed and the iiwa from
  :func:`legion_kuka.description.arm_spec` attached at :data:`legion_kuka.description.METAWORLD_BASE_POSE`
  (built in memory with ``mujoco.MjSpec``: no generated files).
- The iiwa's gripper carries the names Meta-World's code reads: bodies ``hand``, ``rightclaw``,
  ``leftclaw``, ``rightpad``, ``leftpad``; geoms ``rightpad_geom``, ``leftpad_geom``; sites
  ``rightEndEffector``, ``leftEndEffector`` (the fingertips, whose midpoint is Meta-World's
  ``tcp_center``); finger joints ``r_close`` and ``l_close`` with Meta-World's ranges and signs
  (0 = open; the right finger closes towards +, the left towards -), driven like Meta-World's fingers
  (position actuators kp 400 on ctrl [a, -a], armature 100, damping 1000, Meta-World's pad friction).
  The finger *geometry* is the iiwa gripper's (80 mm stroke, 50 mm fingers).
- ``hand`` sits 45 mm above the fingertips along the tool axis, as on the Sawyer, so a hand position
  in the observation means the same fingertip position on both arms; its frame is the Sawyer hand's
  (x along the fingers, y the finger travel), so Meta-World's fixed mocap quaternion [1, 0, 1, 0]
  points the tool straight down with the fingers sliding along the world y axis, like the Sawyer's.
- The hand is moved as in Meta-World: a mocap body welded to ``hand``. The arm's joints are passive
  (gravity compensated, damped, joint limits on) and follow the weld; a weak spring towards the reset
  posture settles the iiwa's redundant elbow. The arm collides with the table and the objects, not
  with itself. A reset solves inverse kinematics for the task's initial hand position, so the arm
  starts in a posture consistent with the hand, before Meta-World's own 50 settling steps.
- Exactly 9 robot coordinates come first in ``qpos`` (A1..A7, r_close, l_close), the count and order
  Meta-World's task code indexes into (object joints at ``qpos[9:]``).

Known differences from the Sawyer (measured with ``legion kuka experts``):

- Reach. The iiwa's shoulder-to-wrist distance is 0.40-0.80 m; with the tool pointing down and the
  base at ``METAWORLD_BASE_POSE`` the hand cannot go closer to the base than y ~0.47 m (at z 0.2 m;
  A4 at its 120 deg limit) nor much beyond y ~0.85 m near the table. Meta-World's default hand box
  (-0.2..0.2, 0.55..0.75, 0.05..0.3) is inside. Tasks that start the hand at y = 0.4 (faucet,
  button, window) start it at y ~0.47; targets out of reach stretch the weld and the hand lags the
  mocap, as a real arm at its limits would. Joint limits are stiffer than the weld, so the arm stops
  at them (< 0.1 deg over).
- Gripper geometry. The iiwa gripper's palm (14 cm across the finger travel) sits 5 mm above the hand
  point, its fingers are 50 mm long (the Sawyer's pads 90 mm): where a scripted approach slides the
  hand along a surface (door-open's side approach) the palm can catch what the Sawyer's slim hand
  slips past.
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Any

import numpy as np

from legion_core.tasks import LEGION10
from legion_kuka.gripper import FINGER_ARMATURE, FINGER_DAMPING, FINGER_KP

#: Tasks this module builds (the legion10 stream: Meta-World v3 names).
KUKA_TASKS: tuple[str, ...] = LEGION10

#: Meta-World's hand body lies this far above the fingertip sites along the tool axis (Sawyer model).
HAND_ABOVE_FINGERTIPS = 0.045
#: Meta-World's pad contact parameters (the pads are what grasps).
PAD_FRICTION = (2.0, 0.1, 0.002)
PAD_SOLREF = (0.01, 1.0)
PAD_SOLIMP = (0.95, 0.99, 0.01, 0.5, 2.0)
#: Meta-World's mocap weld (task XMLs: ``<weld body1="mocap" body2="hand" solref="0.02 1"/>``).
WELD_SOLREF = (0.02, 1.0)
#: Passive arm joints: viscous damping (N m s/rad, the Sawyer's arm joints in Meta-World use 10) and a
#: weak spring (N m/rad) towards the reset posture, which only decides the elbow's redundant swivel.
ARM_DAMPING = 10.0
ARM_POSTURE_STIFFNESS = 2.0
#: Joint-limit constraint: MuJoCo's stiffest stable time constant at Meta-World's 2.5 ms step.
LIMIT_SOLREF = (0.005, 1.0)
LIMIT_SOLIMP = (0.99, 0.999, 0.001, 0.5, 2.0)
#: Collision bits: arm links touch the world and the objects (contype 1) but not each other
#: (conaffinity 2 shares no bit with contype 1).
ARM_CONTYPE, ARM_CONAFFINITY = 1, 2
#: The Sawyer hand's frame in the iiwa gripper frame (gripper z along the fingers, the URDF's
#: ``lbr_finger_left`` opening towards gripper +y), columns = hand axes: hand x = gripper z (along the
#: fingers), hand y = gripper -y. The URDF's first finger thus sits on the hand's -y side and plays
#: Meta-World's *right* claw, which keeps Meta-World's joint order (r_close before l_close).
_HAND_IN_GRIPPER = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
#: Meta-World's fixed mocap (= hand) orientation, quaternion [1, 0, 1, 0]: hand x points down.
_HAND_IN_WORLD = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
#: Meta-World's hand initial position most tasks use; the compiled model's default posture reaches it.
_DEFAULT_HAND_POS = (0.0, 0.6, 0.2)
ROBOT_QPOS = 9  # A1..A7, r_close, l_close: Meta-World's code indexes objects from qpos[9]


def _sawyer_class(task_name: str) -> type:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    if task_name not in KUKA_TASKS:
        known = ', '.join(KUKA_TASKS)
        raise ValueError(f'no KUKA variant of task {task_name!r}; the KUKA embodiment has: {known}')
    return ALL_V3_ENVIRONMENTS[task_name]


# --------------------------------------------------------------------------------------------------
# Scene

def _arm_with_metaworld_gripper():
    """``arm_spec`` with its gripper renamed and re-jointed to Meta-World's conventions."""
    import mujoco

    from legion_kuka import description as desc

    arm = desc.arm_spec('lbr', actuators='none', keyframe=False, gravity_compensation=True)
    for equality in list(arm.equalities):  # Meta-World drives each finger on its own: no mimic
        equality.delete()
    for body in arm.bodies:
        for geom in body.geoms:
            if geom.contype or geom.conaffinity:
                geom.contype, geom.conaffinity = ARM_CONTYPE, ARM_CONAFFINITY
    from legion_kuka.safety import planning_position_limits

    for name, limit in zip(desc.joint_names('lbr'), planning_position_limits(), strict=True):
        joint = arm.joint(name)
        # Only what the real arm may do: the safety filter keeps it 5 deg inside the datasheet's
        # limits and sim2real plans within those (window-close and button-press-topdown start at the
        # datasheet's elbow limit; a policy that learnt to go there stalls on the arm).
        joint.range = [-limit, limit]
        joint.damping = ARM_DAMPING
        joint.stiffness = ARM_POSTURE_STIFFNESS
        # Limits harder than the weld (timeconst 0.02 s) that pulls the arm: a hand target out of
        # reach must stop at the joint limit, not push through it.
        joint.solref_limit = list(LIMIT_SOLREF)
        joint.solimp_limit = list(LIMIT_SOLIMP)

    gripper = arm.body(desc.rename('lbr_gripper', 'lbr'))
    fingertips = []
    # Meta-World side, iiwa finger, which way (gripper y) that finger opens, Meta-World joint name.
    for side, finger_name, outward, joint_name in (
            ('right', 'lbr_finger_left', 1.0, 'r_close'), ('left', 'lbr_finger_right', -1.0, 'l_close')):
        claw = arm.body(desc.rename(finger_name, 'lbr'))
        joint = claw.first_joint()
        stroke = float(max(abs(joint.range[0]), abs(joint.range[1])))
        collision = [g for g in claw.geoms if g.contype or g.conaffinity]
        if len(collision) != 1 or collision[0].type != mujoco.mjtGeom.mjGEOM_BOX:
            raise RuntimeError(f'expected one box collision geom on {claw.name}; the gripper of '
                               'legion_kuka.description changed: update metaworld_kuka')
        pad = collision[0]
        thickness = 2.0 * float(pad.size[1])
        # Re-anchor the finger body at its outer face in the open position, so that q = 0 is open and
        # the distance between the two claw bodies is ~0.1 m open (Meta-World divides it by 0.1 to
        # get the observed gripper opening, 1 = open, as on the Sawyer).
        shift = outward * (stroke + thickness)
        claw.pos = [claw.pos[0], claw.pos[1] + shift, claw.pos[2]]
        for geom in claw.geoms:
            geom.pos = [geom.pos[0], geom.pos[1] - outward * thickness, geom.pos[2]]
        claw.ipos = [claw.ipos[0], claw.ipos[1] - outward * thickness, claw.ipos[2]]
        claw.name = f'{side}claw'
        joint.name = joint_name
        # Meta-World: both finger axes along hand +y (= gripper -y); r_close closes as q grows from 0
        # to the stroke, l_close as q falls from 0 to -stroke.
        joint.axis = [0.0, -1.0, 0.0]
        joint.range = [0.0, stroke] if joint_name == 'r_close' else [-stroke, 0.0]
        joint.armature = FINGER_ARMATURE
        joint.damping = FINGER_DAMPING
        joint.stiffness = 0.0
        # Meta-World's finger servo is not force-limited (~400 N); the URDF's 40 N effort limit would
        # make the fingers close ten times slower than the Sawyer's and change every grasping task.
        joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_FALSE
        # The pad: a body at the finger's centre holding the contact geom, with Meta-World's names and
        # contact parameters.
        pad_body = claw.add_body(name=f'{side}pad', pos=list(pad.pos))
        pad_body.add_geom(name=f'{side}pad_geom', type=mujoco.mjtGeom.mjGEOM_BOX, size=list(pad.size),
                          rgba=list(pad.rgba), contype=1, conaffinity=1, condim=4, margin=0.001,
                          friction=list(PAD_FRICTION), solref=list(PAD_SOLREF), solimp=list(PAD_SOLIMP))
        tip = float(pad.pos[2] + pad.size[2])
        pad_y = float(pad.pos[1])
        pad.delete()
        claw.add_site(name=f'{side}EndEffector', pos=[0.0, pad_y, tip], size=[0.008, 0, 0],
                      rgba=[1, 0, 0, 1], group=4)
        fingertips.append(float(claw.pos[2]) + tip)
    hand_z = float(np.mean(fingertips)) - HAND_ABOVE_FINGERTIPS
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, _HAND_IN_GRIPPER.flatten())
    hand = gripper.add_body(name='hand', pos=[0.0, 0.0, hand_z], quat=list(quat))
    # Meta-World's hand cameras (xyz_base.xml), same poses in the (same) hand frame.
    for name, pos, camera_quat, fovy in (('behindGripper', [0, 0, -0.5], [0, 1, 0, 0], 60),
                                         ('gripperPOV', [0.04, -0.06, 0], [-1, -1.3, 0, 0], 90)):
        norm = float(np.linalg.norm(camera_quat))
        hand.add_camera(name=name, mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM, pos=pos,
                        quat=[c / norm for c in camera_quat], fovy=fovy)
    return arm, hand_z


def _scene_without_sawyer(task_name: str):
    """Meta-World's ``task_name`` scene as a ``mujoco.MjSpec``, the Sawyer's bodies removed."""
    import mujoco

    sawyer_cls = _sawyer_class(task_name)
    xml_path = sawyer_cls.model_name.fget(None)
    spec = mujoco.MjSpec.from_file(xml_path)
    base = spec.body('base')  # Meta-World's Sawyer (xyz_base.xml): pedestal, arm, gripper
    for child in list(base.bodies):
        spec.detach_body(child)  # also drops the finger actuators and the weld that refer to it
    for mesh in list(spec.meshes):
        if mesh.file and 'xyz_base' in mesh.file:  # the Sawyer's meshes: unused now
            mesh.delete()
    if task_name in PLUG_TASKS:
        _fit_plug(spec)
    return spec


#: Tasks whose scene has peg-unplug-side's plug in its socket.
PLUG_TASKS = ('peg-unplug-side-v3',)
#: Radius (m) of the plug's head in its socket. Meta-World's is 30 mm in a 44 mm square hole: 8 mm of
#: interpenetration a side, held by about 2,700 N of contact force, which no gripper pulls against (the
#: twin's pads give at most about 470 N of friction) and which only soft contacts' creep let go (the
#: twin's noslip solver held it at 0 mm under a 200 N pull). At 22.2 mm the head fits with 0.2 mm of
#: interference: the socket holds the plug with about 80 N along its axis, a firm mains socket's grip,
#: and gives at most 2 mm to a 100 N push across the plug's far end.
PLUG_HEAD_RADIUS = 0.0222


def _fit_plug(spec) -> None:
    """Give the plug's head (its colliding sphere inside the socket) :data:`PLUG_HEAD_RADIUS`."""
    import mujoco

    heads = [geom for geom in spec.body('plug').geoms
             if geom.type == mujoco.mjtGeom.mjGEOM_SPHERE and geom.contype and geom.pos[0] < 0.0]
    if len(heads) != 1:
        raise RuntimeError(f"expected one colliding sphere at the plug's head, found {len(heads)}")
    heads[0].size[0] = PLUG_HEAD_RADIUS


#: Root bodies of a Meta-World scene that belong to no task: the robot's mount, its mocap handle, and
#: the low walls around the table's edge that keep pucks on it.
NON_TASK_BODIES = ('base', 'mocap', 'RetainingWall')


def station_spec(task_name: str):
    """Only ``task_name``'s own part of its scene (table, objects, goal sites; no robot, no mocap, no
    retaining walls): what a workcell station adds to a scene (:mod:`legion_kuka.workcell`)."""
    spec = _scene_without_sawyer(task_name)
    for name in NON_TASK_BODIES:
        spec.detach_body(spec.body(name))
    return spec


def kuka_scene_spec(task_name: str, base_pose=None):
    """The ``mujoco.MjSpec`` of Meta-World's ``task_name`` scene with the iiwa instead of the Sawyer,
    its base at ``base_pose`` (x, y, z, yaw; None: the task's, :func:`legion_kuka.description.base_pose`)."""
    import mujoco

    from legion_kuka.description import base_pose as task_base_pose

    spec = _scene_without_sawyer(task_name)
    base = spec.body('base')
    arm, _ = _arm_with_metaworld_gripper()
    x, y, z, yaw = task_base_pose(task_name) if base_pose is None else base_pose
    frame = base.add_frame(pos=[x, y, z], quat=[math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    frame.attach_body(arm.body('lbr_link_0'), '', '')
    for joint in ('r_close', 'l_close'):  # Meta-World's order: do_simulation([a, -a])
        actuator = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        # A position servo, as Meta-World's <position kp="400"/>: force = kp * (ctrl - q).
        actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        actuator.gainprm[0] = FINGER_KP
        actuator.biasprm[:3] = [0.0, -FINGER_KP, 0.0]
        actuator.ctrllimited = True
        actuator.ctrlrange = [-1.0, 1.0]
    spec.add_equality(type=mujoco.mjtEq.mjEQ_WELD, name1='mocap', name2='hand',
                      objtype=mujoco.mjtObj.mjOBJ_BODY, solref=list(WELD_SOLREF))
    return spec


def world_to_base(points: np.ndarray, task: str | None = None) -> np.ndarray:
    """Meta-World world coordinates of ``task``'s scene -> iiwa base frame coordinates (rows are points)."""
    from legion_kuka.description import base_pose

    x, y, z, yaw = base_pose(task)
    c, s = math.cos(yaw), math.sin(yaw)
    d = np.asarray(points, dtype=float) - np.array([x, y, z])
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], axis=-1)


@functools.lru_cache(maxsize=4)
def _hand_kinematics(hand_offset: float):
    from legion_kuka.safety import SafetyLimits, planning_kinematics

    return planning_kinematics(SafetyLimits.from_description(), hand_offset)  # the scene arm's ranges


def _hand_rotation_in_base(task: str | None = None) -> np.ndarray:
    """Gripper (tool) frame columns in the base frame when the hand has Meta-World's orientation."""
    from legion_kuka.description import base_pose

    yaw = base_pose(task)[3]
    gripper_world = _HAND_IN_WORLD @ _HAND_IN_GRIPPER.T
    c, s = math.cos(yaw), math.sin(yaw)
    world_to_base_rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    return world_to_base_rot @ gripper_world


def base_to_world(points: np.ndarray, task: str | None = None) -> np.ndarray:
    """iiwa base frame coordinates -> Meta-World world coordinates of ``task``'s scene (the inverse of
    :func:`world_to_base`)."""
    from legion_kuka.description import base_pose

    x, y, z, yaw = base_pose(task)
    c, s = math.cos(yaw), math.sin(yaw)
    p = np.asarray(points, dtype=float)
    return np.stack([c * p[..., 0] - s * p[..., 1] + x, s * p[..., 0] + c * p[..., 1] + y, p[..., 2] + z],
                    axis=-1)


def arm_start(hand_pos, hand_offset: float, q_init=None,
              task: str | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Where the arm starts an episode whose hand Meta-World puts at ``hand_pos`` (world), tool down,
    within the scene arm's ranges: ``(q, hand, reached)``.

    A position too close to the base for the tool-down arm (window-close, faucet-open and others start
    there) gets the nearest reachable one straight outwards
    (:func:`legion_kuka.kinematics.nearest_reachable_posture`); ``hand`` is the position used (world)
    and ``reached`` whether it is ``hand_pos``.
    """
    from legion_kuka.description import HOME
    from legion_kuka.kinematics import nearest_reachable_posture

    kin = _hand_kinematics(round(float(hand_offset), 6))
    target = world_to_base(np.asarray(hand_pos, dtype=float), task)
    q0 = np.array(HOME if q_init is None else q_init, dtype=float)
    q, point, found = nearest_reachable_posture(kin, target, _hand_rotation_in_base(task), q0)
    if found and np.array_equal(point, target):  # its first try is hand_pos itself
        return q, np.asarray(hand_pos, dtype=float), True
    return q, base_to_world(point, task), False


def arm_posture_for_hand(hand_pos, hand_offset: float, q_init=None,
                         task: str | None = None) -> tuple[np.ndarray, bool]:
    """iiwa joint angles (A1..A7) that put Meta-World's ``hand`` at ``hand_pos`` (world of ``task``'s
    scene), tool down: ``(q, reached)`` of :func:`arm_start`."""
    q, _, reached = arm_start(hand_pos, hand_offset, q_init, task)
    return q, reached


@functools.lru_cache(maxsize=16)
def _compiled(task_name: str):
    """Compiled scene (cached; every env gets its own copy, Meta-World edits its model)."""

    spec = kuka_scene_spec(task_name)
    model = spec.compile()
    hand_offset = _hand_offset(model)
    q, reached = arm_posture_for_hand(_DEFAULT_HAND_POS, hand_offset, task=task_name)
    if not reached:
        raise RuntimeError(f'iiwa cannot reach Meta-World\'s initial hand position {_DEFAULT_HAND_POS}')
    # The elbow spring's rest posture: the hand at its usual start. (qpos0 must stay zero: MuJoCo
    # measures hinge angles from it; each reset sets the posture instead, see KukaMixin._reset_hand.)
    model.qpos_spring[:7] = q
    names = [model.joint(i).name for i in range(ROBOT_QPOS)]
    if model.jnt_qposadr[ROBOT_QPOS] != ROBOT_QPOS or names[7:] != ['r_close', 'l_close']:
        raise RuntimeError(f'robot joints must come first in qpos (A1..A7, r_close, l_close), got {names}')
    return model


def _hand_offset(model) -> float:
    """Distance flange -> hand along the tool axis, read from the compiled model."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    flange = data.site('flange')
    return float(np.dot(data.body('hand').xpos - flange.xpos, flange.xmat.reshape(3, 3)[:, 2]))


# --------------------------------------------------------------------------------------------------
# Envs

class KukaMixin:
    """Swaps Meta-World's Sawyer model for the iiwa; everything else is the Sawyer task's code."""

    embodiment = 'kuka'

    def _initialize_simulation(self):
        import mujoco

        model = copy.deepcopy(_compiled(self._kuka_task_name))
        # Rendering: the offscreen buffer must hold the requested image (as gymnasium does).
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        self._kuka_hand_offset = _hand_offset(model)
        self._kuka_postures: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = {}
        return model, mujoco.MjData(model)

    def set_xyz_action(self, action) -> None:
        """Meta-World's mocap step, with the mocap kept within ``MAX_LEAD_M`` of the hand, as sim2real
        keeps the arm's target: Meta-World lets it run up to the mocap box away from a blocked hand,
        and the weld then pushes with a force no arm has (a window-close policy learnt to shove the
        wrist along the window frame with the mocap 45 cm ahead; on the arm it stalls)."""
        from legion_kuka.sim2real import MAX_LEAD_M

        super().set_xyz_action(action)
        hand = self.get_endeff_pos()  # what the weld holds to the mocap (the observation's hand)
        lead = self.data.mocap_pos[0] - hand
        distance = float(np.linalg.norm(lead))
        if distance > MAX_LEAD_M:
            self.data.mocap_pos[0] = hand + lead * (MAX_LEAD_M / distance)

    @property
    def arm_qpos(self) -> np.ndarray:
        """The iiwa's joint angles A1..A7 (rad)."""
        return self.data.qpos[:7].copy()

    def _reset_hand(self, steps: int = 50) -> None:
        import mujoco

        # Put the arm where the hand will be, then let Meta-World's settling steps run as usual.
        key = tuple(np.round(np.asarray(self.hand_init_pos, dtype=float), 6))
        if key not in self._kuka_postures:
            q, hand, _ = arm_start(key, self._kuka_hand_offset, q_init=self.model.qpos_spring[:7],
                                   task=self._kuka_task_name)
            self._kuka_postures[key] = (q, hand)
        q, hand = self._kuka_postures[key]
        self.data.qpos[:7] = q
        self.data.qvel[:7] = 0.0
        mocap_id = self.model.body_mocapid[self.model.body('mocap').id]
        self.data.mocap_pos[mocap_id] = hand
        self.data.mocap_quat[mocap_id] = np.array([1.0, 0.0, 1.0, 0.0])
        mujoco.mj_forward(self.model, self.data)
        # Settle on the start the arm reaches (the twin and the real arm start there too): Meta-World's
        # settling pulls the mocap to hand_init_pos, which would leave the weld pulling the hand at a
        # joint limit, and the first steps' actions without effect.
        wanted, self.hand_init_pos = self.hand_init_pos, hand
        try:
            super()._reset_hand(steps)
        finally:
            self.hand_init_pos = wanted


@functools.cache
def kuka_env_class(task_name: str) -> type:
    """The KUKA subclass of Meta-World's v3 class for ``task_name`` (e.g. ``'reach-v3'``)."""
    sawyer_cls = _sawyer_class(task_name)
    name = sawyer_cls.__name__.replace('Sawyer', 'Kuka', 1)
    return type(name, (KukaMixin, sawyer_cls), {'_kuka_task_name': task_name,
                                                '__module__': __name__,
                                                '__doc__': f'{task_name} with the KUKA iiwa 7 (see module).'})


def __getattr__(name: str) -> type:
    """Module attributes ``Kuka<Task>EnvV3``: the generated classes, found by name (for pickle)."""
    if name.startswith('Kuka') and name.endswith('V3'):
        for task in KUKA_TASKS:
            if _sawyer_class(task).__name__.replace('Sawyer', 'Kuka', 1) == name:
                return kuka_env_class(task)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def goal_variant(task_name: str, seed: int):
    """Meta-World's goal variant (an MT1 ``Task``, goal visible) that ``seed`` picks for ``task_name``.

    The rule of ``legion_core.envs.make_sawyer_env``: one of the 50 variants of ``metaworld.MT1(task,
    seed=seed)``, drawn with the seed. Both arms get the same object and goal placement for a seed.
    """
    from legion_core.envs import _mt1_variants

    _, variants = _mt1_variants(task_name, int(seed))
    return variants[int(np.random.default_rng(int(seed)).integers(len(variants)))]


def make_kuka_env(task_name: str, seed: int) -> Any:
    """``legion.embodiments`` factory: the KUKA env of ``task_name`` with the seed's goal variant."""
    env = kuka_env_class(task_name)()
    env.set_task(goal_variant(task_name, seed))
    return env
