"""What every LEGION-ROS node shares: start-up, spinning, shutdown, documented parameters, status.

A node module is a class plus ``main``::

    PARAMETERS = {
        'rate_hz': Param(20.0, 'policy rate [Hz]', range=(1.0, 500.0)),
        'joint_names': Param([], 'joint names of the driver profile', type='string[]'),
        'driver': Param('lbr', 'driver profile', choices=('lbr', 'iiwa_ros2')),
    }

    class PolicyNode(Node):
        executor_threads = 1          # > 1: MultiThreadedExecutor with that many threads

        def __init__(self):
            super().__init__('policy')
            self.params = declare_parameters(self, PARAMETERS)   # typed, described, validated
            self.status = StatusPublisher(self)                   # ~/status, latched JSON

        def close(self):              # optional: called once after spinning stops
            ...

    def main(args=None):
        return run_node(PolicyNode, args)

:func:`run_node` settles the discovery environment before ``rclpy.init`` (loopback, leased domain),
never uses ``with rclpy.init()`` (it returns None on Jazzy), spins until SIGINT/SIGTERM and ends the
process with 0 after a clean shutdown, 2 for a configuration error (bad parameter), 1 for a crash or a
stop that overran ``STOP_DEADLINE_S``.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import faulthandler
import functools
import gc
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.duration import Duration
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String

from legion_ros import qos
from legion_ros.environment import LAUNCHER_VAR, apply_ros_defaults
from legion_ros.graph import SHUTDOWN_TIMEOUT_S
from legion_ros.interfaces import LIFECYCLE_STATES, NODE_STATUS_JSON, NodeStatus

EXIT_OK, EXIT_CRASH, EXIT_CONFIG = 0, 1, 2
SPIN_POLL_S = 0.1  # longest a stop request waits for the spin loop
# From a stop request to the end of the process: past it the process prints every thread's stack and
# exits with EXIT_CRASH, before the launcher escalates to SIGTERM (SHUTDOWN_TIMEOUT_S) and SIGKILL.
STOP_DEADLINE_S = SHUTDOWN_TIMEOUT_S - 3.0
# How long a stopping process waits, in all, for its nodes' subscribers to acknowledge what the nodes
# published last (a final status, the trainer's 'stopped' event): the process then ends with os._exit,
# which drops a reliable message still in flight. Within STOP_DEADLINE_S with the trainer's close().
LAST_MESSAGES_S = 1.0

_TYPES = {
    'bool': ParameterType.PARAMETER_BOOL,
    'int': ParameterType.PARAMETER_INTEGER,
    'double': ParameterType.PARAMETER_DOUBLE,
    'string': ParameterType.PARAMETER_STRING,
    'bool[]': ParameterType.PARAMETER_BOOL_ARRAY,
    'int[]': ParameterType.PARAMETER_INTEGER_ARRAY,
    'double[]': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'string[]': ParameterType.PARAMETER_STRING_ARRAY,
}
_TYPE_NAMES = {code: name for name, code in _TYPES.items()}


class NodeConfigError(ValueError):
    """A node cannot start with the parameters it was given; the message says what to change."""


@dataclass(frozen=True)
class Param:
    """One node parameter: default, what it means, and the constraints ROS should enforce."""

    default: Any
    description: str
    type: str | None = None            # needed only when the default says nothing (empty list)
    choices: tuple = ()
    range: tuple[float, float] | None = None
    read_only: bool = False

    def type_name(self) -> str:
        if self.type is not None:
            if self.type not in _TYPES:
                raise ValueError(f'unknown parameter type {self.type!r}; one of {sorted(_TYPES)}')
            return self.type
        value = self.default
        if isinstance(value, bool):
            return 'bool'
        if isinstance(value, int):
            return 'int'
        if isinstance(value, float):
            return 'double'
        if isinstance(value, str):
            return 'string'
        if isinstance(value, (list, tuple)) and value:
            return Param(value[0], '').type_name() + '[]'
        raise ValueError(f'cannot infer a parameter type from {value!r}: give type=...')


class Params(dict):
    """The declared parameter values; ``params.rate_hz`` reads like ``params['rate_hz']``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def declare_parameters(node: Node, spec: Mapping[str, Param | tuple]) -> Params:
    """Declare every parameter of ``spec`` on ``node`` (typed, described) and return the values.

    Values come from parameter files / ``-p`` overrides when given, else the defaults. A wrong type
    (``rate_hz: 20`` for a double), a value outside ``range`` or ``choices`` raises
    :class:`NodeConfigError` naming the node, the parameter and the expected form. A parameter declared
    already (a managed node configured again after a cleanup) is read as it is now and checked again.
    """
    values = Params()
    for name, entry in spec.items():
        param = entry if isinstance(entry, Param) else Param(*entry)
        type_name = param.type_name()
        descriptor = ParameterDescriptor(name=name, type=_TYPES[type_name], read_only=param.read_only,
                                         description=param.description)
        if param.choices:
            descriptor.additional_constraints = 'one of: ' + ', '.join(map(str, param.choices))
        if param.range is not None:
            low, high = param.range
            if type_name == 'int':
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                                      to_value=float(high), step=0.0)]
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        where = f'parameter {name!r} of node {node.get_fully_qualified_name()}'
        # rclpy infers BYTE_ARRAY from an empty list and then refuses a string-list override: declare
        # such parameters by type, and give them the empty default only if nothing overrides it. A
        # read-only one takes no value after its declaration: it is declared writable and made read-only
        # once it has its value (else it stayed uninitialised, and the node's get_parameters service,
        # `ros2 param dump` with it, failed for every parameter asked together with it).
        empty = isinstance(default, list) and not default
        try:
            if node.has_parameter(name):  # an operator may have set it since (`ros2 param set`)
                value = node.get_parameter(name).value
            elif empty:
                ros_type = Parameter.Type(_TYPES[type_name])
                writable = copy.copy(descriptor)
                writable.read_only = False
                node.declare_parameter(name, ros_type, writable)
                try:
                    value = node.get_parameter(name).value
                except ParameterUninitializedException:
                    node.set_parameters([Parameter(name, ros_type, [])])
                    value = []
                if param.read_only:
                    node.set_descriptor(name, descriptor)
            else:
                value = node.declare_parameter(name, default, descriptor).value
        except InvalidParameterTypeException as error:
            raise NodeConfigError(f'{where} must be of type {type_name} ({param.description}); '
                                  f'{error}. Write e.g. 20.0, not 20, for a double.') from None
        except InvalidParameterValueException as error:
            raise NodeConfigError(f'{where}: {error} (allowed range {param.range})') from None
        except ParameterUninitializedException:
            raise NodeConfigError(f'{where} has no value: set it in the parameter file') from None
        if param.choices and value not in param.choices:
            raise NodeConfigError(f'{where} is {value!r}; choose one of {list(param.choices)}')
        values[name] = list(value) if isinstance(value, (list, tuple)) or hasattr(value, 'tolist') \
            else value
    return values


def clock_s(node: Node) -> float:
    """The node's clock (ROS time: simulated under use_sim_time) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


class StatusPublisher:
    """A node's state as JSON on a latched ``std_msgs/String`` topic (default ``~/status``).

    Every message carries ``node``, ``state`` (a short word such as ``ready``, ``running``,
    ``fault``), ``stamp`` (node clock, seconds) and any extra fields (``interfaces.NodeStatus``); late
    subscribers get the last one.
    """

    def __init__(self, node: Node, topic: str = '~/status') -> None:
        self._node = node
        self._publisher = node.create_publisher(String, topic, qos.LATCHED)
        self.last: dict[str, Any] = {}

    def publish(self, state: str, **fields: Any) -> dict[str, Any]:
        stamp = clock_s(self._node)
        message = NodeStatus(node=self._node.get_fully_qualified_name(), state=state, stamp=stamp, **fields)
        self.last = message
        self._publisher.publish(String(data=NODE_STATUS_JSON.encode(message)))
        return message


#: The states a managed node rests in (ROS 2 design "Managed nodes"; what `ros2 lifecycle get` prints).
UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = LIFECYCLE_STATES
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def _logged(transition: Callable) -> Callable:
    """rclpy turns an exception in a transition into ERROR (then ``on_error``) without a word: log it."""
    @functools.wraps(transition)
    def run(self, state):
        try:
            return transition(self, state)
        except Exception:
            self.get_logger().error(f'{transition.__name__} failed:\n{traceback.format_exc()}')
            raise
    return run


class ManagedNode(LifecycleNode):
    """A managed (lifecycle) node, as a driver-facing node should be: nothing it publishes on its lifecycle
    publishers leaves it unless it is active (ros2/demos ``lifecycle_py``).

    A subclass implements ``configure()``: read its parameters, create its lifecycle publishers,
    subscriptions and timers, raise :class:`NodeConfigError` (or ValueError) for a bad configuration; and
    may implement ``activate()``, ``deactivate()`` (called once its lifecycle publishers are off),
    ``release()`` (drop what is not a ROS entity) and ``publish_status()`` (called at every change). Here:

    * a failed configuration returns FAILURE: the reason is logged and kept (``config_error``) and the
      node stays unconfigured, the process up (a person or a lifecycle manager may configure it again,
      after ``ros2 param set`` if need be: :func:`declare_parameters` reads a declared parameter anew);
    * every publisher, subscription and timer ``configure()`` created is destroyed on cleanup, shutdown
      and error; what the constructor created (status, services) lives as long as the node;
    * :meth:`start` (end of the subclass's constructor) configures and activates it when asked
      (``autostart``): both runners bring it up with no lifecycle manager, and a bad configuration then
      ends the process (exit code 2) as any node's bad parameter does;
    * ``close()`` (run_node, at process stop) takes it through the shutdown transition;
    * ``lifecycle`` is the state it rests in;
    * hosted in one process with direct hand-offs (:class:`legion_ros.composition.IntraProcess`), it
      refuses a cleanup: the hand-offs hold on to its subscriptions and callbacks (deactivate and activate
      work as anywhere).
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.lifecycle = UNCONFIGURED
        self.config_error: str | None = None
        self._made: list = []

    def start(self, autostart: bool) -> None:
        """Configure and activate when ``autostart``: a configuration that fails then ends the process with
        its reason (:class:`NodeConfigError`), as any node's bad parameter does, so a launch with a wrong
        argument stops at once instead of running a graph that can never move the arm. Brought up by a
        person or a lifecycle manager (``autostart`` false), a failed configure leaves the process up."""
        if autostart:
            if self.trigger_configure() != SUCCESS:
                raise NodeConfigError(self.config_error or 'configure failed')
            self.trigger_activate()
        self.publish_status()

    def entities(self) -> set:
        return {*self.publishers, *self.subscriptions, *self.timers}

    @_logged
    def on_configure(self, state) -> TransitionCallbackReturn:
        before, error = self.entities(), None
        try:
            self.configure()
        except (NodeConfigError, ValueError) as caught:  # parameters, or settings the node's classes refuse
            error = caught
        finally:  # whatever happened, what it created so far goes again on failure (or on_error)
            self._made = [entity for entity in self.entities() if entity not in before]
        self.config_error = None if error is None else f'cannot configure: {error}'
        if error is not None:
            self.get_logger().error(self.config_error)
            return self._rest(UNCONFIGURED, FAILURE)
        return self._rest(INACTIVE, SUCCESS)

    @_logged
    def on_activate(self, state) -> TransitionCallbackReturn:
        self.lifecycle = ACTIVE
        self.activate()
        return super().on_activate(state)  # the lifecycle publishers start publishing

    @_logged
    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)  # the lifecycle publishers first: nothing leaves from here
        self.lifecycle = INACTIVE
        self.deactivate()
        return result

    @_logged
    def on_cleanup(self, state) -> TransitionCallbackReturn:
        if getattr(self, 'intra_process', None) is not None:  # legion_ros.composition.IntraProcess
            self.get_logger().error('cleanup refused: hosted with direct hand-offs, which are bound to this '
                                    'node\'s subscriptions at start (another node may take its input through '
                                    'them); stop the graph to change the parameters')
            return FAILURE
        return self._rest(UNCONFIGURED, SUCCESS)

    @_logged
    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self.lifecycle == ACTIVE:  # from active the state machine goes straight to shutting down
            self.on_deactivate(state)
        return self._rest(FINALIZED, SUCCESS)

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error(f'a transition from {state.label} failed (above): released, unconfigured')
        return self._rest(UNCONFIGURED, SUCCESS)

    def _rest(self, lifecycle: str, result: TransitionCallbackReturn) -> TransitionCallbackReturn:
        if lifecycle in (UNCONFIGURED, FINALIZED):
            for entity in self._made:
                if isinstance(entity, LifecyclePublisher):
                    self.destroy_lifecycle_publisher(entity)
                elif entity in set(self.timers):
                    self.destroy_timer(entity)
                elif entity in set(self.subscriptions):
                    self.destroy_subscription(entity)
                else:
                    self.destroy_publisher(entity)
            self._made = []
            self.release()
        self.lifecycle = lifecycle
        self.publish_status()
        return result

    def close(self) -> None:
        if self.lifecycle != FINALIZED:
            self.trigger_shutdown()

    def configure(self) -> None:
        raise NotImplementedError

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def release(self) -> None:
        pass

    def publish_status(self) -> None:
        pass


def run_node(node_cls: Callable[..., Node], args: list[str] | None = None, **node_kwargs: Any) -> NoReturn:
    """Run one node until SIGINT/SIGTERM, then end the process with its exit code (0 = clean shutdown).

    ``node_cls.executor_threads`` (default 1) picks the executor: 1 spins single-threaded (callbacks
    never overlap), more uses a MultiThreadedExecutor with that many threads (for nodes that block in
    one callback, e.g. waiting on a service, while others must go on). After spinning ends the node's
    ``close()`` runs if it has one (flush files, release hardware), then the node is destroyed. A node
    may end its own run with ``rclpy.try_shutdown()`` (exit code 0).

    Signals are handled here, not by rclpy: a SIGINT/SIGTERM only sets a flag that the spin loop
    checks every ``SPIN_POLL_S``, so a signal at any moment (even while the node is still being
    constructed) leads to the same orderly ``close()`` -> destroy -> shutdown sequence.
    """
    name = getattr(node_cls, '__name__', str(node_cls))
    return run_nodes([lambda: node_cls(**node_kwargs)], args, name=name)


class StopRequest:
    """SIGINT/SIGTERM of a node process: a request to stop, and a bound on how long stopping takes.

    The request is a flag the spin loop polls (:meth:`is_set`). It also arms a deadline
    (``faulthandler``'s watchdog, a C thread that needs no GIL): a process still alive
    ``deadline_s`` after the request, stuck in a callback, in ``close()``, in DDS teardown or in the
    interpreter's exit, prints the stack of every thread to stderr and exits with ``EXIT_CRASH``.
    Python runs signal handlers only in the main thread, between bytecodes; a main thread blocked in C
    would never see the signal, so the signal also wakes a helper thread through the wakeup fd.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, deadline_s: float | None = None) -> None:
        self.deadline_s = STOP_DEADLINE_S if deadline_s is None else deadline_s
        self._event = threading.Event()
        self._lock = threading.RLock()  # a second signal may arrive inside set(), on the same thread
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}
        read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_fd,), name='stop-request', daemon=True).start()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        """Request the stop (what a signal does); the deadline starts at the first request."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            faulthandler.dump_traceback_later(self.deadline_s, exit=True)

    def restore(self) -> None:
        """Give the signals back to their previous handlers; an armed deadline stays armed until exit."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        os.close(self._write_fd)  # ends the helper thread

    def _on_signal(self, _signum, _frame) -> None:
        self.set()

    def _watch(self, read_fd: int) -> None:
        with os.fdopen(read_fd, 'rb', buffering=0) as wakeups:
            while byte := wakeups.read(1):
                if byte[0] in self.SIGNALS:
                    self.set()


class DeferredCollection:
    """Python's cyclic garbage collection between callbacks instead of inside them.

    Automatic collection starts whenever allocations pass a threshold, i.e. in the middle of whichever
    callback allocates. In the decision path (Meta-World, MuJoCo and rclpy loaded: ~90k objects) a
    generation-1 collection took ~0.8 ms (up to 2 ms) and a full one 12 ms, every so many control
    cycles: a late or missed command. Here what is alive after start-up is frozen (never traversed
    again), automatic collection is off, and :meth:`collect_if_due`, called between callbacks, runs
    the generation Python's own thresholds would have run, at the same rate.
    """

    def __init__(self) -> None:
        gc.collect()
        gc.freeze()
        self.thresholds = gc.get_threshold()
        gc.disable()

    def collect_if_due(self) -> None:
        first, second, third = self.thresholds
        young, middle, old = gc.get_count()
        if young > first:
            gc.collect(2 if middle >= second and old >= third else 1 if middle >= second else 0)

    @staticmethod
    def close() -> None:
        gc.unfreeze()
        gc.enable()


_PR_SET_PDEATHSIG = 1


def stop_with_launcher() -> None:
    """SIGINT this process when the launcher named by ``LEGION_LAUNCHER_PID`` dies, however it dies
    (Linux), so that no node goes on commanding the arm without the graph that started it; ``legion
    launch`` sets the same for its children before they start. Nothing without the variable (a node
    run by hand or by another launch file)."""
    launcher = os.environ.get(LAUNCHER_VAR, '')
    if not launcher.isdigit() or not sys.platform.startswith('linux'):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    if os.getppid() != int(launcher):  # it died before the request: nobody will signal us
        os.kill(os.getpid(), signal.SIGINT)


def run_nodes(factories: list[Callable[[], Node]], args: list[str] | None = None, *,
              name: str = 'legion', connect: Callable[[list[Node]], Any] | None = None,
              control_loop: bool = False) -> NoReturn:
    """Run several nodes in one process and one executor (see :func:`run_node`), constructed in order;
    ``connect(nodes)`` runs once all exist (e.g. :class:`legion_ros.composition.IntraProcess`).
    ``control_loop``: a process on the command path of every control cycle. It spins rclpy's C++
    EventsExecutor (experimental in Jazzy; the single-threaded executor rebuilds its wait set in Python
    on every wake-up; ``LEGION_EVENTS_EXECUTOR=0`` in the environment falls back to it) and collects
    garbage only between callbacks (:class:`DeferredCollection`)."""
    stop = StopRequest()
    stop_with_launcher()  # after the handlers: its SIGINT is a stop request like any other
    lease = apply_ros_defaults()  # before rclpy.init: discovery is read when the context starts
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    nodes: list[Node] = []
    code = EXIT_OK
    try:
        for factory in factories:
            nodes.append(factory())
        if connect is not None:
            connect(nodes)
        threads = max(int(getattr(node, 'executor_threads', 1)) for node in nodes)
        if threads > 1:
            executor = MultiThreadedExecutor(num_threads=threads)
        elif control_loop and os.environ.get('LEGION_EVENTS_EXECUTOR', '1') != '0':
            from rclpy.experimental import EventsExecutor
            executor = EventsExecutor()
        else:
            executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        collection = DeferredCollection() if control_loop else None
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=SPIN_POLL_S)
                if collection is not None:
                    collection.collect_if_due()
        finally:
            if collection is not None:
                collection.close()
            executor.shutdown(timeout_sec=1.0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # a shutdown requested from outside the spin loop
    except NodeConfigError as error:
        _log(nodes[0] if len(nodes) == 1 else None, name).fatal(f'cannot start: {error}')
        code = EXIT_CONFIG
    except Exception:  # a crash: say where, and let the runner report this node as dead
        _log(nodes[0] if len(nodes) == 1 else None, name).fatal(f'crashed:\n{traceback.format_exc()}')
        code = EXIT_CRASH
    finally:
        for node in reversed(nodes):
            close = getattr(node, 'close', None)
            if callable(close):
                try:
                    close()
                except Exception:
                    print(f'{node.get_name()}: close() failed:\n{traceback.format_exc()}', file=sys.stderr,
                          flush=True)
                    code = code or EXIT_CRASH
            deliver_last_messages(node, LAST_MESSAGES_S / len(nodes))
            node.destroy_node()
        rclpy.try_shutdown()
        if lease is not None:
            lease.release()
        stop.restore()
    end_process(code)


def deliver_last_messages(node: Node, timeout_s: float) -> None:
    """Wait up to ``timeout_s`` in all until the subscribers of ``node``'s reliable publishers have
    acknowledged everything published (best effort ones never wait)."""
    deadline = time.monotonic() + timeout_s
    for publisher in list(node.publishers):
        left = max(deadline - time.monotonic(), 0.0)
        with contextlib.suppress(Exception):  # a publisher its node destroyed already: nothing to deliver
            publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))


def end_process(code: int) -> NoReturn:
    """End a node process now with ``code``, once its nodes are closed and destroyed.

    ``atexit`` handlers run (multiprocessing joins its workers, logging flushes) and stdout/stderr are
    flushed, but the interpreter's finalization is skipped: tearing down torch, MuJoCo and DDS module by
    module took the policy node 1.2-7.6 s after it was closed and destroyed (2 busy cores; 0.1-0.2 s
    without it), time the launcher waits for, and DDS teardown is a place a stop can hang
    (docs/architecture.md, rule 2).
    """
    atexit._run_exitfuncs()  # what Py_Finalize would run first; the rest is only teardown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nobody left to read it
            stream.flush()
    os._exit(code)


def _log(node: Node | None, name: str):
    return node.get_logger() if node is not None else rclpy.logging.get_logger(name)
