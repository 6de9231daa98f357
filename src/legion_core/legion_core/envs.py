"""Meta-World task environments for LEGION: one task, N copies stepped together, batched evaluation.

Observations
    Every embodiment produces Meta-World v3's 39-d observation (hand xyz 0:3, gripper 3, object 1 xyz
    4:7 + quaternion 7:11, object 2 xyz 11:14 + quaternion 14:18, the previous frame 18:36, goal xyz
    36:39). A *layout* projects it: ``legion12`` keeps hand, object 1, object 2 and goal positions
    (the original's 12-d observation, legion-original.md §4.2), ``full39`` keeps everything (what
    Meta-World's scripted experts need).

Embodiments
    ``sawyer`` is built in: Meta-World's MT1-style construction (``metaworld.MT1(task, seed=seed)``
    then ``env.set_task(variant)``), which makes the goal visible in the observation. Other
    embodiments come from the ``legion.embodiments`` entry-point group (``kuka`` from legion_kuka):
    ``factory(task_name, seed) -> env`` returns an object with Meta-World's ``reset() -> (obs39,
    info)`` and ``step(a4) -> (obs39, reward, terminated, truncated, info)`` with ``info['success']``.

Goals
    ``goal='fixed'`` is the original's setting (§4.3): one of Meta-World's 50 goal variants is chosen
    with the seed and reused by every episode, so training and evaluation with the same seed see the
    same object and goal placement. ``goal='random'`` draws a new placement at every reset from the
    task's reset space (the distribution Meta-World's variants come from), with each copy's own seeded
    generator.

Copies (``TaskVectorEnv``)
    The N copies of a task are stepped in this process: a Meta-World step costs ~0.3-0.7 ms, so
    subprocess IPC would cost more than it saves. Copy i is seeded with ``copy_seeds(seed, N)[i]``
    (distinct per copy). Under ``goal='fixed'`` every copy shares the task's fixed goal variant (like
    the original's single env); because Meta-World is deterministic, copies then differ only through
    the actions they receive. Under ``goal='random'`` each copy draws its own goals; ``copy_seed``
    (default: the seed) seeds the copies apart from the goal variant, so that the trainer's evaluation
    copies draw goals its training copies never see (held-out episodes). A copy's transitions depend
    only on the seed, its copy seed and its actions, so the copies can be split over worker processes
    (``legion_core.env_workers``) without changing them.

Rewards
    Meta-World v3's shaped rewards (each step in [0, 10]), plus ``success_bonus`` (default 0) on every
    step where the task counts as solved, times ``reward_scale`` (default 1). The bonus is for tasks
    whose shaped reward is flat at the edge of success: push pays 10 inside its 5 cm radius and up to
    as much just outside it, so nothing there rewards the last millimetres. The original's running
    reward normaliser (mtenv ``NormalizedEnvWrapper``) is not reproduced.

Speed
    ``fast_observation=True`` (the default) gives stock Meta-World envs an exact, faster observation
    (``accelerate_observation``): the same 39 numbers, bit for bit, in about half the time per step
    on tasks whose object quaternions go through scipy. Beyond the Meta-World step, the vector env
    adds array bookkeeping only (~2% of a step).

Episodes
    Truncated at ``episode_length`` steps (150, the original's). Meta-World never terminates, so every
    transition should be bootstrapped; ``info['final_obs']`` carries the true last observation of an
    episode that ended (the fix of the original's terminal-observation bug, §8.3).
"""
from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from legion_core.tasks import normalise_task_name

EMBODIMENT_GROUP = 'legion.embodiments'
BUILTIN_EMBODIMENT = 'sawyer'
LAYOUTS: dict[str, int] = {'legion12': 12, 'full39': 39}
GOALS: tuple[str, ...] = ('fixed', 'random')
RAW_OBS_DIM = 39
ACTION_DIM = 4
# Hand xyz, object 1 xyz, object 2 xyz, goal xyz inside Meta-World's 39-d observation.
LEGION12_INDEX = np.r_[0:3, 4:7, 11:14, 36:39]
GOAL_SLICE = slice(9, 12)  # where the goal sits in the legion12 layout (36:39 in full39)

Policy = Callable[[np.ndarray], Any]


def _check_layout(layout: str) -> int:
    if layout not in LAYOUTS:
        raise ValueError(f'unknown observation layout {layout!r}; valid layouts: '
                         + ', '.join(f'{name} ({dim}-d)' for name, dim in LAYOUTS.items()))
    return LAYOUTS[layout]


def project_observation(obs39: np.ndarray, layout: str) -> np.ndarray:
    """Meta-World's observation(s) [..., 39] in the given layout [..., D] (a new float32 array)."""
    _check_layout(layout)
    obs39 = np.asarray(obs39)
    if obs39.ndim == 0 or obs39.shape[-1] != RAW_OBS_DIM:
        raise ValueError(f'expected Meta-World observations of shape [..., {RAW_OBS_DIM}], '
                         f'got shape {obs39.shape}')
    if layout == 'full39':
        return obs39.astype(np.float32, copy=True)
    return obs39[..., LEGION12_INDEX].astype(np.float32, copy=False)


def goal_slice(layout: str) -> slice:
    """Where the goal xyz sits in an observation of this layout."""
    _check_layout(layout)
    return GOAL_SLICE if layout == 'legion12' else slice(36, 39)


# --------------------------------------------------------------------------------------------------
# Embodiments

@functools.lru_cache(maxsize=64)
def _mt1_variants(task_name: str, seed: int) -> tuple:
    """Meta-World's 50 goal variants of a task for a seed (cached: building them costs ~0.8 s)."""
    import metaworld

    benchmark = metaworld.MT1(task_name, seed=seed)
    return benchmark.train_classes[task_name], tuple(benchmark.train_tasks)


def make_sawyer_env(task_name: str, seed: int):
    """The built-in embodiment: a Meta-World Sawyer env with the goal visible and the seed's variant."""
    env_cls, variants = _mt1_variants(task_name, int(seed))
    env = env_cls()
    # The variant is chosen with the seed (like the original's random.choice over 50 variants).
    env.set_task(variants[int(np.random.default_rng(seed).integers(len(variants)))])
    return env


class _MatrixQuaternion:
    """Stands in for ``scipy.spatial.transform.Rotation`` inside a Meta-World env's
    ``_get_quat_objects``, which only calls ``Rotation.from_matrix(xmat).as_quat()`` on one 3x3
    matrix. scipy spends ~100 µs per call on input checks (a fifth of a Meta-World step); the same
    conversion (Markley's method, the branch scipy picks, the same xyzw order and sign) costs a few
    µs in plain floats. Anything else goes to scipy."""

    __slots__ = ('_quaternion',)
    _IDENTITY = np.eye(3)

    def __init__(self, quaternion):
        self._quaternion = quaternion

    @staticmethod
    def from_matrix(matrix, **kwargs):
        from scipy.spatial.transform import Rotation

        matrix = np.asarray(matrix, dtype=np.float64)
        if kwargs or matrix.shape != (3, 3) or \
                np.abs(matrix @ matrix.T - _MatrixQuaternion._IDENTITY).max() > 1e-12:
            return Rotation.from_matrix(matrix, **kwargs)  # scipy re-orthogonalises such input
        (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = matrix.tolist()
        trace = m00 + m11 + m22
        decision = (m00, m11, m22, trace)
        choice = decision.index(max(decision))  # the first maximum, like argmax
        if choice == 0:
            q = (1 - trace + 2 * m00, m10 + m01, m20 + m02, m21 - m12)
        elif choice == 1:
            q = (m10 + m01, 1 - trace + 2 * m11, m21 + m12, m02 - m20)
        elif choice == 2:
            q = (m20 + m02, m21 + m12, 1 - trace + 2 * m22, m10 - m01)
        else:
            q = (m21 - m12, m02 - m20, m10 - m01, 1 + trace)
        norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
        return _MatrixQuaternion(np.array(q) / norm)

    def as_quat(self, *args, **kwargs):
        if args or kwargs:
            from scipy.spatial.transform import Rotation

            return Rotation.from_quat(self._quaternion).as_quat(*args, **kwargs)
        return self._quaternion.copy()


def _fast_hand_and_objects(env) -> Callable[[], np.ndarray]:
    """Meta-World's ``_get_curr_obs_combined_no_goal`` (hand xyz, gripper opening, objects' xyz and
    quaternions padded to 14) without its per-step name look-ups, splits and stacks."""
    xpos = env.data.xpos
    hand, right, left = (env.model.body(name).id for name in ('hand', 'rightclaw', 'leftclaw'))
    get_pos = env._get_pos_objects

    def combined() -> np.ndarray:
        out = np.zeros(18)
        out[0:3] = xpos[hand]
        gap = xpos[right] - xpos[left]
        out[3] = min(max(math.sqrt(gap @ gap) / 0.1, 0.0), 1.0)
        pos, quat = get_pos(), env._get_quat_objects()
        for i in range(len(pos) // 3):
            out[4 + 7 * i:7 + 7 * i] = pos[3 * i:3 * i + 3]
            out[7 + 7 * i:11 + 7 * i] = quat[4 * i:4 * i + 4]
        return out

    return combined


def accelerate_observation(env) -> bool:
    """Give a stock Meta-World Sawyer env an exact, faster observation (about 2x fewer µs per step
    on tasks whose objects' quaternions go through scipy). Only the instance changes: its own
    ``_get_curr_obs_combined_no_goal`` and ``_get_quat_objects`` are replaced by equivalents; an env
    whose class overrides them in another way is left alone. Returns whether anything changed."""
    from metaworld.sawyer_xyz_env import SawyerXYZEnv

    cls = type(env)
    if not isinstance(env, SawyerXYZEnv) or \
            cls._get_curr_obs_combined_no_goal is not SawyerXYZEnv._get_curr_obs_combined_no_goal or \
            cls.get_endeff_pos is not SawyerXYZEnv.get_endeff_pos:
        return False
    try:
        combined = _fast_hand_and_objects(env)
    except KeyError:  # a model without Meta-World's hand / claw bodies: leave the env as it is
        return False
    quat = cls._get_quat_objects
    names = set(quat.__code__.co_names)
    if 'Rotation' in names and not {'from_quat', 'from_euler', 'from_rotvec', 'as_matrix',
                                    'as_euler', 'as_rotvec', 'apply', 'inv'} & names:
        # The same code with ``Rotation`` bound to the fast conversion, for this instance only.
        fast_globals = {**quat.__globals__, 'Rotation': _MatrixQuaternion}
        function = types.FunctionType(quat.__code__, fast_globals, quat.__name__, quat.__defaults__,
                                      quat.__closure__)
        env._get_quat_objects = types.MethodType(function, env)
    env._get_curr_obs_combined_no_goal = combined
    return True


def available_embodiments() -> list[str]:
    """'sawyer' and every embodiment registered in the ``legion.embodiments`` entry-point group."""
    names = {entry.name for entry in entry_points(group=EMBODIMENT_GROUP)}
    return [BUILTIN_EMBODIMENT, *sorted(names - {BUILTIN_EMBODIMENT})]


def embodiment_factory(name: str) -> Callable[[str, int], Any]:
    """The ``factory(task_name, seed) -> env`` of an embodiment; an unknown name → ValueError."""
    if name == BUILTIN_EMBODIMENT:
        return make_sawyer_env
    for entry in entry_points(group=EMBODIMENT_GROUP):
        if entry.name == name:
            try:
                return entry.load()
            except Exception as error:  # a broken plugin must say which package to fix
                raise RuntimeError(f'embodiment {name!r} is registered ({entry.value}) but cannot be '
                                   f'loaded: {type(error).__name__}: {error}') from error
    raise ValueError(f'unknown embodiment {name!r}; available: {", ".join(available_embodiments())} '
                     f'(more come from the {EMBODIMENT_GROUP!r} entry-point group)')


def copy_seeds(seed: int, num_envs: int) -> list[int]:
    """Distinct, reproducible 31-bit seeds for the copies of a vector env."""
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(num_envs) >> 1]


def _build_env(task: str, embodiment: str, episode_length: int, goal: str, seed: int, copy_seed: int,
               fast_observation: bool = True):
    env = embodiment_factory(embodiment)(task, seed)
    if fast_observation:
        accelerate_observation(env)
    if hasattr(env, 'max_path_length'):
        # Meta-World refuses to step past its own limit (500); ours is the one that counts.
        env.max_path_length = max(int(env.max_path_length), episode_length)
    if goal == 'random':
        if not all(hasattr(env, attr) for attr in ('_freeze_rand_vec', 'seeded_rand_vec', 'seed')):
            raise ValueError(f'embodiment {embodiment!r} does not support goal=\'random\' (its env has no '
                             'Meta-World goal sampler); use goal=\'fixed\'')
        env._freeze_rand_vec = False  # sample a new goal at every reset ...
        env.seeded_rand_vec = True  # ... from the env's own generator, not numpy's global one
    if hasattr(env, 'seed'):
        env.seed(copy_seed)
    return env


def _check_common(task: str, embodiment: str, layout: str, episode_length: int, goal: str) -> str:
    _check_layout(layout)
    if goal not in GOALS:
        raise ValueError(f'unknown goal mode {goal!r}; valid: {", ".join(GOALS)}')
    if int(episode_length) != episode_length or episode_length < 1:
        raise ValueError(f'episode_length must be a positive integer, got {episode_length!r}')
    if embodiment != BUILTIN_EMBODIMENT and embodiment not in available_embodiments():
        embodiment_factory(embodiment)  # raises the ValueError listing the available ones
    return normalise_task_name(task)


# --------------------------------------------------------------------------------------------------
# Vector env

class TaskVectorEnv:
    """N copies of one task, stepped together in this process, with auto-reset.

    ``reset() -> obs [N, D] float32``; ``step(actions [N, 4]) -> (obs, reward [N], terminated [N],
    truncated [N], info)``. ``info`` holds ``success`` [N] bool (this step), ``final_obs`` [N, D] (the
    true last observation where an episode ended, else equal to ``obs``), ``episode_success`` [N] bool
    (any success during the episode), ``episode_return`` [N] and ``episode_length`` [N] int (these
    three valid where ``terminated | truncated``). Ended copies are reset at once and ``obs`` holds
    their first observation of the next episode. With ``autoreset=False`` ended copies stay idle
    (not stepped, reward 0, never done again) until the next ``reset()``; ``active`` tells which
    copies are still running.
    """

    def __init__(self, task: str, num_envs: int, *, embodiment: str = BUILTIN_EMBODIMENT,
                 layout: str = 'legion12', episode_length: int = 150, goal: str = 'fixed', seed: int = 0,
                 reward_scale: float = 1.0, success_bonus: float = 0.0, autoreset: bool = True,
                 fast_observation: bool = True, copy_seed: int | None = None,
                 seeds: list[int] | None = None):
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f'num_envs must be a positive integer, got {num_envs!r}')
        if seeds is not None and len(seeds) != num_envs:
            raise ValueError(f'seeds must give one seed per copy ({num_envs}), got {len(seeds)}')
        self.task = _check_common(task, embodiment, layout, episode_length, goal)
        self.num_envs = int(num_envs)
        self.embodiment, self.layout, self.goal, self.seed = embodiment, layout, goal, int(seed)
        self.episode_length = int(episode_length)
        self.reward_scale = float(reward_scale)
        self.success_bonus = float(success_bonus)
        self.autoreset = bool(autoreset)
        self.obs_dim = LAYOUTS[layout]
        self.action_dim = ACTION_DIM
        # The copies' own generators (goals under goal='random'): from ``copy_seed`` when given, so that
        # evaluation copies can draw goals that training copies of the same run never see. ``seeds``
        # (explicit, one per copy) lets a worker build its share of a larger env's copies exactly.
        self.seeds = [int(s) for s in seeds] if seeds is not None else \
            copy_seeds(self.seed if copy_seed is None else copy_seed, self.num_envs)
        self.envs = [_build_env(self.task, embodiment, self.episode_length, goal, self.seed, s,
                                fast_observation) for s in self.seeds]
        self._index = None if layout == 'full39' else LEGION12_INDEX
        self._raw = np.zeros((self.num_envs, RAW_OBS_DIM))
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._return = np.zeros(self.num_envs)
        self._success = np.zeros(self.num_envs, dtype=bool)
        self.active = np.zeros(self.num_envs, dtype=bool)

    @property
    def raw_observations(self) -> np.ndarray:
        """The copies' current observations in full (39-d, whatever ``layout``): what a scripted expert
        reads (:mod:`legion_core.demos`). Read-only view, valid until the next step."""
        view = self._raw.view()
        view.flags.writeable = False
        return view

    def _project(self, raw: np.ndarray) -> np.ndarray:
        return (raw if self._index is None else raw[..., self._index]).astype(np.float32)

    def _reset_copy(self, i: int) -> None:
        obs, _info = self.envs[i].reset()
        self._raw[i] = obs
        self._elapsed[i] = 0
        self._return[i] = 0.0
        self._success[i] = False
        self.active[i] = True

    def end(self, copies) -> None:
        """End the episodes of ``copies`` (indices) now, as if their time limit had come: they are stepped
        no more until the next ``reset()``. For envs built with ``autoreset=False`` (an evaluation that
        has seen what it needs)."""
        if self.autoreset:
            raise RuntimeError('end() is for envs built with autoreset=False: an autoreset copy never ends')
        self.active[np.asarray(copies, dtype=np.int64)] = False

    def reseed(self) -> None:
        """Seed every copy's generator again with its own seed: the next episodes repeat those after
        construction (an evaluation on the same goals each time, whatever ran before)."""
        for env, seed in zip(self.envs, self.seeds, strict=True):
            if hasattr(env, 'seed'):
                env.seed(seed)

    def reset(self) -> np.ndarray:
        """Start a new episode in every copy; the observations [N, D] float32."""
        for i in range(self.num_envs):
            self._reset_copy(i)
        return self._project(self._raw)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if not self.active.any():
            raise RuntimeError('no copy is running: call reset() first (and, with autoreset=False, after '
                               'every copy has ended)')
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, ACTION_DIM):
            raise ValueError(f'expected actions of shape ({self.num_envs}, {ACTION_DIM}), '
                             f'got {actions.shape}')
        # Meta-World clips the hand part itself but passes the gripper torque straight to MuJoCo.
        actions = np.clip(actions, -1.0, 1.0)
        n = self.num_envs
        reward = np.zeros(n)
        success = np.zeros(n, dtype=bool)
        terminated = np.zeros(n, dtype=bool)
        raw = self._raw
        for i, env in enumerate(self.envs):
            if not self.active[i]:
                continue
            obs, r, term, _trunc, info = env.step(actions[i])
            raw[i] = obs
            reward[i] = r
            success[i] = info['success']
            terminated[i] = term
        reward = (reward + self.success_bonus * success) * self.reward_scale
        active = self.active
        self._elapsed += active
        self._return += reward
        self._success |= success
        truncated = active & ~terminated & (self._elapsed >= self.episode_length)
        done = terminated | truncated
        obs = self._project(raw)
        info = {
            'success': success,
            'final_obs': obs.copy(),
            'episode_success': self._success.copy(),
            'episode_return': self._return.copy(),
            'episode_length': self._elapsed.copy(),
        }
        if done.any():
            ended = np.flatnonzero(done)
            if self.autoreset:
                for i in ended:
                    self._reset_copy(i)
                obs[ended] = self._project(raw[ended])
            else:
                self.active[ended] = False
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            if hasattr(env, 'close'):
                env.close()

    def __repr__(self) -> str:
        return (f'TaskVectorEnv({self.task!r}, num_envs={self.num_envs}, embodiment={self.embodiment!r}, '
                f'layout={self.layout!r}, episode_length={self.episode_length}, goal={self.goal!r}, '
                f'seed={self.seed})')


class TaskEnv:
    """One copy of a task: ``reset() -> obs [D]``, ``step(a [4]) -> (obs, reward, terminated,
    truncated, info)`` with ``info['success']`` bool; truncated at ``episode_length``. It does not
    reset itself: call ``reset()`` after an episode ends."""

    def __init__(self, task: str, *, embodiment: str = BUILTIN_EMBODIMENT, layout: str = 'legion12',
                 episode_length: int = 150, goal: str = 'fixed', seed: int = 0, reward_scale: float = 1.0,
                 success_bonus: float = 0.0):
        self._vec = TaskVectorEnv(task, 1, embodiment=embodiment, layout=layout,
                                  episode_length=episode_length, goal=goal, seed=seed,
                                  reward_scale=reward_scale, success_bonus=success_bonus, autoreset=False)
        self.task, self.obs_dim, self.action_dim = self._vec.task, self._vec.obs_dim, ACTION_DIM
        self.episode_length = self._vec.episode_length
        self.env = self._vec.envs[0]  # the embodiment's own env (MuJoCo model and data for rendering)

    def reset(self) -> np.ndarray:
        return self._vec.reset()[0]

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f'expected an action of shape ({ACTION_DIM},), got {action.shape}')
        if not self._vec.active[0]:
            raise RuntimeError('the episode has ended (or never started): call reset()')
        obs, reward, terminated, truncated, info = self._vec.step(action[None])
        return (obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                {'success': bool(info['success'][0]), 'episode_success': bool(info['episode_success'][0])})

    def close(self) -> None:
        self._vec.close()


def make_task_env(task: str, *, embodiment: str = BUILTIN_EMBODIMENT, layout: str = 'legion12',
                  episode_length: int = 150, goal: str = 'fixed', seed: int = 0,
                  reward_scale: float = 1.0, success_bonus: float = 0.0) -> TaskEnv:
    """A single-copy env of ``task`` (see the module docstring for the options)."""
    return TaskEnv(task, embodiment=embodiment, layout=layout, episode_length=episode_length, goal=goal,
                   seed=seed, reward_scale=reward_scale, success_bonus=success_bonus)


def make_gymnasium_env(task: str, **kwargs):
    """A ``gymnasium.Env`` over a single-copy :class:`TaskEnv` (same keyword arguments), for libraries
    that take gymnasium environments (stable-baselines3 in ``legion bench``)."""
    import gymnasium as gym

    class TaskGymEnv(gym.Env):
        metadata: dict = {}  # noqa: RUF012 - gymnasium's own attribute

        def __init__(self):
            self.env = make_task_env(task, **kwargs)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.env.obs_dim,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

        def reset(self, *, seed=None, options=None):
            return self.env.reset(), {}

        def step(self, action):
            return self.env.step(np.asarray(action))

        def close(self):
            self.env.close()

    return TaskGymEnv()


# --------------------------------------------------------------------------------------------------
# Evaluation

def evaluate(policy: Policy, task: str, episodes: int = 10, *, num_envs: int | None = None,
             embodiment: str = BUILTIN_EMBODIMENT, layout: str = 'legion12', episode_length: int = 150,
             goal: str = 'fixed', seed: int = 0, env: TaskVectorEnv | None = None,
             until_success: bool = False) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` (obs [N, D] → actions [N, 4]) on ``task``, batched.

    An episode succeeds if ``info['success']`` fires at any step (the original's semantics, §1.7).
    ``until_success`` ends an episode at that step, its outcome known: the same success rate in about
    half the env steps for a learnt policy, each return then summed up to that step.
    Deterministic for a deterministic policy and a given seed; with ``goal='fixed'`` the same seed as
    training evaluates on the training goal, as the original did. Episodes run in rounds of
    ``num_envs`` (default: all at once). ``env`` reuses an existing ``TaskVectorEnv`` built with
    ``autoreset=False`` (saves construction time on repeated evaluations); it is re-seeded first, so every
    evaluation with it runs the same episodes (under ``goal='random'``, the same goals).
    Returns ``{'success_rate', 'mean_return', 'episode_successes', 'episode_returns',
    'episode_success_steps'}``, the last the step (1-based) at which each episode first succeeded, None
    where it never did: how close to its time limit a success came.
    """
    if int(episodes) != episodes or episodes < 1:
        raise ValueError(f'episodes must be a positive integer, got {episodes!r}')
    episodes = int(episodes)
    if env is not None:
        env.reseed()  # the same episodes at every evaluation with this env
    if env is None:
        num_envs = episodes if num_envs is None else num_envs
        env = TaskVectorEnv(task, min(int(num_envs), episodes), embodiment=embodiment, layout=layout,
                            episode_length=episode_length, goal=goal, seed=seed, autoreset=False)
    elif env.autoreset:
        raise ValueError('evaluate() needs a TaskVectorEnv built with autoreset=False')
    successes: list[bool] = []
    returns: list[float] = []
    success_steps: list[int | None] = []
    for _round in range(math.ceil(episodes / env.num_envs)):
        obs = env.reset()
        steps = np.zeros(env.num_envs, dtype=np.int64)
        first = np.zeros(env.num_envs, dtype=np.int64)  # 0: not yet
        outcome: dict[int, tuple[bool, float]] = {}  # per copy: listed in copy order, however they end
        while env.active.any():
            active = env.active.copy()
            actions = np.asarray(policy(obs), dtype=np.float64)
            if actions.shape != (env.num_envs, ACTION_DIM):
                raise ValueError(f'policy returned actions of shape {actions.shape}, expected '
                                 f'({env.num_envs}, {ACTION_DIM}) for observations of shape {obs.shape}')
            obs, _reward, terminated, truncated, info = env.step(actions)
            steps += active
            hit = active & (first == 0) & np.asarray(info['success'], dtype=bool)
            first[hit] = steps[hit]
            ended = terminated | truncated
            if until_success:
                stop = hit & ~ended
                env.end(np.flatnonzero(stop))
                ended = ended | stop
            for i in np.flatnonzero(ended):
                outcome[int(i)] = (bool(info['episode_success'][i]), float(info['episode_return'][i]))
        for i in range(env.num_envs):
            successes.append(outcome[i][0])
            returns.append(outcome[i][1])
            success_steps.append(int(first[i]) if first[i] else None)
    successes, returns, success_steps = successes[:episodes], returns[:episodes], success_steps[:episodes]
    return {
        'success_rate': float(np.mean(successes)),
        'mean_return': float(np.mean(returns)),
        'episode_successes': successes,
        'episode_returns': returns,
        'episode_success_steps': success_steps,
    }
