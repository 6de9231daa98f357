"""What the ``policy`` node decides, without ROS: which action, if any, for the newest observation.

:class:`PolicyRunner` holds the active step, the newest observation of each layout (12: LEGION's, 39:
Meta-World's) and the loaded LEGION policy (or builds Meta-World's scripted experts), and answers
:meth:`PolicyRunner.act` with an action in [-1, 1]^4 or with nothing, in which case ``sim2real`` holds
the arm:

* no active step;
* no observation of the policy's layout in this step, or it is older than ``observation_timeout_s``;
* the policy cannot act on the task (no policy loaded, a task it has not learnt, no expert for it) or
  produced a non-finite or misshaped action: a *problem*, handed back once until another one comes.

A new step (task, sequence or index) forgets the previous step's observations: they show another scene.
Full39 LEGION policies see Meta-World's frame stacking at the policy's rate (:class:`PolicyStepFrames`).

It lives here rather than in legion_core for that frame stacking, which is the arm's (observations
arrive per control cycle, not per env step). Loading is the node's (a thread and status), the
bookkeeping of which file is loaded is here (:meth:`PolicyRunner.begin_load`, :meth:`checkpoint_changed`).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from legion_kuka.real2sim import PolicyStepFrames

STEP_KEYS = ('task', 'sequence_id', 'index')  # what makes a step another step


def expert_for(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """The scripted policy ``obs39 -> action`` for ``task`` on this arm: the approach written for the
    KUKA's gripper where there is one, else Meta-World's expert (:func:`legion_kuka.chain.expert_policy`,
    the one home of that choice; imported here lazily, since it brings the twin's MuJoCo)."""
    from legion_kuka.chain import expert_policy

    try:
        return expert_policy(task, gripper_approaches=True)
    except ValueError as error:
        raise KeyError(str(error)) from None


def demonstrator_for(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """The scripted policy whose episodes demonstrate ``task`` on the twin (``train.demo_episodes``):
    :func:`expert_for`'s, except where an approach keeps a state that a policy of the observation
    cannot copy and Meta-World's expert works (:data:`legion_kuka.approaches.DEMONSTRATE_WITH_METAWORLD`)."""
    from legion_kuka.approaches import DEMONSTRATE_WITH_METAWORLD
    from legion_kuka.chain import expert_policy

    if task in DEMONSTRATE_WITH_METAWORLD:
        return expert_policy(task, gripper_approaches=False)
    return expert_for(task)


def default_checkpoint() -> str:
    """The shipped policy artefact, if legion_core ships one ('' otherwise)."""
    from legion_core.policy import default_policy_path

    path = default_policy_path()
    return str(path) if path else ''


def layout_size(policy) -> int:
    """The observation length a LEGION policy acts on: its training layout's (legion12 for an artefact
    that names none)."""
    from legion_core.envs import LAYOUTS

    return LAYOUTS[getattr(policy, 'layout', 'legion12')]


def file_stamp(path: str):
    """(mtime_ns, size) of a checkpoint file, or of the newest file of a run directory; None if absent."""
    try:
        target = Path(path)
        if target.is_dir():  # a run directory: the newest file in it decides
            stats = [p.stat() for p in target.rglob('*') if p.is_file()]
            return max(((s.st_mtime_ns, s.st_size) for s in stats), default=None)
        stat = os.stat(path)
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return None


@dataclass(frozen=True)
class Decision:
    """The outcome of one :meth:`PolicyRunner.act`: an action to publish, or a new problem, or neither."""

    action: np.ndarray | None = None
    source_ns: int | None = None     # the stamp of the observation the action was computed from
    problem: str | None = None       # set once per problem, not at the policy rate


class PolicyRunner:
    def __init__(self, policy_type: str = 'legion', observation_timeout_s: float = 0.5,
                 deterministic: bool = True, make_expert: Callable[[str], Any] = expert_for) -> None:
        if policy_type not in ('legion', 'expert'):
            raise ValueError(f'policy_type must be legion or expert, got {policy_type!r}')
        self.policy_type = policy_type
        self.observation_timeout_s = observation_timeout_s
        self.deterministic = deterministic
        self.make_expert = make_expert
        self.experts: dict[str, Any] = {}
        self.policy = None                   # the loaded LEGION policy artefact
        self.policy_path = ''
        self.policy_stamp = None             # file_stamp of the loaded checkpoint
        self._loading = False
        self._lock = threading.Lock()        # loads finish on another thread
        self.step: dict | None = None
        self._obs: dict[int, tuple[np.ndarray, int | None, float] | None] = {12: None, 39: None}
        self._frames = PolicyStepFrames()
        self._problem: str | None = None
        self.actions = 0

    # -- the policy -------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return list(getattr(self.policy, 'tasks', []))

    def begin_load(self) -> bool:
        """Claim the one loading slot; False while another checkpoint is loading."""
        with self._lock:
            if self._loading:
                return False
            self._loading = True
            return True

    def loaded(self, policy, path: str, stamp) -> None:
        """The new policy acts from the next :meth:`act` on; ``policy`` None: the load failed."""
        with self._lock:
            if policy is not None:
                self.policy, self.policy_path, self.policy_stamp = policy, path, stamp
            self._loading = False

    def checkpoint_changed(self) -> bool:
        """Whether the loaded checkpoint changed on disk since; True once per change (even if that
        reload fails), never while loading."""
        if self.policy is None or not self.policy_path or self._loading:
            return False
        stamp = file_stamp(self.policy_path)
        if stamp is None or stamp == self.policy_stamp:
            return False
        self.policy_stamp = stamp
        return True

    def observation_size(self) -> int:
        """39 for the experts, else the length of the LEGION policy's training layout."""
        return 39 if self.policy_type == 'expert' else layout_size(self.policy)

    # -- inputs -----------------------------------------------------------------------------------
    def start_step(self, step: dict) -> str | None:
        """A new active step (``task`` None: none). Returns a new problem, e.g. no expert for its task."""
        if [step.get(k) for k in STEP_KEYS] != [(self.step or {}).get(k) for k in STEP_KEYS]:
            self._obs = {12: None, 39: None}  # the previous step's scene is not this step's observation
            self._frames.reset()
        self.step = step if step.get('task') else None
        self._problem = None
        task = self.step and self.step['task']
        if task is not None and self.policy_type == 'expert':
            try:  # a fresh one (an approach keeps its phase), now, not in the first control cycle of the step
                self.experts[task] = self.make_expert(task)
            except KeyError as error:
                return self._new_problem(str(error.args[0]))
        return None

    def observe(self, size: int, data: np.ndarray, source_ns: int | None, now_s: float) -> None:
        """Keep the newest observation of ``size`` (12 or 39), received at ``now_s``."""
        self._obs[size] = (data, source_ns, now_s)

    # -- acting -----------------------------------------------------------------------------------
    def act(self, now_s: float) -> Decision:
        if self.step is None:
            return Decision()
        latest = self._obs[self.observation_size()]
        if latest is None or now_s - latest[2] > self.observation_timeout_s:
            return Decision()  # no fresh observation: publish nothing, sim2real holds
        data, source_ns, _ = latest
        try:
            action = self._action(self.step['task'], data)
        except KeyError as error:
            return Decision(problem=self._new_problem(str(error.args[0]) if error.args else str(error)))
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,) or not np.isfinite(action).all():
            return Decision(problem=self._new_problem(f'the policy produced an invalid action '
                                                      f'{action.tolist()}'))
        self.actions += 1
        return Decision(action=np.clip(action, -1.0, 1.0), source_ns=source_ns)

    def _action(self, task: str, obs: np.ndarray) -> np.ndarray:
        if self.policy_type == 'expert':
            expert = self.experts.get(task)  # made by start_step, never in a control cycle
            if expert is None:
                raise KeyError(f'no scripted expert for {task}')
            return expert(obs)
        policy = self.policy
        if policy is None:
            raise KeyError('no policy loaded yet')
        tasks = list(getattr(policy, 'tasks', []))
        if tasks and task not in tasks:
            raise KeyError(f'the loaded policy has not learnt {task} (it knows {", ".join(tasks)})')
        if obs.size == 39:  # the previous frame of the previous policy step, as in training
            obs = self._frames.observe(obs)
        return np.asarray(policy.act(obs[None, :].astype(np.float32), task,
                                     deterministic=self.deterministic)).reshape(-1)

    def _new_problem(self, problem: str) -> str | None:
        if problem == self._problem:
            return None
        self._problem = problem
        return problem
