"""ROS discovery defaults: DDS traffic stays on loopback, each run gets its own domain.

Rules, applied by every ROS process the project starts (nodes, the runner, tests, CI):

* ``ROS_AUTOMATIC_DISCOVERY_RANGE`` defaults to ``LOCALHOST``. The PyPI Jazzy wheels ignore
  ``ROS_LOCALHOST_ONLY``; without this variable Fast DDS multicasts on the machine's network.
* ``ROS_DOMAIN_ID``: a value the user exported always wins. Otherwise a run *leases* a free non-zero
  domain (an advisory file lock per domain id under the user's runtime directory), so concurrent runs
  and test sessions never see each other. A run on an exported domain claims that domain's lock too
  when it is free (:func:`claim_domain`), so that no run leasing one picks it meanwhile (a test session
  that leased the domain of a running ``ROS_DOMAIN_ID=78 legion sim`` once published its steps into that
  graph, whose policy then acted on them: docs/experts.md). A graph started by ``legion launch`` /
  ``legion sim`` marks its lease as a graph, and client commands (``legion instruct``) join the newest
  running graph.
* ``LEGION_LAUNCHER_PID``: set by ``ros2 launch`` (``launch_mixins``) for each node it starts; the node
  stops when that process dies, even by SIGKILL (``node_base``), as under ``legion launch``.

No rclpy import here: the environment must be settled before ``rclpy.init()``.
"""
from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

DISCOVERY_VAR = 'ROS_AUTOMATIC_DISCOVERY_RANGE'
DOMAIN_VAR = 'ROS_DOMAIN_ID'
LAUNCHER_VAR = 'LEGION_LAUNCHER_PID'
# Fast DDS maps domain d to UDP ports 7400 + 250 d + ...; ids above 101 collide with Linux's
# ephemeral port range, and 0 is everybody's default.
DOMAIN_RANGE = range(1, 102)


def lease_dir() -> Path:
    base = os.environ.get('XDG_RUNTIME_DIR') or tempfile.gettempdir()
    path = Path(base) / f'legion_ros-{os.getuid()}' / 'domains'
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class DomainLease:
    """An exclusive claim on one ROS domain id, held until :meth:`release` or process exit."""

    domain_id: int
    role: str
    _file: object = field(repr=False, default=None)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> DomainLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lease(directory: Path, domain_id: int, role: str) -> DomainLease | None:
    """The lease of ``domain_id`` if nobody holds it, else None."""
    # The open handle is the lock: it must outlive this function, as long as the lease.
    handle = open(directory / f'{domain_id}.lock', 'a+')  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f'{role} {os.getpid()}\n')
    handle.flush()
    return DomainLease(domain_id, role, handle)


def lease_domain(role: str = 'run', rng: random.Random | None = None) -> DomainLease:
    """Claim a free domain id in 1..101; ``role`` is ``graph`` for a running node graph."""
    candidates = list(DOMAIN_RANGE)
    (rng or random.Random()).shuffle(candidates)
    directory = lease_dir()
    for domain_id in candidates:
        lease = _try_lease(directory, domain_id, role)
        if lease is not None:
            return lease
    raise RuntimeError(f'all ROS domains {DOMAIN_RANGE.start}..{DOMAIN_RANGE.stop - 1} are leased '
                       f'by other runs (see {directory}); set ROS_DOMAIN_ID yourself')


def claim_domain(value: str, role: str = 'run') -> DomainLease | None:
    """The lease of a domain the user chose (``ROS_DOMAIN_ID``'s value) when it is free, so that runs
    leasing a domain skip it; None when another process holds it (a graph this run joins, or the user's
    own second run: the user's choice still wins) or when it is not a leasable id."""
    try:
        domain_id = int(value)
    except (TypeError, ValueError):
        return None
    if domain_id not in DOMAIN_RANGE:
        return None
    return _try_lease(lease_dir(), domain_id, role)


def _held(path: Path) -> bool:
    with open(path, 'a+') as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def running_graph_domain() -> int | None:
    """The domain of the newest graph started by ``legion launch``/``legion sim``, if any runs."""
    graphs = []
    for path in lease_dir().glob('*.lock'):
        try:
            role = path.read_text().split()[0]
        except (IndexError, OSError):
            continue
        if role == 'graph' and _held(path):
            graphs.append((path.stat().st_mtime, int(path.stem)))
    return max(graphs)[1] if graphs else None


def apply_ros_defaults(environ: MutableMapping[str, str] | None = None, role: str = 'run',
                       join_graph: bool = False) -> DomainLease | None:
    """Settle discovery variables in ``environ`` (default ``os.environ``) before ``rclpy.init()``.

    Returns the lease taken, if one was needed or the exported domain was free to claim
    (:func:`claim_domain`); keep it alive for the run. With ``join_graph``, a running graph's domain is
    used instead of a fresh lease (clients talking to ``legion sim``).
    """
    environ = os.environ if environ is None else environ
    environ.setdefault(DISCOVERY_VAR, 'LOCALHOST')
    if environ.get(DOMAIN_VAR):
        return claim_domain(environ[DOMAIN_VAR], role)
    if join_graph:
        domain = running_graph_domain()
        if domain is not None:
            environ[DOMAIN_VAR] = str(domain)
            return None
    lease = lease_domain(role)
    environ[DOMAIN_VAR] = str(lease.domain_id)
    return lease


def describe(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """What a ROS process started now would use (for ``legion doctor`` and logs)."""
    environ = os.environ if environ is None else environ
    graph = running_graph_domain()
    domain = environ.get(DOMAIN_VAR) or (
        f'leased per run from {DOMAIN_RANGE.start}..{DOMAIN_RANGE.stop - 1}'
        + (f' (running graph on {graph})' if graph is not None else ''))
    return {
        DISCOVERY_VAR: environ.get(DISCOVERY_VAR, 'LOCALHOST (project default)'),
        DOMAIN_VAR: domain,
        'RMW_IMPLEMENTATION': environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)'),
    }
