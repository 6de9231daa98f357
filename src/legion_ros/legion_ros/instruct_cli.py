"""``legion instruct`` (talk to a running graph) and ``legion sim`` (bring one up and run an instruction).

Both send a natural-language instruction on ``/legion/instruction`` and follow ``/legion/status`` (the
instruction node's latched JSON status) until the sequence ends. Exit codes: 0 every step succeeded,
1 a step failed / was skipped or cancelled / the run timed out, 2 the instruction was rejected (or bad
usage), 3 no graph to talk to.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_REJECTED, EXIT_NO_GRAPH = 0, 1, 2, 3
TERMINAL = ('succeeded', 'failed', 'rejected', 'cancelled')
INSTRUCTION_TOPIC = '/legion/instruction'
STATUS_TOPIC = '/legion/status'
CANCEL_SERVICE = '/legion/instruction/cancel'


def exit_code(state: str) -> int:
    return {'succeeded': EXIT_SUCCEEDED, 'rejected': EXIT_REJECTED}.get(state, EXIT_FAILED)


def describe_event(event: dict) -> str:
    """One human-readable line for a status event of the instruction node."""
    state, kind = event.get('state'), event.get('event')
    steps = event.get('steps') or []
    if state == 'rejected':
        return 'rejected: ' + '; '.join(r.get('message', '?') for r in event.get('reasons', []))
    if kind in ('queued',):
        plan = ', '.join(f'{s["index"] + 1}. "{s["instruction"]}" -> {s["task"]}' for s in steps)
        return f'queued {len(steps)} step(s): {plan}'
    if kind and kind.startswith('step_'):
        index = event.get('active_index') if kind == 'step_started' else event.get('step')
        if index is None or index >= len(steps):
            return kind
        step = steps[index]
        line = f'step {index + 1}/{len(steps)} {step["task"]}: {step["state"]}'
        if step.get('duration_s') is not None:
            line += f' after {step["duration_s"]:.2f} s'
        if step.get('reason'):
            line += f' ({step["reason"]})'
        return line
    if state in TERMINAL:
        done = sum(s['state'] == 'succeeded' for s in steps)
        reasons = '; '.join(r.get('message', '') for r in event.get('reasons', []))
        tail = '' if state == 'succeeded' else f' - {reasons}'
        return f'{state}: {done}/{len(steps)} step(s) succeeded{tail}'
    return f'{state}'


@dataclass
class StatusFollower:
    """Sends one instruction and collects the status events of the sequence it started."""

    node: object
    events: list[dict] = field(default_factory=list)
    baseline: int | None = None
    sequence_id: int | None = None
    final: dict | None = None
    _instruction: str = ''

    def __post_init__(self):
        from std_msgs.msg import String

        from legion_ros import qos

        self._publisher = self.node.create_publisher(String, INSTRUCTION_TOPIC, qos.STATE)
        self._seen_latched = False
        self._sent = False
        from legion_ros.nodes.instruction import STATUS_QOS

        self.node.create_subscription(String, STATUS_TOPIC, self._on_status, STATUS_QOS)

    def _on_status(self, message) -> None:
        try:
            event = json.loads(message.data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        sequence_id = event.get('sequence_id')
        if not self._sent:  # the latched state from before our instruction: where numbering stands
            self._seen_latched = True
            self.baseline = sequence_id if isinstance(sequence_id, int) else self.baseline
            return
        if self.final is not None or not isinstance(sequence_id, int):
            return
        if self.sequence_id is None:
            if self.baseline is not None and sequence_id <= self.baseline:
                return  # a late event of an older sequence (e.g. the one ours preempted)
            if event.get('event') not in ('queued', 'rejected'):
                return  # every sequence starts with one of these
            self.sequence_id = sequence_id
        if sequence_id != self.sequence_id:
            return
        self.events.append(event)
        if event.get('state') in TERMINAL:
            self.final = event

    def ready(self) -> bool:
        """The instruction node listens (and its latched status, if any, has arrived)."""
        return self._publisher.get_subscription_count() > 0 and (
            self._seen_latched or self.node.count_publishers(STATUS_TOPIC) == 0)

    def send(self, instruction: str) -> None:
        from std_msgs.msg import String

        self._sent = True
        self._instruction = instruction
        self._publisher.publish(String(data=instruction))


def spin_until(node, predicate, timeout_s: float | None, on_spin=None) -> bool:
    """Spin ``node`` until ``predicate()`` or ``timeout_s`` (None: forever); True if it held."""
    import rclpy

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not predicate():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.05)
        if on_spin is not None:
            on_spin()
    return True


def follow_instruction(node, instruction: str, *, wait_s: float, timeout_s: float | None,
                       on_event=None) -> tuple[int, dict | None, str]:
    """Send ``instruction`` and stream its events; returns (exit code, final event, message)."""
    follower = StatusFollower(node)
    if not spin_until(node, follower.ready, wait_s):
        return EXIT_NO_GRAPH, None, (f'no instruction node listens on {INSTRUCTION_TOPIC} after '
                                     f'{wait_s:g} s (is the graph up? `legion sim` or `legion launch sim`)')
    spin_until(node, lambda: False, 0.2)  # let the latched status arrive before numbering starts
    follower.send(instruction)
    shown = 0

    def stream():
        nonlocal shown
        while on_event is not None and shown < len(follower.events):
            on_event(follower.events[shown])
            shown += 1

    finished = spin_until(node, lambda: follower.final is not None, timeout_s, stream)
    stream()
    if not finished:
        return EXIT_FAILED, follower.events[-1] if follower.events else None, \
            f'the sequence did not end within {timeout_s:g} s'
    return exit_code(follower.final['state']), follower.final, ''


def cancel_running(node, timeout_s: float = 2.0) -> bool:
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, CANCEL_SERVICE)
    if not client.wait_for_service(timeout_sec=timeout_s):
        return False
    future = client.call_async(Trigger.Request())
    spin_until(node, future.done, timeout_s)
    return future.done() and future.result().success


# ----------------------------------------------------------------------------------------------------
# legion instruct

def register_instruct(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'instruct', help='send a natural-language instruction to the running graph and follow it',
        description='Send a (multi-step) natural-language instruction to the running LEGION graph '
                    '(`legion sim` or `legion launch`), print each step\'s progress and wait until the '
                    'sequence ends. Joins the newest graph started on this machine unless ROS_DOMAIN_ID is '
                    'set. Exit status: 0 every step succeeded, 1 a step failed or was skipped/cancelled '
                    'or the run timed out, 2 the instruction was rejected (unknown/ambiguous skill, empty, '
                    'too long, bad characters), 3 no graph to talk to.',
        epilog='example: legion instruct "open the drawer, then press the button"')
    parser.add_argument('instruction', help='what to do, e.g. "reach the goal and then close the window"')
    parser.add_argument('--timeout', type=float, default=None, metavar='S',
                        help='give up after S seconds (default: wait until the sequence ends)')
    parser.add_argument('--wait', type=float, default=10.0, metavar='S',
                        help='how long to wait for the graph\'s instruction node (default 10 s)')
    parser.add_argument('--json', action='store_true', help='print every status event as one JSON line')
    parser.add_argument('--no-cancel', action='store_true',
                        help='on Ctrl-C leave the sequence running (default: cancel it)')
    parser.set_defaults(handler=run_instruct)


def run_instruct(args: argparse.Namespace) -> int:
    import os

    from legion_ros.environment import DOMAIN_VAR, apply_ros_defaults, running_graph_domain

    if not os.environ.get(DOMAIN_VAR) and running_graph_domain() is None:
        print('legion instruct: no running LEGION graph found on this machine; start one with '
              '`legion sim` or `legion launch sim`, or set ROS_DOMAIN_ID to talk to a graph elsewhere.',
              file=sys.stderr)
        return EXIT_NO_GRAPH
    lease = apply_ros_defaults(join_graph=True)
    import rclpy

    rclpy.init()
    node = rclpy.create_node('legion_instruct')
    printer = (lambda e: print(json.dumps(e), flush=True)) if args.json else \
        (lambda e: print(describe_event(e), flush=True))
    try:
        code, _final, message = follow_instruction(node, args.instruction, wait_s=args.wait,
                                                  timeout_s=args.timeout, on_event=printer)
        if message:
            print(f'legion instruct: {message}', file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if not args.no_cancel:
            print('legion instruct: interrupted, cancelling the sequence', file=sys.stderr)
            cancel_running(node)
        return EXIT_FAILED
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if lease is not None:
            lease.release()
