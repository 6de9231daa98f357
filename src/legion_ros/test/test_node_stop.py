"""How a node process ends on SIGINT: its ``close()`` and the atexit handlers run, what it published last
reaches its subscribers, and it exits 0; one that cannot stop (stuck in a callback, in Python or in C)
is ended after ``STOP_DEADLINE_S`` with exit code 1 and the stack of every thread on stderr, before the
launcher's SIGTERM/SIGKILL."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from legion_ros.graph import SHUTDOWN_TIMEOUT_S
from legion_ros.node_base import EXIT_CRASH, EXIT_OK, LAST_MESSAGES_S, STOP_DEADLINE_S

pytestmark = pytest.mark.ros

# A node whose timer callback does what argv[1] says; argv[2] is the stop deadline in seconds.
NODE_SCRIPT = textwrap.dedent('''
    import atexit, ctypes, sys, threading
    from rclpy.node import Node
    from legion_ros import node_base

    def stuck_in_python():
        threading.Event().wait()  # signal handlers run, the wait goes on

    def stuck_in_c():
        # relocking a normal mutex waits forever, through signals, in C with the GIL released (ctypes):
        # Python's handlers cannot run in the main thread, as in a deadlocked DDS call
        libc, mutex = ctypes.CDLL(None), ctypes.create_string_buffer(64)
        libc.pthread_mutex_lock(mutex)
        libc.pthread_mutex_lock(mutex)

    class Probe(Node):
        def __init__(self):
            super().__init__('stop_probe')
            self.said = False
            self.create_timer(0.05, self.tick)
            print('spinning', flush=True)

        def tick(self):
            stuck = {'stuck_in_python': stuck_in_python, 'stuck_in_c': stuck_in_c}.get(sys.argv[1])
            if not self.said:
                print('ticking' if stuck is None else 'stuck', flush=True)
                self.said = True
            if stuck is not None:
                stuck()

        def close(self):
            print('closed', flush=True)

    atexit.register(print, 'atexit ran', flush=True)
    node_base.STOP_DEADLINE_S = float(sys.argv[2])
    node_base.run_node(Probe)
''')


def run_probe(behaviour: str, deadline_s: float) -> tuple[int, str, str, float]:
    probe = subprocess.Popen([sys.executable, '-c', NODE_SCRIPT, behaviour, str(deadline_s)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert probe.stdout.readline().strip() == 'spinning', probe.stderr.read()
        assert probe.stdout.readline().strip() == ('ticking' if behaviour == 'idle' else 'stuck')
        probe.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = probe.communicate(timeout=60)
        return probe.returncode, out, err, time.monotonic() - started
    finally:
        if probe.poll() is None:
            probe.kill()


def test_the_deadline_comes_before_the_launchers_sigterm():
    assert 0 < STOP_DEADLINE_S < SHUTDOWN_TIMEOUT_S


def test_sigint_closes_the_node_runs_atexit_and_exits_0():
    code, out, err, _ = run_probe('idle', deadline_s=STOP_DEADLINE_S)
    assert code == EXIT_OK, err
    assert out.splitlines() == ['closed', 'atexit ran']
    assert 'Timeout' not in err


@pytest.mark.parametrize('behaviour', ['stuck_in_python', 'stuck_in_c'])
def test_a_node_that_cannot_stop_is_ended_with_every_stack_after_the_deadline(behaviour):
    code, out, err, took_s = run_probe(behaviour, deadline_s=2.0)
    assert code == EXIT_CRASH, err
    assert 'closed' not in out  # it never got there
    assert 'Timeout (0:00:02)!' in err
    assert f'in {behaviour}' in err and 'in tick' in err  # where it was stuck, from the main thread
    assert took_s >= 2.0


# A node that publishes a large reliable message as it closes (a final status, a last event).
LAST_WORDS_SCRIPT = textwrap.dedent('''
    import sys
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import UInt8MultiArray
    from legion_ros import node_base

    class LastWords(Node):
        def __init__(self):
            super().__init__('last_words')
            self.pub = self.create_publisher(UInt8MultiArray, '/last_words', QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE))
            self.create_timer(0.05, lambda: self.pub.get_subscription_count() and print('heard', flush=True))

        def close(self):
            self.pub.publish(UInt8MultiArray(data=bytes(4_000_000)))

    node_base.LAST_MESSAGES_S = float(sys.argv[1])
    node_base.run_node(LastWords)
''')


def test_what_a_node_publishes_as_it_closes_reaches_its_subscribers():
    """The process ends with os._exit right after its nodes are destroyed: without waiting for the
    subscribers' acknowledgements, a large last message in flight was dropped."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import UInt8MultiArray

    rclpy.init()
    listener = rclpy.create_node('last_words_listener')
    got = []
    listener.create_subscription(UInt8MultiArray, '/last_words', lambda m: got.append(len(m.data)),
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    node = subprocess.Popen([sys.executable, '-c', LAST_WORDS_SCRIPT, str(LAST_MESSAGES_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and node.poll() is None:
            rclpy.spin_once(listener, timeout_sec=0.05)
            if listener.count_publishers('/last_words'):
                break
        assert node.stdout.readline().strip() == 'heard', node.stderr.read()  # matched both ways
        node.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not got:
            rclpy.spin_once(listener, timeout_sec=0.05)
        assert node.wait(timeout=30) == EXIT_OK
        assert got == [4_000_000]
    finally:
        if node.poll() is None:
            node.kill()
        listener.destroy_node()
        rclpy.try_shutdown()
