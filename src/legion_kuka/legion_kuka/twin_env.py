"""Meta-World tasks on the twin, moved as the real arm is moved (``embodiment=twin``).

The ``kuka`` embodiment moves its hand as Meta-World does: a mocap body, welded to the hand, jumps to
each action's target, and the passive arm follows the weld. The real arm is moved otherwise: sim2real
turns each action into joint targets (IK, 10 Hz policy steps over 100 Hz control cycles), the safety
filter rate-limits them (10 % of the datasheet velocities, 1 rad/s² by default) and the joint servo
tracks them. A policy learnt on the mocap hand relies on how that hand moves in contact; measured with
the demo's window-close policy (solved 5/5 in the ``kuka`` env, seeds 0-4): 1/5 through the chain,
3/5 without the safety filter, 0/5 with a compliant arm. The hand that reaches the window frame
stops there on the twin, where the weld dragged it on.

Here each step runs the whole chain of :class:`~legion_kuka.chain.ChainRunner` (the same scene,
sim2real, a fresh safety filter per episode with the task's workspace, the twin's servo), and the
observation, reward and success are Meta-World's own code evaluated on the twin's state. A policy
trained here learns the dynamics it meets on the arm; what it sees is what real2sim reconstructs on
the arm (equal to Meta-World's observation, see ``legion_kuka.real2sim``).

Costs: about 3-4 ms per step on this machine's CPU (IK and 40 physics substeps) against 0.3 ms for
the ``kuka`` env, which is small beside a SAC update. An episode whose safety filter latches its e-stop
(a collision: the arm is not where it was sent) ends there, terminated and unsuccessful, as the real arm
stops until an operator resets it (the drawer policy of ``twin_demo3``, trained before this rule, closed
the drawer once in ten episodes by hitting it hard enough to latch). Goals: the seed's variant, or a
new one at every reset with ``goal='random'`` (Meta-World's sampler, as for the other embodiments).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from legion_kuka.chain import ChainRunner
from legion_kuka.twin import metaworld_task_env


class TwinTaskEnv:
    """One Meta-World task on the twin behind sim2real and the safety filter, with the gymnasium API
    :class:`legion_core.envs.TaskVectorEnv` steps: ``reset() -> (obs39, info)``, ``step(action[4]) ->
    (obs39, reward, terminated, truncated, info)`` with ``info['success']``. Episodes end where the
    caller says (``max_path_length`` is only kept for Meta-World's code).

    Args:
        task, seed: the Meta-World task and its goal variant (the ``kuka`` embodiment's scene).
        runner_kwargs: :class:`~legion_kuka.chain.ChainRunner` options (``policy_rate_hz``,
            ``safety``, ``stiffness``, ...); the defaults are the real arm's chain.
    """

    def __init__(self, task: str, seed: int = 0, **runner_kwargs: Any) -> None:
        self.runner = ChainRunner(None, task, seed=int(seed), layout='full39', stop_on_success=False,
                                  **runner_kwargs)
        self.task = task
        self.twin = self.runner.twin
        self._mw = metaworld_task_env(self.twin.env, task)
        from legion_core.envs import accelerate_observation

        accelerate_observation(self._mw)  # the twin reads the objects through the env's own code
        self.max_path_length = int(self._mw.max_path_length)
        self._record = None
        self._obs = None

    # Meta-World's goal sampler, which legion_core.envs sets for goal='random', lives in the scene's env.
    @property
    def _freeze_rand_vec(self) -> bool:
        return self._mw._freeze_rand_vec

    @_freeze_rand_vec.setter
    def _freeze_rand_vec(self, value: bool) -> None:
        self._mw._freeze_rand_vec = value

    @property
    def seeded_rand_vec(self) -> bool:
        return self._mw.seeded_rand_vec

    @seeded_rand_vec.setter
    def seeded_rand_vec(self, value: bool) -> None:
        self._mw.seeded_rand_vec = value

    def seed(self, seed: int) -> Any:
        return self._mw.seed(seed)

    @property
    def model(self) -> Any:
        return self.twin.model

    @property
    def data(self) -> Any:
        return self.twin.data

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """A new episode: Meta-World's reset of the scene (a new goal under ``goal='random'``), the arm
        brought inside the safety filter's limits where the reset left it outside, a fresh filter."""
        del seed, options  # seeded through seed(), like Meta-World's envs
        self.runner.reset_episode()
        self._record = self.runner.begin()
        self._obs = self.twin.metaworld_observation()
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._record is None:
            raise RuntimeError('call reset() before step()')
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(4), -1.0, 1.0)
        self.runner.act(action, self._record, measure=False)
        obs = self.twin.metaworld_observation()
        if not np.all(np.isfinite(obs)):
            # An unstable simulation (Meta-World's own step returns its last stable observation, no
            # reward): end the episode here.
            return self._obs.copy(), 0.0, False, True, {'success': False}
        self._obs = obs
        reward, info = self._mw.evaluate_state(obs, action.astype(np.float32))
        info = dict(info)
        if self._record.estop_reasons:
            # The filter latched (the arm hit something, or was pushed): the real arm stands until an
            # operator resets it, so the episode ends here, a failure: no reward follows.
            info.update(success=False, estop=list(self._record.estop_reasons))
            return obs.copy(), float(reward), True, False, info
        info['success'] = bool(info['success'])
        return obs.copy(), float(reward), False, False, info

    def close(self) -> None:
        self._mw.close()


def make_twin_env(task_name: str, seed: int) -> TwinTaskEnv:
    """``legion.embodiments`` factory: ``task_name`` with the seed's goal variant on the twin."""
    return TwinTaskEnv(task_name, seed)
