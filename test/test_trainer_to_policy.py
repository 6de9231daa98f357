"""Lifelong training as a ROS process feeds the running policy: learn -> checkpoint -> policy acts.

The trainer node learns a task asked for in words (a very short run of the real lifelong trainer,
preset ``tiny``), announces the exported policy artefact, and a running ``policy`` node picks it up
without a restart and acts with it on the learnt task.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
from std_msgs.msg import Float32MultiArray, String

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'src' / 'legion_ros' / 'test'))

from decision_graph import Probe, output_of, start_node, stop_node

from legion_ros import qos
from legion_ros.nodes.trainer import PROGRESS_QOS
from legion_ros.provenance import array_message

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_trainer_learns_a_described_task_and_the_policy_follows(tmp_path):
    rclpy.init()
    trainer = start_node('trainer', {
        'run_dir': str(tmp_path / 'runs'), 'config_name': 'tiny',
        'overrides': ['train.steps_per_task=300', 'train.warmup_steps=100', 'train.eval_every=0',
                      'train.checkpoint_every=0', 'dpmm.start=250', 'env.layout=legion12'],
        'chunk_steps': 100})
    policy = start_node('policy', {'policy_type': 'legion', 'trigger': 'observation',
                                   'watch_checkpoint': False})
    probe = Probe('trainer_probe')
    try:
        probe.listen(String, '/legion/training_progress', PROGRESS_QOS)
        probe.listen(String, '/legion/checkpoint', qos.LATCHED)
        probe.listen(String, '/legion/policy/status', qos.LATCHED)
        probe.listen(Float32MultiArray, '/legion/action', qos.COMMAND)
        learn = probe.publisher(String, '/legion/learn', qos.STATE)
        assert probe.wait_for(lambda: learn.get_subscription_count() > 0, 60.0), output_of(trainer)
        for text in ('move the gripper to the target point', b'\xff not utf-8', 'bake a cake'):
            learn.publish(String(data=text) if isinstance(text, str) else
                          b'\x00\x01\x00\x00' + len(text + b'\x00').to_bytes(4, 'little') + text + b'\x00')
        events = lambda: probe.json('/legion/training_progress')  # noqa: E731
        assert probe.wait_for(lambda: any(e['event'] == 'phase_done' for e in events()), 400.0), \
            output_of(trainer) if trainer.poll() is not None else events()
        kinds = [e['event'] for e in events()]
        assert kinds.count('rejected') == 2 and 'queued' in kinds and 'started' in kinds
        queued = next(e for e in events() if e['event'] == 'queued')
        assert queued['task'] == 'reach-v3'
        assert [e for e in events() if e['event'] == 'progress'][-1]['env_steps'] >= 300
        assert probe.wait_for(lambda: probe.messages['/legion/checkpoint'], 10.0)
        path = probe.messages['/legion/checkpoint'][-1].data
        assert Path(path).is_file()

        # The running policy node loaded the announced artefact and acts with it on reach-v3.
        ready = lambda: any(s['state'] == 'ready' and s.get('checkpoint') == path  # noqa: E731
                            for s in probe.json('/legion/policy/status'))
        assert probe.wait_for(ready, 60.0), probe.json('/legion/policy/status')
        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(
            {'sequence_id': 1, 'index': 0, 'task': 'reach-v3', 'instruction': 'reach'})))
        obs = probe.publisher(Float32MultiArray, '/legion/observation', qos.STATE)
        from legion_core.policy import load_policy
        expected = load_policy(path).act(np.zeros((1, 12), dtype=np.float32) + 0.1, 'reach-v3')[0]
        for k in range(200):
            obs.publish(array_message(np.full(12, 0.1), 'observation', k))
            probe.spin(0.02)
            if len(probe.messages['/legion/action']) >= 3:
                break
        actions = probe.messages['/legion/action']
        assert len(actions) >= 3
        np.testing.assert_allclose(actions[-1].data, np.clip(expected, -1, 1), atol=1e-5)

        # A later request continues the same stream: reach is not trained again, push follows it.
        learn.publish(String(data='push'))
        learn.publish(String(data='reach'))  # learnt already: rejected, not retrained
        done = lambda: [e for e in events() if e['event'] == 'phase_done']  # noqa: E731
        assert probe.wait_for(lambda: len(done()) >= 2, 400.0), events()
        started = [e for e in events() if e['event'] == 'started'][-1]
        assert started['tasks'] == ['push-v3'] and started['learnt_before'] == ['reach-v3']
        assert done()[-1]['task'] == 'push-v3' and done()[-1]['phase'] == 1
        assert [e for e in events() if e['event'] == 'progress'][-1]['env_steps'] >= 600
        assert any(e['event'] == 'rejected' and e.get('task') == 'reach-v3' for e in events())
        assert load_policy(probe.messages['/legion/checkpoint'][-1].data).tasks == ['reach-v3', 'push-v3']
    finally:
        probe.close()
        codes = stop_node(policy), stop_node(trainer, timeout_s=30.0)
        rclpy.try_shutdown()
    assert codes == (0, 0), (output_of(policy), output_of(trainer))


def test_a_stopped_trainer_keeps_its_progress_and_the_next_start_goes_on_from_it(tmp_path):
    """SIGINT mid-chunk: the node stops training at the next env step with a checkpoint (before, the
    steps since the last chunk were lost), says so, and a new node's request continues the same run."""
    from legion_core.checkpoint import load_checkpoint

    parameters = {'run_dir': str(tmp_path / 'runs'), 'config_name': 'tiny', 'chunk_steps': 1000,
                  'overrides': ['train.steps_per_task=100000', 'train.warmup_steps=100', 'train.eval_every=0',
                                'train.checkpoint_every=0', 'env.layout=legion12']}
    last = tmp_path / 'runs' / 'run_1' / 'checkpoints' / 'last.pt'
    rclpy.init()
    probe = Probe('trainer_stop_probe')
    trainers = []
    try:
        probe.listen(String, '/legion/training_progress', PROGRESS_QOS)
        learn = probe.publisher(String, '/legion/learn', qos.STATE)
        events = lambda kind: [e for e in probe.json('/legion/training_progress') if e['event'] == kind]  # noqa: E731
        trainers.append(start_node('trainer', parameters))
        assert probe.wait_for(lambda: learn.get_subscription_count() > 0, 60.0), output_of(trainers[0])
        learn.publish(String(data='reach'))
        if not probe.wait_for(lambda: events('progress'), 300.0):
            stop_node(trainers[0], timeout_s=30.0)
            pytest.fail(f'no progress: {output_of(trainers[0])}')
        chunk_end = events('progress')[0]['env_steps']
        probe.spin(2.0)  # into the next chunk
        assert stop_node(trainers[0], timeout_s=30.0) == 0, output_of(trainers[0])
        probe.spin(0.5)
        steps = load_checkpoint(last)['position']['env_steps']
        assert steps > chunk_end  # the steps after the last chunk's checkpoint were kept
        (stopped,) = events('stopped')
        assert stopped['env_steps'] == steps and stopped['phase'] == 0

        seen = len(probe.json('/legion/training_progress'))
        later = lambda kind: [e for e in probe.json('/legion/training_progress')[seen:]  # noqa: E731
                              if e['event'] == kind]
        trainers.append(start_node('trainer', parameters))
        assert probe.wait_for(lambda: learn.get_subscription_count() > 0, 60.0), output_of(trainers[1])
        learn.publish(String(data='reach'))  # not learnt yet: the stopped run goes on with it
        if not probe.wait_for(lambda: later('progress'), 120.0):
            stop_node(trainers[1], timeout_s=30.0)
            pytest.fail(f'no progress after the restart: {later("started")} {output_of(trainers[1])}')
        assert later('started')[0]['tasks'] == ['reach-v3']
        assert later('progress')[0]['env_steps'] == steps + 1000
    finally:
        probe.close()
        codes = [stop_node(trainer, timeout_s=30.0) for trainer in trainers]
        rclpy.try_shutdown()
    assert codes == [0, 0]
