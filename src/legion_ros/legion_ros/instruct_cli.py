"""``legion instruct``: send an instruction to a running graph and follow it, and the client pieces
``legion sim`` (:mod:`legion_ros.sim_cli`) shares with it.

A client in the manner of nav2's ``BasicNavigator``: it sends a natural-language instruction on
``/legion/instruction`` and follows ``/legion/status`` (the instruction node's latched JSON status)
until the sequence ends; on Ctrl-C it may cancel the sequence. It never commands the arm nor resets
its e-stop. Exit codes: 0 every step succeeded, 1 a step failed / was skipped or cancelled / the run
timed out, 2 the instruction was rejected (or bad usage), 3 no graph to talk to.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field

from legion_ros.interfaces import (
    CANCEL,
    INSTRUCTION,
    STATUS,
    BadMessageError,
)

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_REJECTED, EXIT_NO_GRAPH = 0, 1, 2, 3
TERMINAL = ('succeeded', 'failed', 'rejected', 'cancelled')


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
        if kind == 'step_resumed':
            line += f', going on (sim2real active again; paused {step.get("paused_s", 0.0):.1f} s so far)'
        if step.get('duration_s') is not None:
            line += f' after {step["duration_s"]:.2f} s'
        if step.get('reason'):
            line += f' ({step["reason"]})'
        if event.get('waiting'):  # the step's clock is paused: say why
            line += f' - {event["waiting"].get("message", "waiting")}'
        return line
    if state in TERMINAL:
        done = sum(s['state'] == 'succeeded' for s in steps)
        reasons = '; '.join(r.get('message', '') for r in event.get('reasons', []))
        tail = '' if state == 'succeeded' else f' - {reasons}'
        return f'{state}: {done}/{len(steps)} step(s) succeeded{tail}'
    return f'{state}'


@dataclass
class StatusFollower:
    """Sends one instruction and collects the status events of the sequence it started.

    The instruction goes out with an id of its own (:class:`legion_ros.instructions.InstructionRequest`)
    and only events that echo that id count: the latched history of ``/legion/status`` holds other
    instructions' events (an older sequence's ``succeeded`` once passed for ours), and a resend of the
    same id is taken once by the node.
    """

    node: object
    events: list[dict] = field(default_factory=list)
    sequence_id: int | None = None
    final: dict | None = None
    instruction_id: str = field(default_factory=lambda: f'cli-{uuid.uuid4().hex[:16]}')
    _instruction: str = ''

    def __post_init__(self):
        from std_msgs.msg import String

        from legion_ros import qos

        # Latched: a recorder that discovers the topic after the one message still records it.
        self._publisher = self.node.create_publisher(String, INSTRUCTION.name, qos.LATCHED)
        from legion_ros.nodes.instruction import STATUS_QOS

        self.node.create_subscription(String, STATUS.name, self._on_status, STATUS_QOS)

    def _on_status(self, message) -> None:
        try:
            event = STATUS.decode(message.data)
        except BadMessageError:
            return
        if event['instruction_id'] != self.instruction_id:
            return
        if self.final is not None:
            return
        if self.sequence_id is None:
            self.sequence_id = event['sequence_id']
        self.events.append(event)
        if event.get('state') in TERMINAL:
            self.final = event

    def ready(self) -> bool:
        """The instruction node listens. Its own subscription counts, not any: the recorder subscribes to
        the topic first (legion sim waits for it), and under load the instruction node took 27 s longer
        to load its intent model; an instruction sent to the recorder alone was lost and the run hung."""
        from legion_ros.nodes.instruction import NODE_NAME

        readers = self.node.get_subscriptions_info_by_topic(INSTRUCTION.name)
        return any(info.node_name == NODE_NAME for info in readers)

    def send(self, instruction: str) -> None:
        from std_msgs.msg import String

        from legion_ros.instructions import InstructionRequest

        self._instruction = instruction
        request = InstructionRequest(instruction, self.instruction_id)
        self._publisher.publish(String(data=request.to_json()))


DELIVER_ATTEMPTS, CONFIRM_S = 5, 3.0  # sends of an unconfirmed instruction, and the wait after each


def deliver(node, follower: StatusFollower, instruction: str, on_spin=None, attempts: int = DELIVER_ATTEMPTS,
            confirm_s: float = CONFIRM_S) -> bool:
    """Send until the instruction node confirms (its status starts a new sequence); False if it never
    did within ``attempts`` x ``confirm_s``.

    Seeing the node's subscription does not mean the node has matched this publisher yet; a sample
    sent in between is lost for a volatile reader, so an unconfirmed instruction is sent again (with
    the same id: the node takes it once).
    """
    for _ in range(attempts):
        follower.send(instruction)
        if spin_until(node, lambda: follower.sequence_id is not None, confirm_s, on_spin):
            return True
    return False


def unconfirmed(attempts: int = DELIVER_ATTEMPTS, confirm_s: float = CONFIRM_S) -> str:
    return (f'the instruction node did not take the instruction ({attempts} tries in '
            f'{attempts * confirm_s:g} s): is it overloaded or stuck? (see its log)')


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
                       on_event=None, on_spin=None, follower: StatusFollower | None = None,
                       ) -> tuple[int, dict | None, str]:
    """Send ``instruction`` and stream its events; returns (exit code, final event, message).
    ``on_spin``: called between spins (``legion sim``'s scene follower and node watchdog);
    ``follower``: one made earlier (its latched publisher must exist before the recorder looks)."""
    follower = StatusFollower(node) if follower is None else follower
    if not spin_until(node, follower.ready, wait_s, on_spin):
        return EXIT_NO_GRAPH, None, (f'no instruction node listens on {INSTRUCTION.name} after '
                                     f'{wait_s:g} s (is the graph up? `legion sim` or `legion launch sim`)')
    if not deliver(node, follower, instruction, on_spin):
        return EXIT_NO_GRAPH, None, unconfirmed()
    shown = 0

    def stream():
        nonlocal shown
        if on_spin is not None:
            on_spin()
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

    from legion_ros import services

    client = node.create_client(Trigger, CANCEL.name)
    try:
        answer = services.call(node, client, Trigger.Request(), lambda done, s: spin_until(node, done, s),
                               ready_s=timeout_s, answer_s=timeout_s)
    except services.ServiceError:
        return False
    finally:
        node.destroy_client(client)
    return answer.success


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
