"""A workcell: the stations of several Meta-World tasks around one iiwa, in one MuJoCo scene.

A long-horizon instruction ("close the drawer, then press the button, then close the window") needs
every object on the robot's table at once, each task at its own place with its own task frame. The
workcell builds that scene and runs it as the twin (:class:`WorkcellTwin`, a :class:`~legion_kuka.twin.
Twin`): one arm, moved only through its joints, and up to :data:`MAX_STATIONS` stations.

Layout (design): station ``i`` is task ``i``'s Meta-World scene (its table, objects and goal sites, not
its retaining walls) turned by ``yaw_i`` about the vertical axis of the robot's A1 joint: station 0
straight ahead (where the single-task twin has its task), then +90 deg and -90 deg. Turning about A1
changes nothing the policy can tell: seen from the arm, every station is exactly its task's training
scene, reached with A1 offset by ``yaw_i`` (the hand box, the reach, the start postures all stay as
trained), and the station's task frame in the robot base frame is the single-task frame turned by
``yaw_i``. Sim2real turns the posture its IK's redundancy leans towards by ``yaw_i`` too
(:func:`~legion_kuka.sim2real.station_yaw`): with the rest posture of the station ahead, the elbow of
the 7-joint arm swung back towards it at a side station, and the same actions moved the hand a tenth
as far (measured: a drawer-close policy that succeeded ahead failed 4/4 on the left). 90 deg keeps
each station's objects and goals (spread over about +-35 deg as seen from the base) clear of the
neighbours', and A1 (+-170 deg) reaches all three.

Observation and success (design): Meta-World's task code reads its own model by name (``obj``, the
goal site, contacts with the pads), so each station keeps a *shadow*: the task's own KUKA env.
Resetting the workcell resets every shadow (Meta-World places objects and goal for the seed) and copies
the station's state into the workcell (object joints, the bodies and sites Meta-World moves, turned by
``yaw_i``); reading a station copies the workcell's state back into its shadow (the arm with A1 less
``yaw_i``, the fingers, the station's object joints) and asks the task's own code: observation,
``evaluate_state``. So every station's observation and success criterion are Meta-World's, unchanged.

Moving between stations is the arm's job, through its joints like any other motion: :class:`Transit`
plans the joint path (pull the tcp back towards the base, lift it above the workcell's tallest object,
swing A1 over the next station, move over its start posture and go down) timed within given velocity
and acceleration limits, which the safety filter then checks like every command (:func:`transit`).
The path is not collision-checked: it relies on the objects standing beyond the hand and below the
swing height, true of the legion10 stations (measured: ``legion kuka workcell``, docs/experts.md).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from legion_kuka.frames import Frame
from legion_kuka.metaworld_kuka import ROBOT_QPOS
from legion_kuka.stations import MAX_STATIONS, station_order
from legion_kuka.twin import ARM_DOF, Twin, metaworld_task_env

#: Angle between neighbouring stations about the A1 axis, and their order: ahead, left, right.
STATION_SPACING_DEG = 90.0
#: While swinging between stations the tcp passes this far above the tallest object of the workcell
#: (m; the fingers and the palm around the tcp reach about 5 cm out from it).
TRANSIT_CLEARANCE_M = 0.08
#: Before lifting, a transit pulls the tcp back towards the base axis to the first of these distances
#: (m) that the tool-down arm reaches, raising it a little on the way.
RETREAT_RADII_M = (0.45, 0.5, 0.55)
RETREAT_RAISE_M = 0.02
#: The swing stays this far below the top of the safety filter's box (m).
BOX_TOP_CLEARANCE_M = 0.05
#: A transit ends by holding the start posture for this many control cycles (the arm settles).
TRANSIT_SETTLE_CYCLES = 50
#: The gripper command during a transit: open, so that every step starts as the skill was trained (an
#: episode starts with the fingers open). A drawer-close policy that began half closed from the reach
#: before it failed 2 of 5 steps it succeeded in alone.
TRANSIT_GRIPPER = -1.0
#: A transit that starts this close to its goal in every joint goes straight there (rad).
ALREADY_THERE_RAD = math.radians(2.0)


def station_yaws(count: int, spacing_deg: float = STATION_SPACING_DEG) -> list[float]:
    """The yaw (rad) of each of ``count`` stations about A1: 0, +spacing, -spacing."""
    if not 1 <= count <= MAX_STATIONS:
        raise ValueError(f'a workcell holds 1 to {MAX_STATIONS} stations, got {count}')
    if not 0 < spacing_deg <= 170.0:
        raise ValueError(f'station spacing must be in (0, 170] deg, got {spacing_deg}')
    s = math.radians(spacing_deg)
    return [0.0, s, -s][:count]


def _about_a1(yaw: float) -> Frame:
    """Turn by ``yaw`` about the vertical axis through the robot base (Meta-World world frame)."""
    from legion_kuka.description import METAWORLD_BASE_POSE

    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    axis = np.array([*METAWORLD_BASE_POSE[:2], 0.0])
    return Frame(rotation, axis - rotation @ axis)


def station_place(task: str, yaw: float) -> Frame:
    """Where ``task``'s station sits in the workcell (whose base stands at ``METAWORLD_BASE_POSE``):
    its scene moved so that the base stands where the task places it
    (:func:`legion_kuka.description.base_pose`), then turned by ``yaw`` about A1."""
    from legion_kuka.description import METAWORLD_BASE_POSE, base_pose

    own = Frame.of(METAWORLD_BASE_POSE).compose(Frame.of(base_pose(task)).inverse())
    return _about_a1(yaw).compose(own)


def station_prefix(index: int) -> str:
    """Name prefix of station ``index``'s elements in the workcell model (``station0/obj``)."""
    return f'station{index}/'


def workcell_spec(tasks: Sequence[str], yaws: Sequence[float]):
    """The workcell's ``mujoco.MjSpec``: the iiwa of the KUKA scenes and each task's station."""
    from legion_kuka.description import METAWORLD_BASE_POSE
    from legion_kuka.metaworld_kuka import kuka_scene_spec, station_spec

    # the arm, its gripper actuators, floor, lights; the base where the stations expect it
    spec = kuka_scene_spec(tasks[0], base_pose=METAWORLD_BASE_POSE)
    # Keep only the arm's mount: the first task's own part comes back as station 0, and the mocap
    # handle (with its weld) has no use where nothing but the joints moves the arm.
    for body in list(spec.worldbody.bodies):
        if body.name != 'base':
            spec.detach_body(body)
    for site in list(spec.worldbody.sites):
        site.delete()
    for index, (task, yaw) in enumerate(zip(tasks, yaws, strict=True)):
        place = station_place(task, yaw)
        frame = spec.worldbody.add_frame(pos=list(place.translation), quat=list(place.quat))
        spec.attach(station_spec(task), prefix=station_prefix(index), frame=frame)
    return spec


def _free_pose(place: Frame, qpos: np.ndarray) -> np.ndarray:
    """A free joint's (position, quaternion wxyz) moved by ``place``."""
    return np.concatenate([place.apply(qpos[:3]), place.rotate_quat(qpos[3:7])])


class _Station:
    """One station: its task's shadow env and where its elements sit in the workcell model."""

    def __init__(self, index: int, task: str, yaw: float, env: Any, cell: mujoco.MjModel,
                 first_body: int) -> None:
        self.index, self.task, self.yaw = index, task, float(yaw)
        self.env, self.mw = env, metaworld_task_env(env, task)
        from legion_kuka.job import station_object

        self.object = station_object(task)
        self.place = station_place(task, yaw)  # station frame -> workcell (Meta-World world) frame
        self.start_q: np.ndarray | None = None
        from legion_kuka.metaworld_kuka import NON_TASK_BODIES

        shadow = self.mw.model
        prefix = station_prefix(index)
        robot_root = shadow.body('base').id
        own = [b for b in range(1, shadow.nbody)
               if shadow.body_rootid[b] != robot_root and shadow.body(shadow.body_rootid[b]).name
               not in NON_TASK_BODIES]
        # Attaching keeps the station's body tree in order, as one block of the workcell's bodies (names
        # are prefixed; Meta-World leaves some bodies and joints unnamed, so pair by order and check).
        body_of = {b: first_body + k for k, b in enumerate(own)}
        self.end_body = first_body + len(own)
        if self.end_body > cell.nbody:
            raise RuntimeError(f'the workcell is missing bodies of the {task} station')
        for b, c in body_of.items():
            name = shadow.body(b).name
            if (name and cell.body(c).name != prefix + name) or cell.body_jntnum[c] != shadow.body_jntnum[b]:
                raise RuntimeError(f'{task}: body {name or b} is not where the workcell station has it')

        def members(owner_body, body):  # ids of the sites / joints that ``body`` carries, in order
            return [int(i) for i in np.flatnonzero(owner_body == body)]

        self.bodies = list(body_of.items())
        self.sites = []
        for b, c in self.bodies:
            self.sites += list(zip(members(shadow.site_bodyid, b), members(cell.site_bodyid, c), strict=True))
        for s_ in members(shadow.site_bodyid, 0):  # world-level sites: the goals
            name = shadow.site(s_).name
            if name:
                self.sites.append((s_, mujoco.mj_name2id(cell, mujoco.mjtObj.mjOBJ_SITE, prefix + name)))
        if any(c < 0 for _, c in self.sites):
            raise RuntimeError(f'{task}: a goal site is missing from the workcell')
        # (shadow joint, workcell joint, is free joint)
        self.joints = []
        for b, c in self.bodies:
            for j, k in zip(members(shadow.jnt_bodyid, b), members(cell.jnt_bodyid, c), strict=True):
                if shadow.jnt_type[j] != cell.jnt_type[k] or shadow.jnt_qposadr[j] < ROBOT_QPOS:
                    raise RuntimeError(f'{task}: joint {shadow.joint(j).name or j} differs in the workcell')
                if shadow.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
                    raise NotImplementedError(f'{task}: ball joints are not mirrored')
                self.joints.append((j, k, shadow.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE))

    def _transfer(self, place: Frame, src_model, src_data, dst_model, dst_data, pairs_reversed: bool,
                  layout: bool) -> None:
        """Copy the station's joint state (and, with ``layout``, its body and site placements) from one
        model to the other, moving world-level placements by ``place``."""
        def pairs(items):
            return [(b, a) for a, b, *_ in items] if pairs_reversed else [(a, b) for a, b, *_ in items]

        if layout:
            for src, dst in pairs(self.bodies):
                pos, quat = src_model.body_pos[src], src_model.body_quat[src]
                if src_model.body_parentid[src] == 0:
                    dst_model.body_pos[dst] = place.apply(pos)
                    dst_model.body_quat[dst] = place.rotate_quat(quat)
                else:
                    dst_model.body_pos[dst], dst_model.body_quat[dst] = pos, quat
            for src, dst in pairs(self.sites):
                pos = src_model.site_pos[src]
                world = src_model.site_bodyid[src] == 0
                dst_model.site_pos[dst] = place.apply(pos) if world else pos
                dst_model.site_quat[dst] = (place.rotate_quat(src_model.site_quat[src]) if world
                                            else src_model.site_quat[src])
        for (src, dst), (*_, free) in zip(pairs(self.joints), self.joints, strict=True):
            qa, qb = src_model.jnt_qposadr[src], dst_model.jnt_qposadr[dst]
            va, vb = src_model.jnt_dofadr[src], dst_model.jnt_dofadr[dst]
            if free:
                dst_data.qpos[qb:qb + 7] = _free_pose(place, src_data.qpos[qa:qa + 7])
                # Free joints: linear velocity in the world frame, angular in the body's own frame.
                dst_data.qvel[vb:vb + 3] = place.rotation @ src_data.qvel[va:va + 3]
                dst_data.qvel[vb + 3:vb + 6] = src_data.qvel[va + 3:va + 6]
            else:
                dst_data.qpos[qb] = src_data.qpos[qa]
                dst_data.qvel[vb] = src_data.qvel[va]

    def _joint_slices(self):
        model = self.mw.model
        for j, _, free in self.joints:
            qa, va = model.jnt_qposadr[j], model.jnt_dofadr[j]
            yield (slice(qa, qa + 7), slice(va, va + 6)) if free else (slice(qa, qa + 1), slice(va, va + 1))

    def state(self):
        """The station's object as the shadow holds it (pull first): :class:`legion_kuka.job.ObjectState`."""
        from legion_kuka.job import ObjectState

        data = self.mw.data
        slices = list(self._joint_slices())
        rand_vec = getattr(self.mw, '_last_rand_vec', None)
        return ObjectState(
            object=self.object, task=self.task,
            rand_vec=None if rand_vec is None else np.array(rand_vec, dtype=np.float64),
            joint_types=tuple(int(self.mw.model.jnt_type[j]) for j, *_ in self.joints),
            qpos=np.concatenate([data.qpos[q] for q, _ in slices] or [np.zeros(0)]))

    def place_like(self, rand_vec) -> None:
        """Before the shadow's reset: Meta-World places the objects (and goal) by ``rand_vec``, another
        station's placement of the same object."""
        current = getattr(self.mw, '_last_rand_vec', None)
        # Both tasks read the vector the same way where the scene is the same file and it has the same
        # size (window-open's and window-close's: the window's position).
        if rand_vec is not None and current is not None and np.shape(current) == np.shape(rand_vec):
            self.mw._last_rand_vec = np.array(rand_vec, dtype=np.float64)

    def restore(self, state) -> None:
        """After the shadow's reset: the station's joints as ``state`` holds them."""
        types = tuple(int(self.mw.model.jnt_type[j]) for j, *_ in self.joints)
        if types != state.joint_types:
            raise ValueError(f'{self.task}: the joints of {self.object} differ from those carried from '
                             f'{state.task}')
        data, start = self.mw.data, 0
        for q, v in self._joint_slices():
            data.qpos[q] = state.qpos[start:start + q.stop - q.start]
            data.qvel[v] = 0.0  # a new scene starts at rest (the arm jumps to its start too)
            start += q.stop - q.start
        mujoco.mj_forward(self.mw.model, data)

    def push(self, cell_model, cell_data) -> None:
        """The shadow's freshly reset station -> the workcell (objects, goal, Meta-World's placements)."""
        self._transfer(self.place, self.mw.model, self.mw.data, cell_model, cell_data, False, layout=True)
        self.start_q = self.mw.data.qpos[:ARM_DOF].copy()
        self.start_q[0] += self.yaw

    def pull(self, cell_model, cell_data) -> None:
        """The workcell's state of this station and of the arm -> the shadow, ready for Meta-World's code."""
        model, data = self.mw.model, self.mw.data
        self._transfer(self.place.inverse(), cell_model, cell_data, model, data, True, layout=False)
        data.qpos[:ROBOT_QPOS] = cell_data.qpos[:ROBOT_QPOS]
        data.qvel[:ROBOT_QPOS] = cell_data.qvel[:ROBOT_QPOS]
        data.qpos[0] -= self.yaw  # seen from the station, the arm stands at its training A1
        mujoco.mj_forward(model, data)
        for site in self.mw._target_site_config:
            self.mw._set_pos_site(*site)


class WorkcellTwin(Twin):
    """The twin of the arm at a workcell of up to :data:`MAX_STATIONS` task stations (see module).

    ``task`` arguments name a station; :meth:`select` makes one the active station (whose
    observation, objects, goal and hand box the Twin methods report) without moving anything; the arm
    gets there by joint commands (:func:`transit`). :meth:`reset` resets every station to its task's
    initial state for the seed and puts the arm at the active station's start posture.

    With ``job`` (the tasks of a job's steps, in order, any number) the twin runs the job's sequence of
    workcells (:func:`legion_kuka.job.plan_workcells`), starting with the first; :meth:`enter` moves
    on to the next, every object's state carried (:mod:`legion_kuka.job`).

    Args:
        tasks: the stations' tasks, distinct, in station order (ahead, left, right); with ``job``: empty
            or the first workcell's.
        task: the station active after the first reset (default: the first).
        job: the tasks of a job's steps, in order.
        spacing_deg: angle between stations about A1.
        Other arguments: as :class:`~legion_kuka.twin.Twin`.
    """

    def __init__(self, tasks: Sequence[str] = (), task: str | None = None, *, seed: int = 0,
                 job: Sequence[str] | None = None,
                 spacing_deg: float = STATION_SPACING_DEG, profile: str = 'lbr',
                 control_rate_hz: float = 100.0, bandwidth_hz: float = 20.0, damping_ratio: float = 1.0,
                 stiffness: Any = None, env_factory: Callable[[str, int], Any] | None = None,
                 placements: dict[str, Any] | None = None) -> None:
        from legion_kuka.job import plan_workcells

        self.plan = plan_workcells(list(job)) if job else None
        self.workcell_index = 0  # which of the plan's workcells the scene is
        # Per object (legion_kuka.job.station_object): its state when it last left the scene, and the
        # states the current workcell was entered with: its initial state, for every reset of it (the
        # jog of the arm inside the limits is one).
        self._carried: dict[str, Any] = {}
        self._entered_with: dict[str, Any] = {}
        # ``placements``: Meta-World placement vectors by object, for a scene built again as a job held it
        # (carried_placements), e.g. to draw it.
        self._placements = dict(placements or {})
        if self.plan is not None:
            if tasks and tuple(tasks) != self.plan[0].stations:
                raise ValueError(f'with a job the stations are its first workcell\'s '
                                 f'{list(self.plan[0].stations)}, got {list(tasks)}')
            tasks = self.plan[0].stations
        self._spacing_deg = spacing_deg
        tasks = list(tasks)
        if len(set(tasks)) != len(tasks):
            raise ValueError(f'workcell stations must be distinct tasks, got {tasks}')
        from legion_kuka.metaworld_kuka import KUKA_TASKS

        unknown = [t for t in tasks if t not in KUKA_TASKS]
        if unknown:
            raise ValueError(f'no KUKA station for {unknown}; the KUKA embodiment has: '
                             f'{", ".join(KUKA_TASKS)}')
        self.tasks = tuple(tasks)
        self.yaws = station_yaws(len(tasks), spacing_deg)
        self._stations: dict[str, _Station] = {}
        self._cell_built = False
        task = self.tasks[0] if task is None else task
        super().__init__(task, seed=seed, profile=profile, control_rate_hz=control_rate_hz,
                         bandwidth_hz=bandwidth_hz, damping_ratio=damping_ratio, stiffness=stiffness,
                         env_factory=env_factory)

    # -- scene -------------------------------------------------------------------------------------
    def _load(self, task: str, seed: int) -> None:
        if not self._cell_built:
            model = workcell_spec(self.tasks, self.yaws).compile()
            self._adopt(model, mujoco.MjData(model), task)
            self._cell_built = True
        model = self.model
        base = model.body('base').id
        first_body = 1 + max(b for b in range(model.nbody) if model.body_rootid[b] == base)
        self._stations = {}
        for i, (t, yaw) in enumerate(zip(self.tasks, self.yaws, strict=True)):
            station = _Station(i, t, yaw, self._factory(t, int(seed)), model, first_body)
            self._stations[t], first_body = station, station.end_body
        self.seed = int(seed)
        self._activate(task)

    def _activate(self, task: str) -> None:
        station = self._station(task)
        self.task, self._env, self._mw = task, station.env, station.mw
        self._stale = True
        self._previous_frame = None

    def _station(self, task: str | None) -> _Station:
        task = self.task if task is None else task
        if task not in self._stations:
            raise ValueError(f'the workcell has no station {task!r}; its stations: {", ".join(self.tasks)}')
        return self._stations[task]

    def _check_task(self, task: str | None) -> None:
        self._station(task)

    def select(self, task: str) -> None:
        """Make ``task``'s station the active one; the arm stays where it is."""
        self._activate(self._station(task).task)

    def station_yaw(self, task: str | None = None) -> float:
        """The station's yaw about A1 (rad)."""
        return self._station(task).yaw

    def station_hand_box(self, task: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The station's hand box (its task's Meta-World mocap box), task frame."""
        mw = self._station(task).mw
        return (np.asarray(mw.mocap_low, dtype=np.float64).copy(),
                np.asarray(mw.mocap_high, dtype=np.float64).copy())

    def obstacle_height(self) -> float:
        """Height of the tallest thing on the stations' tables above the robot base (m): the top of
        every collision geom of every station except the tables, as the scene stands now."""
        model, data = self.model, self.data
        mujoco.mj_kinematics(model, data)
        station_bodies = {c for station in self._stations.values() for _, c in station.bodies}
        tables = {model.body(f'{station_prefix(i)}tablelink').id for i in range(len(self.tasks))}
        top = -np.inf
        for g in range(model.ngeom):
            body = model.geom_bodyid[g]
            if body not in station_bodies or model.body_rootid[body] in tables:
                continue
            if not (model.geom_contype[g] or model.geom_conaffinity[g]):
                continue
            rotation = data.geom_xmat[g].reshape(3, 3)
            centre = data.geom_xpos[g] + rotation @ model.geom_aabb[g][:3]
            top = max(top, float(centre[2] + np.abs(rotation[2]) @ model.geom_aabb[g][3:]))
        return top - float(self._base_frame().translation[2])

    def swing_height(self) -> float:
        """Height of the tcp above the robot base for swinging between stations: above the tallest
        object as the scene stands now, by :data:`TRANSIT_CLEARANCE_M`."""
        return self.obstacle_height() + TRANSIT_CLEARANCE_M

    def start_posture(self, task: str | None = None) -> np.ndarray:
        """Where the station's task starts the arm after the last reset (A1..A7, rad): Meta-World's
        initial hand pose for the seed, reached at this station."""
        return self._station(task).start_q.copy()

    def _task_base_frame(self, task: str | None = None) -> Frame:
        return self._station(task).place.inverse().compose(self._base_frame())

    # -- reset -------------------------------------------------------------------------------------
    def _reset_scene(self, task: str, seed: int) -> None:
        if not self._stations or seed != self.seed:
            if self._stations:  # another seed: another job, nothing carried
                self._carried, self._entered_with, self._placements = {}, {}, {}
            self._load(task, seed)
        for station in self._stations.values():
            state = self._entered_with.get(station.object)
            if state is not None:  # placed as where it was last (Meta-World's random vector)
                station.place_like(state.rand_vec)
            elif station.object in self._placements:  # a scene built again (legion_kuka.state_log)
                station.place_like(self._placements[station.object])
            station.env.reset()  # Meta-World places the station's objects and goal for the seed
            if state is not None:
                station.restore(state)  # its joints as it was last left
            station.push(self.model, self.data)
        self._activate(task)
        active = self._stations[task]
        self.data.qpos[self._qadr] = active.start_q
        self.data.qpos[ARM_DOF:ROBOT_QPOS] = active.mw.data.qpos[ARM_DOF:ROBOT_QPOS]
        self.data.qvel[:] = 0.0

    def _refresh(self) -> None:
        if self._stale:
            mujoco.mj_forward(self.model, self.data)
            self._stations[self.task].pull(self.model, self.data)
            self._stale = False

    def task_success(self, task: str | None = None) -> bool:
        """Meta-World's success criterion of ``task``'s station (default: the active one)."""
        if task is None or task == self.task:
            return super().task_success()
        station = self._station(task)
        mujoco.mj_forward(self.model, self.data)
        station.pull(self.model, self.data)
        self._stale = True  # the active station's shadow is refreshed on its next read
        mw = station.mw
        current = np.asarray(mw._get_curr_obs_combined_no_goal(), dtype=np.float64)
        obs = np.concatenate([current, current, np.asarray(mw._get_pos_goal(), dtype=np.float64)])
        _, info = mw.evaluate_state(obs, self._last_action.astype(np.float32))
        return bool(info['success'])


    # -- jobs of several workcells ----------------------------------------------------------------
    def carried_placements(self) -> dict[str, np.ndarray]:
        """Meta-World's placement vector of every object this workcell was entered with from an earlier
        one (or built with: ``placements``), by object: with the joints, what rebuilds the scene."""
        out = {name: np.array(vector) for name, vector in self._placements.items()}
        out.update({name: state.rand_vec.copy() for name, state in self._entered_with.items()
                    if state.rand_vec is not None})
        return out

    def object_states(self) -> dict[str, Any]:
        """Every station's object as the scene holds it now (:class:`legion_kuka.job.ObjectState`, by
        object)."""
        mujoco.mj_forward(self.model, self.data)
        states = {}
        for station in self._stations.values():
            station.pull(self.model, self.data)
            states[station.object] = station.state()
        self._stale = True  # the active station's shadow is refreshed on its next read
        return states

    def enter(self, task: str) -> str:
        """Make ``task`` the active station: ``'station'`` where it is one of this workcell's (nothing
        moves; the arm gets there by a transit), else, in a job, ``'scene'``: the next workcell of the
        plan with that station is built, every object's state carried into it (:mod:`legion_kuka.job`),
        and the arm stands at ``task``'s start. ``ValueError``: no workcell of the job has it."""
        if task in self._stations:
            self.select(task)
            return 'station'
        if self.plan is None:
            self._station(task)  # raises: not a station
        anywhere = [k for k, plan in enumerate(self.plan) if task in plan.stations]
        following = [k for k in anywhere if k > self.workcell_index]  # steps run in order
        if not (following or anywhere):
            raise ValueError(f'no workcell of the job has a station {task!r}; its steps: '
                             f'{", ".join(t for plan in self.plan for t in plan.stations)}')
        self._carried.update(self.object_states())
        index = (following or anywhere)[0]
        self.workcell_index = index
        self.tasks = self.plan[index].stations
        self.yaws = station_yaws(len(self.tasks), self._spacing_deg)
        self._cell_built, self._stations = False, {}
        self._entered_with = dict(self._carried)
        self.reset(task=task, seed=self.seed)
        return 'scene'


# --------------------------------------------------------------------------------------------------
# Moving between stations


def min_jerk_duration(delta: np.ndarray, velocity: np.ndarray, acceleration: np.ndarray) -> float:
    """Shortest duration of a minimum-jerk joint move by ``delta`` whose peak velocity (1.875 x the mean)
    and peak acceleration (5.774 x delta / T^2) stay within the limits."""
    delta = np.abs(np.asarray(delta, dtype=float))
    by_velocity = 1.875 * delta / np.asarray(velocity, dtype=float)
    by_acceleration = np.sqrt(5.7735 * delta / np.asarray(acceleration, dtype=float))
    return float(max(by_velocity.max(initial=0.0), by_acceleration.max(initial=0.0)))


class Transit:
    """A joint path from one station to the next: pull the tcp back towards the base, lift it straight
    up, swing A1 over the next station, move over its start and go straight down (see module).

    Args:
        q_from: where the arm is (rad).
        q_to: where the next station's task starts (rad), e.g. :meth:`WorkcellTwin.start_posture`.
        limits: :class:`~legion_kuka.safety.SafetyLimits`; the path stays inside their joint range and
            is timed at ``speed`` times their velocity and acceleration limits.
        kinematics: tcp kinematics (base frame) for the lift.
        control_period_s: one target per control cycle.
        lift_to_m: height of the tcp (base frame) to swing at, e.g. :meth:`WorkcellTwin.swing_height`;
            at most :data:`BOX_TOP_CLEARANCE_M` below the top of ``limits``' box; a tcp already
            higher stays where it is.
    """

    def __init__(self, q_from: Any, q_to: Any, limits: Any, kinematics: Any, *, control_period_s: float,
                 lift_to_m: float, speed: float = 0.9) -> None:
        if not 0 < speed <= 1:
            raise ValueError(f'speed must be in (0, 1], got {speed}')
        lower, upper = limits.lower, limits.upper
        q_from = np.asarray(q_from, dtype=float)
        q_to = np.clip(np.asarray(q_to, dtype=float), lower, upper)
        velocity, acceleration = speed * limits.velocity, speed * limits.acceleration
        if limits.workspace_high is not None:  # the filter would hold a lift out of its box
            lift_to_m = min(float(lift_to_m), float(limits.workspace_high[2]) - BOX_TOP_CLEARANCE_M)
        if np.max(np.abs(q_to - q_from)) <= ALREADY_THERE_RAD:  # the same station: no lift and swing
            self._timed([q_from, q_to], velocity, acceleration, control_period_s)
            return
        position, rotation = kinematics.fk(q_from)
        arrival, arrival_rotation = kinematics.fk(q_to)
        height = max(float(position[2]), float(arrival[2]), float(lift_to_m))

        def above(point, rot, q_start, what):
            # Straight up; far out, the tool-down arm reaches the height only closer to the base.
            for inwards in (1.0, 0.9, 0.8, 0.7, 0.6):
                target = np.array([point[0] * inwards, point[1] * inwards, height])
                result = kinematics.ik(target, q_start, target_rot=rot, max_iters=300)
                q = np.asarray(result.q, dtype=float)
                if bool(np.all(result.success)) and np.all((q >= lower) & (q <= upper)):
                    return q
            raise ValueError(f'no posture within the joint limits puts the tcp {height:.2f} m high above '
                             f'{what} {np.round(point, 3).tolist()}')

        # Back out towards the base first: a task may end with the hand under part of its object (inside
        # the window's frame), and the objects stand beyond the hand, seen from the base.
        retreat = q_from
        radius = float(np.hypot(position[0], position[1]))
        for inner in RETREAT_RADII_M:
            if inner >= radius:
                break
            target = np.array([position[0] * inner / radius, position[1] * inner / radius,
                               min(float(position[2]) + RETREAT_RAISE_M, height)])
            result = kinematics.ik(target, q_from, target_rot=rotation, max_iters=300)
            q = np.asarray(result.q, dtype=float)
            if bool(np.all(result.success)) and np.all((q >= lower) & (q <= upper)):
                retreat, position = q, target
                break
        lift = above(position, rotation, retreat, 'the arm at')
        swing = lift.copy()
        swing[0] = q_to[0]
        over = above(arrival, arrival_rotation, swing, 'the station\'s start at')
        path = [q_from, retreat, lift, swing, over, q_to]
        self._timed([q for k, q in enumerate(path) if k == 0 or not np.array_equal(q, path[k - 1])],
                    velocity, acceleration, control_period_s)

    def _timed(self, waypoints, velocity, acceleration, control_period_s) -> None:
        self.waypoints = waypoints
        targets = []
        for start, end in zip(self.waypoints[:-1], self.waypoints[1:], strict=True):
            duration = min_jerk_duration(end - start, velocity, acceleration)
            cycles = max(1, math.ceil(duration / control_period_s))
            s = np.arange(1, cycles + 1) / cycles
            blend = 10 * s**3 - 15 * s**4 + 6 * s**5
            targets.append(start + blend[:, None] * (end - start))
        self.targets = np.concatenate(targets)
        self.duration_s = len(self.targets) * control_period_s


@dataclass
class TransitResult:
    reached: bool  # the arm ended within tolerance of the station's start posture
    cycles: int
    error_rad: float = 0.0  # largest joint distance from the start posture at the end
    duration_s: float = 0.0  # simulated time it took
    safety_interventions: int = 0
    safety_reasons: dict[str, int] = field(default_factory=dict)


def station_start(twin: WorkcellTwin, limits: Any, task: str | None = None) -> np.ndarray:
    """Where a transit to ``task``'s station ends: its task's start posture, or, where that stands
    outside ``limits`` (:func:`legion_kuka.chain.posture_inside_limits`), the nearest posture inside."""
    from legion_kuka.chain import posture_inside_limits

    start = twin.start_posture(task)
    inside = posture_inside_limits(twin, limits, q=start)
    return start if inside is None else inside


def transit(twin: WorkcellTwin, task: str, limits: Any, *, settle_cycles: int = TRANSIT_SETTLE_CYCLES,
            tolerance_rad: float = math.radians(1.0)) -> TransitResult:
    """Move the twin's arm to ``task``'s station start posture (brought inside ``limits``) through a
    fresh safety filter, opening the gripper on the way, then make that station the active one."""
    from legion_kuka.chain import command_through_filter
    from legion_kuka.kinematics import IiwaKinematics
    from legion_kuka.safety import SafetyFilter

    period = twin.control_period_s
    tcp = IiwaKinematics(tool='tcp')
    twin.select(task)
    goal = station_start(twin, limits, task)
    path = Transit(twin.joint_state().position, goal, limits, tcp, control_period_s=period,
                   lift_to_m=twin.swing_height())
    safety = SafetyFilter(limits, tcp, control_period_s=period, stale_after_s=3 * period)
    twin.set_gripper(TRANSIT_GRIPPER)
    result = TransitResult(reached=False, cycles=0)
    for target in [*path.targets, *[goal] * settle_cycles]:
        command_through_filter(safety, twin, target, result)
        twin.step(1)
        result.cycles += 1
    result.duration_s = result.cycles * period
    result.error_rad = float(np.max(np.abs(twin.joint_state().position - goal)))
    result.reached = result.error_rad <= tolerance_rad
    return result


def workcell_workspace(twin: WorkcellTwin, margin_m: float = 0.02,
                       floor_margin_m: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """The safety filter's tcp box for moving between stations: the smallest base-frame box around
    every station's task box (:func:`legion_kuka.safety.hand_box_workspace`)."""
    from legion_kuka.safety import hand_box_workspace

    boxes = [hand_box_workspace(*twin.station_hand_box(task), twin.station_frame(task), twin.hand_offset,
                                margin_m=margin_m, floor_margin_m=floor_margin_m) for task in twin.tasks]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


@dataclass
class SequenceStep:
    """One step of a sequence through the workcell."""

    task: str
    success: bool
    transit: TransitResult
    episode: Any  # legion_kuka.chain.EpisodeResult


def jog_in(twin: WorkcellTwin):
    """The safety limits of ``twin``'s current workcell (its box), with the arm jogged inside them where
    it stands outside, as an operator does before the chain starts a task (a new workcell: again)."""
    from legion_kuka.chain import posture_inside_limits
    from legion_kuka.safety import SafetyLimits

    limits = SafetyLimits.from_description(workspace=workcell_workspace(twin))
    inside = posture_inside_limits(twin, limits)
    if inside is not None:
        twin.reset(posture=inside)
    return limits


def run_sequence(steps: Sequence[tuple[str, Callable[[np.ndarray], Any]]], *, seed: int = 0,
                 layout: str = 'legion12', max_steps: int = 150, stations: Sequence[str] | None = None,
                 progress: bool = False) -> list[SequenceStep]:
    """A multi-step job on one workcell: for each ``(task, policy)``, move the arm to the task's station
    (:func:`transit`), then run the policy from there through the chain (:class:`~legion_kuka.chain.
    ChainRunner`: real2sim, sim2real, the safety filter with the station's box) for up to ``max_steps``
    policy steps. The stations are ``stations`` or :func:`station_order` of the steps' tasks, reset once
    for ``seed``: what one step moves stays moved for the next. Without ``stations``, a job one
    workcell does not hold runs as a sequence of workcells (:mod:`legion_kuka.job`), every object
    carried from one to the next; at a change of workcell the arm starts at the step's start (the
    transit there is then a few cycles of settling).
    """
    from legion_kuka.chain import ChainRunner
    from legion_kuka.job import plan_workcells

    if not steps:
        raise ValueError('a sequence needs at least one step')
    job = [task for task, _ in steps]
    if stations is None and len(plan_workcells(job)) > 1:
        twin = WorkcellTwin(task=job[0], job=job, seed=seed)
    else:
        twin = WorkcellTwin(list(stations) if stations is not None else station_order(job), task=job[0],
                            seed=seed)

    limits = jog_in(twin)
    results = []
    indexed = list(enumerate(steps))
    if progress:
        from tqdm import tqdm
        indexed = tqdm(indexed, desc='workcell sequence', unit='step')
    for _, (task, policy) in indexed:
        if twin.plan is not None and twin.enter(task) == 'scene':
            limits = jog_in(twin)  # the next workcell, its own box
        moved = transit(twin, task, limits)
        runner = ChainRunner(policy, task, seed=seed, layout=layout, max_steps=max_steps, twin=twin,
                             reset_twin=False)
        episode = runner.run_from_here()
        results.append(SequenceStep(task, episode.success, moved, episode))
    return results
