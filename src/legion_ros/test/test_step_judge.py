"""real2sim's success judgement without ROS (legion_ros.task_monitor.StepJudge)."""
from __future__ import annotations

import numpy as np
import pytest

from legion_ros.task_monitor import StepJudge

STEP = {'task': 'reach-v3', 'sequence_id': 4, 'index': 1}


def obs39(distance: float) -> np.ndarray:
    """A reach observation with the hand ``distance`` from the goal."""
    obs = np.zeros(39)
    obs[36:39] = (0.0, 0.6, 0.2)
    obs[0:3] = obs[36:39] + np.array([distance, 0.0, 0.0])
    return obs


def test_observation_reports_success_once_after_the_hold():
    judge = StepJudge('observation', hold=2)
    judge.start(STEP)
    assert judge.observation(obs39(0.01), None) is None  # once is noise
    report = judge.observation(obs39(0.01), None)
    assert report == {'sequence_id': 4, 'index': 1, 'task': 'reach-v3', 'success': True,
                      'source': 'observation', 'distance': 0.01}
    assert judge.observation(obs39(0.01), None) is None  # once per step
    judge.start({**STEP, 'index': 2})  # the next step is judged afresh
    judge.observation(obs39(0.0), None)
    assert judge.observation(obs39(0.0), None)['index'] == 2


def test_auto_prefers_the_twin_for_its_own_scene():
    judge = StepJudge('auto', hold=1)
    judge.start(STEP)
    assert judge.observation(obs39(0.3), 'reach-v3') is None
    assert judge.sim(False, 'reach-v3') is None
    assert judge.observation(obs39(0.0), 'reach-v3') is None  # the twin judges this scene
    assert judge.sim(True, 'reach-v3')['source'] == 'sim'


def test_auto_judges_by_observation_while_the_twin_shows_another_scene():
    judge = StepJudge('auto', hold=1)
    judge.start(STEP)
    assert judge.sim(True, 'push-v3') is None  # the twin's success is about push, not this step
    assert judge.observation(obs39(0.0), 'push-v3')['source'] == 'observation'


def test_no_step_or_unknown_task_reports_nothing():
    judge = StepJudge('auto', hold=1)
    assert judge.sim(True, None) is None and judge.observation(obs39(0.0), None) is None
    judge.start({'task': 'no-criterion-v3', 'index': 0})
    assert judge.observation(obs39(0.0), None) is None
    judge.start(STEP)
    judge.start({'task': None})  # the sequence ended
    assert judge.sim(True, None) is None


def test_sim_source_never_judges_by_observation():
    judge = StepJudge('sim', hold=1)
    judge.start(STEP)
    assert judge.observation(obs39(0.0), None) is None
    with pytest.raises(ValueError):
        StepJudge('guess')
