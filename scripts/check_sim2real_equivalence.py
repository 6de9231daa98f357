"""Differential check of the sim2real node before and after legion_kuka.commander (issue #13), without a
ROS graph: the node class of commit 563c23b and the current one, each on a stub Node base, get the same
random message sequences (joint states, actions with and without source stamps, watchdog, e-stop and
reset, active steps, stations with transits, the clock going back, the arm hitting something); every
published command (bitwise, with its provenance label), gripper command, status state, counter and
reset answer must agree. ``python scripts/check_sim2real_equivalence.py 0 40`` (seeds from, to).

One difference is meant, and the old class is given the new rule here: it streamed the current step's
plan while its status said ``holding`` when its clock had gone back behind the last action (the stale
check then passed) without a joint state to notice the jump (they were out of the stamp window); the
commander streams only while ``commanding``: after a hold only a new action (re-anchored) moves the arm.
"""
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String

from legion_kuka.description import HOME, joint_names
from legion_kuka.frames import default_task_frame
from legion_ros.node_base import Params
from legion_ros.provenance import array_message

NODE = 'src/legion_ros/legion_ros/nodes/sim2real.py'
ROOT = Path(__file__).resolve().parents[1]
PERIOD_NS = 10_000_000


class Clock:
    ns = 10**9

    def now(self):
        return types.SimpleNamespace(nanoseconds=self.ns)


CLOCK = Clock()


LOG_SITES: dict = {}


class Log:
    """rclpy's logger rule: one severity per call site (else ValueError)."""

    def __getattr__(self, severity):
        def log(*args, **kwargs):
            caller = sys._getframe(1)
            site = (caller.f_code.co_filename, caller.f_lineno)
            if LOG_SITES.setdefault(site, severity) != severity:
                raise ValueError('Logger severity cannot be changed between calls.')
        return log


class StubNode:
    """What the node uses of rclpy's Node; publishers append (topic, message) to ``out``."""

    def __init__(self, name):
        self.out, self.timers = [], []

    def get_clock(self):
        return CLOCK

    def get_logger(self):
        return Log()

    def create_publisher(self, kind, topic, qos):
        return types.SimpleNamespace(publish=lambda message: self.out.append((topic, message)))

    def create_subscription(self, *args):
        pass

    def create_service(self, *args):
        pass

    def create_timer(self, period, callback):
        self.timers.append(callback)  # [0]: the watchdog, [1]: the status


class Status:
    def __init__(self, node):
        self.states = []

    def publish(self, state, **fields):
        self.states.append(state)


def declare(node, spec):
    params = Params()
    for name, param in spec.items():
        params[name] = list(param.default) if isinstance(param.default, tuple) else param.default
    return params


def load(source: str, name: str) -> dict:
    namespace = {'__name__': name, 'Node': StubNode}
    exec(compile(source.replace('from rclpy.node import Node\n', ''), name, 'exec'), namespace)
    namespace.update(declare_parameters=declare, StatusPublisher=Status)
    return namespace


OLD = load(subprocess.run(['git', 'show', f'563c23b:{NODE}'], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout, 'old_sim2real')
_old_cycle = OLD['Sim2RealNode'].on_cycle


def _cycle_unless_holding(node) -> None:  # the meant difference (module docstring)
    if not node.holding or node.transit_targets:
        _old_cycle(node)


OLD['Sim2RealNode'].on_cycle = _cycle_unless_holding
NEW = load((ROOT / NODE).read_text(), 'new_sim2real')
FRAME = default_task_frame()


def station(turn: float, transit: bool) -> String:
    goal = np.array(HOME)
    goal[0] += turn
    message = {'frame': {'position': FRAME.translation.tolist(), 'quaternion_wxyz': FRAME.quat.tolist()},
               'hand_low': [-0.5, 0.4, 0.05], 'hand_high': [0.5, 1.0, 0.5]}
    if transit:
        message.update(start_posture=goal.tolist(), workspace_low=[0.2, -0.8, 0.02],
                       workspace_high=[0.9, 0.8, 0.6], lift_to_m=0.45)
    return String(data=json.dumps(message))


def published(node) -> list:
    return [(topic, np.asarray(m.data).tolist(), m.layout.dim[0].label if hasattr(m, 'layout') else None)
            for topic, m in node.out]


def compare(old, new, where) -> None:
    assert published(old) == published(new), where
    state = ('estop' if old.estopped else 'transit' if old.transit_targets
             else 'holding' if old.holding else 'commanding')
    assert state == new.commander.state.value, (where, state, new.commander.state)
    assert (old.sent, old.refused, old.rejected) == (new.commander.sent, new.commander.refused, new.rejected)
    assert old.workspace == new.commander.workspace, where
    assert old.status.states == new.status.states, (where, old.status.states[-4:], new.status.states[-4:])


def run(seed: int) -> int:
    rng = np.random.default_rng(seed)
    CLOCK.ns = 10**9
    old, new = OLD['Sim2RealNode'](), NEW['Sim2RealNode']()
    q, stamp = np.array(HOME), CLOCK.ns

    def both(method, message):
        for node in (old, new):
            getattr(node, method)(message)

    for event in range(400):
        r = rng.random()
        if r < 0.55:  # control cycles; the arm is where it was sent
            for _ in range(rng.integers(1, 12)):
                CLOCK.ns += PERIOD_NS
                stamp += PERIOD_NS
                state = JointState(name=joint_names('lbr'), position=[float(v) for v in q])
                state.header.stamp = Time(sec=stamp // 10**9, nanosec=stamp % 10**9)
                both('on_joint_state', state)
                if old.out and old.out[-1][0].endswith('commands'):
                    q = np.asarray(old.out[-1][1].data, dtype=float)
                compare(old, new, (seed, event, 'joint state'))
        elif r < 0.75:
            source = None if rng.random() < 0.5 else stamp + int(rng.integers(-2, 3)) * PERIOD_NS
            if rng.random() < 0.05:
                source = stamp + 10**12  # a hostile label
            CLOCK.ns += 1_000_000
            both('on_action', array_message(rng.uniform(-1.5, 1.5, 4), 'action', source))
        elif r < 0.79:
            CLOCK.ns += int(rng.integers(0, 400_000_000))
            for node in (old, new):
                node.timers[0]()
        elif r < 0.83:
            both('on_estop', Bool(data=bool(rng.random() < 0.3)))
        elif r < 0.87:
            answers = []
            for node in (old, new):
                response = types.SimpleNamespace(success=None, message=None)
                node.on_reset_estop(None, response)
                answers.append((response.success, response.message))
            assert answers[0] == answers[1], (seed, event, answers)
        elif r < 0.92:
            task = rng.choice(['drawer-close-v3', 'window-close-v3', 'reach-v3', 'nope-v3', ''])
            both('on_active_step', String(data=json.dumps({'task': str(task)}) if task else 'not json'))
        elif r < 0.96:
            both('on_station', station(float(rng.uniform(-0.8, 0.8)), bool(rng.random() < 0.6)))
        elif r < 0.98:  # the twin restarted: the clock goes back
            CLOCK.ns = max(10**9, CLOCK.ns - int(rng.integers(1, 5)) * 10**9)
            stamp = CLOCK.ns
        elif rng.random() < 0.3:  # the arm hits something
            q = q + 0.3
        compare(old, new, (seed, event, r))
    return new.commander.sent


if __name__ == '__main__':
    for seed in range(int(sys.argv[1]), int(sys.argv[2])):
        print(f'seed {seed}: {run(seed)} commands, old and new node agree', flush=True)
