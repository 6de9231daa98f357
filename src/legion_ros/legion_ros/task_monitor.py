"""Judging whether the active step succeeded (pure Python, used by the ``real2sim`` node).

Two sources of truth:

* in simulation, the twin's own ``task_success`` (Meta-World's ``info['success']``), published by the
  sim bridge;
* on the real arm, Meta-World's success criterion evaluated on the observation the policy sees
  (hand, object and goal positions in the task frame, :data:`CRITERIA`), since nothing else knows.

:class:`TaskMonitor` debounces either source (success must hold for ``hold`` consecutive samples, so
one noisy object pose cannot finish a step) and reports each step's success once. :class:`StepJudge`
picks the source for the active step and writes its ``/legion/step_success`` report.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from legion_ros.interfaces import StepSuccess

# Positions inside Meta-World's 39-d observation (sawyer_xyz_env._get_obs): hand 0:3, gripper 3,
# first object 4:7, goal 36:39 (visible when the env is fully observable, as LEGION's are).
HAND = slice(0, 3)
OBJECT = slice(4, 7)
GOAL = slice(36, 39)


@dataclass(frozen=True)
class Criterion:
    """``distance(obs39) <= threshold`` means success, as in the task's ``evaluate_state``."""

    distance: Callable[[np.ndarray], float]
    threshold: float
    what: str


def _norm(vector) -> float:
    return float(np.linalg.norm(vector))


# Thresholds and distances follow metaworld/envs/sawyer_*_v3.py (Meta-World 3.1.1).
CRITERIA: dict[str, Criterion] = {
    'reach-v3': Criterion(lambda o: _norm(o[HAND] - o[GOAL]), 0.05, 'hand to goal'),
    'reach-wall-v3': Criterion(lambda o: _norm(o[HAND] - o[GOAL]), 0.05, 'hand to goal'),
    'push-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.05, 'puck to goal'),
    'push-wall-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.05, 'puck to goal'),
    'push-back-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.07, 'puck to goal'),
    'pick-place-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.07, 'puck to goal'),
    'door-open-v3': Criterion(lambda o: abs(o[4] - o[36]), 0.08, 'door handle x to goal x'),
    'drawer-open-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.03, 'drawer handle to goal'),
    'drawer-close-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.055, 'drawer to goal'),
    'button-press-topdown-v3': Criterion(lambda o: abs(o[38] - o[6]), 0.024, 'button depth to goal'),
    'faucet-open-v3': Criterion(
        lambda o: _norm(o[OBJECT] + np.array([-0.04, 0.0, 0.03]) - o[GOAL]), 0.07, 'faucet handle to goal'),
    'peg-unplug-side-v3': Criterion(lambda o: _norm(o[OBJECT] - o[GOAL]), 0.07, 'peg to goal'),
    'window-open-v3': Criterion(lambda o: abs(o[4] - o[36]), 0.05, 'window handle x to goal x'),
    'window-close-v3': Criterion(lambda o: abs(o[4] - o[36]), 0.05, 'window handle x to goal x'),
}


def observation_success(task: str, obs39) -> tuple[bool, float]:
    """(success, distance) of Meta-World's criterion for ``task`` on a 39-d observation."""
    criterion = CRITERIA.get(task)
    if criterion is None:
        raise KeyError(f'no observation-based success criterion for {task!r}; known: '
                       f'{", ".join(sorted(CRITERIA))}. Use the simulator\'s task_success instead.')
    obs = np.asarray(obs39, dtype=np.float64).reshape(-1)
    if obs.shape != (39,):
        raise ValueError(f'a Meta-World observation has 39 values, got {obs.shape[0]}')
    if not np.all(np.isfinite(obs)):
        return False, float('inf')
    distance = float(criterion.distance(obs))
    return distance <= criterion.threshold, distance


@dataclass
class TaskMonitor:
    """Debounced, once-per-step success judgement for the active step.

    Call :meth:`start` when a step becomes active, then :meth:`update` with every new sample; it
    returns True exactly once, when success has held for ``hold`` consecutive samples.
    """

    hold: int = 3

    def __post_init__(self):
        if self.hold < 1:
            raise ValueError(f'hold must be at least 1, got {self.hold}')
        self.task: str | None = None
        self.key: tuple | None = None
        self._streak = 0
        self._reported = False
        self.last_distance: float | None = None

    def start(self, task: str, key: tuple = ()) -> None:
        """A new step (``key`` identifies it, e.g. (sequence_id, index)); resets the debounce."""
        if (task, key) == (self.task, self.key):
            return
        self.task, self.key = task, key
        self._streak, self._reported, self.last_distance = 0, False, None

    def stop(self) -> None:
        self.task, self.key = None, None
        self._streak, self._reported = 0, False

    def update(self, success: bool) -> bool:
        """One sample of the success signal; True the first time it has held long enough."""
        if self.task is None or self._reported:
            return False
        self._streak = self._streak + 1 if success else 0
        if self._streak >= self.hold:
            self._reported = True
            return True
        return False

    def update_observation(self, obs39) -> bool:
        """Judge from the observation with the task's Meta-World criterion (the real-robot path)."""
        if self.task is None:
            return False
        success, self.last_distance = observation_success(self.task, obs39)
        return self.update(success)


class StepJudge:
    """The active step's success, judged once, from the twin's ground truth or from the observation.

    ``source``: ``sim``, ``observation`` or ``auto`` (the twin while its scene is the active step's task
    and it has said anything, else the observation, for the tasks in :data:`CRITERIA`). :meth:`sim` and
    :meth:`observation` return the report to publish, once per step.
    """

    def __init__(self, source: str = 'auto', hold: int = 3) -> None:
        if source not in ('auto', 'sim', 'observation'):
            raise ValueError(f'success source must be auto, sim or observation, got {source!r}')
        self.source = source
        self.monitor = TaskMonitor(hold=hold)
        self.step: dict | None = None
        self.sim_success: bool | None = None

    def start(self, step: dict | None) -> None:
        """The active step (``task``, ``sequence_id``, ``index``), or None when no step is active."""
        if step is None or step.get('task') is None:
            self.step = None
            self.monitor.stop()
            return
        self.step = step
        self.monitor.start(step['task'], (step.get('sequence_id'), step.get('index')))

    def sim(self, success: bool, scene_task: str | None) -> StepSuccess | None:
        """One sample of the twin's ``task_success``; it describes ``scene_task`` (None: unknown)."""
        self.sim_success = bool(success)
        if self._by_sim(scene_task) and self.monitor.update(self.sim_success):
            return self._report('sim')
        return None

    def observation(self, obs39, scene_task: str | None) -> StepSuccess | None:
        """One observation; judged by Meta-World's criterion unless the twin judges this step."""
        if self.step is None or self.step['task'] not in CRITERIA:
            return None
        if self.source == 'sim' or (self.source == 'auto' and self._by_sim(scene_task)):
            return None
        return self._report('observation') if self.monitor.update_observation(obs39) else None

    def _by_sim(self, scene_task: str | None) -> bool:
        """Whether the twin's ground truth judges the active step (it only knows its scene's task)."""
        if self.step is None or self.source == 'observation':
            return False
        return self.sim_success is not None and scene_task in (None, self.step['task'])

    def _report(self, source: str) -> StepSuccess:
        step = self.step
        report = StepSuccess(sequence_id=step.get('sequence_id'), index=step.get('index'), task=step['task'],
                             success=True, source=source)
        if source == 'observation' and self.monitor.last_distance is not None:
            report['distance'] = round(self.monitor.last_distance, 5)
        return report
