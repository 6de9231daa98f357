"""`legion bench language`: the measurements it prints, and the command itself."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from legion_core.intent import load_held_out
from legion_core.tasks import LEGION10
from legion_ros.bench_language import evaluate


@pytest.fixture(scope='module')
def matcher():
    from legion_core.language import LanguageEncoder
    from legion_ros.bench_language import intent_matcher

    return intent_matcher(LanguageEncoder())


def test_held_out_measurements_meet_the_goals(matcher):
    result = evaluate(matcher, load_held_out(), list(LEGION10), misses=True)
    assert result['steps'] >= 140 and result['accuracy'] >= 0.95, result['misses']
    assert result['opposite_confusions'] == 0, result['opposite_pairs']
    assert result['reject']['recall'] == 1.0 and result['reject']['precision'] >= 0.9
    assert result['sequences']['exact'] == result['sequences']['n']
    assert result['ambiguous']['asked'] >= result['ambiguous']['n'] - 1


def test_a_robot_with_fewer_skills_refuses_the_rest(matcher):
    result = evaluate(matcher, load_held_out(), ['reach-v3', 'drawer-close-v3', 'window-close-v3'])
    # The reading does not depend on the skills; refusing does.
    assert result['accuracy'] >= 0.95 and result['reject']['recall'] == 1.0
    assert set(result['per_task']) >= set(LEGION10)


@pytest.mark.slow
def test_command_prints_one_json_object():
    proc = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'bench', 'language',
                           '--latency-steps', '3'], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= {'model', 'train', 'skills', 'held_out', 'latency_ms', 'baseline_similarity'}
    assert result['held_out']['accuracy'] > result['baseline_similarity']['accuracy']
    assert result['latency_ms']['steps'] == 3 and result['latency_ms']['median'] > 0
    assert set(result['train']['thresholds']) == {'min_confidence', 'family_margin', 'direction_margin'}
