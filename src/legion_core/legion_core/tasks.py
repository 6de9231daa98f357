"""Task streams: which Meta-World tasks an agent meets, and in which order.

A *stream* is an ordered list of Meta-World v3 task names. Three are built in:

- ``legion10``: the LEGION paper's stream, in its curriculum order (legion-original.md §4.1). It differs
  from MT10 in faucet-open (for drawer-open) and peg-unplug-side (for peg-insert-side).
- ``mt10``: Meta-World's MT10 list, in Meta-World's order.
- ``cw10``: the Continual World CW10 sequence.

``resolve_stream`` turns a stream name or a list of task names into a validated list, in the
curriculum (given) order, reversed, or a seeded random permutation, as the paper's three orders.
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

TASK_SUFFIX = '-v3'

LEGION10: tuple[str, ...] = (
    'reach-v3', 'push-v3', 'pick-place-v3', 'door-open-v3', 'faucet-open-v3', 'drawer-close-v3',
    'button-press-topdown-v3', 'peg-unplug-side-v3', 'window-open-v3', 'window-close-v3',
)
MT10: tuple[str, ...] = (
    'reach-v3', 'push-v3', 'pick-place-v3', 'door-open-v3', 'drawer-open-v3', 'drawer-close-v3',
    'button-press-topdown-v3', 'peg-insert-side-v3', 'window-open-v3', 'window-close-v3',
)
CW10: tuple[str, ...] = (
    'hammer-v3', 'push-wall-v3', 'faucet-close-v3', 'push-back-v3', 'stick-pull-v3',
    'handle-press-side-v3', 'push-v3', 'shelf-place-v3', 'window-close-v3', 'peg-unplug-side-v3',
)
STREAMS: dict[str, tuple[str, ...]] = {'legion10': LEGION10, 'mt10': MT10, 'cw10': CW10}
ORDERS: tuple[str, ...] = ('curriculum', 'reverse', 'random')


def all_task_names() -> list[str]:
    """Every Meta-World v3 task name (imports Meta-World's env registry, not MuJoCo models)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def normalise_task_name(name: str, known: Sequence[str] | None = None) -> str:
    """'reach' or 'reach-v3' → 'reach-v3'; an unknown name → ValueError with close matches."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f'a task name must be a non-empty string, got {name!r}')
    known = list(known) if known is not None else all_task_names()
    full = name.strip().lower()
    if not full.endswith(TASK_SUFFIX):
        full += TASK_SUFFIX
    if full in known:
        return full
    close = difflib.get_close_matches(full, known, n=3, cutoff=0.6)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    short = ', '.join(sorted(n.removesuffix(TASK_SUFFIX) for n in known))
    raise ValueError(f'unknown Meta-World task {name!r}.{hint} Known tasks (with or without '
                     f'{TASK_SUFFIX!r}): {short}')


def resolve_stream(spec: str | Sequence[str], order: str = 'curriculum', seed: int = 0, *,
                   allow_repeats: bool = False) -> list[str]:
    """The ordered task list for a stream name ('legion10', 'mt10', 'cw10') or a list of task names.

    ``order``: 'curriculum' keeps the given order, 'reverse' reverses it, 'random' is a permutation
    drawn from ``numpy.random.default_rng(seed)`` (the same seed gives the same order everywhere).
    A single string that is not a stream name is read as a comma-separated task list.
    """
    if order not in ORDERS:
        close = difflib.get_close_matches(str(order), ORDERS, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise ValueError(f'unknown stream order {order!r}.{hint} Valid orders: {", ".join(ORDERS)}')
    if isinstance(spec, str):
        key = spec.strip().lower()
        tasks = list(STREAMS[key]) if key in STREAMS else [p for p in key.split(',') if p.strip()]
    else:
        tasks = list(spec)
    if not tasks:
        raise ValueError(f'empty task stream {spec!r}: give a stream name ({", ".join(STREAMS)}) '
                         'or at least one task name')
    known = all_task_names()
    try:
        tasks = [normalise_task_name(name, known) for name in tasks]
    except ValueError as error:
        close = difflib.get_close_matches(str(spec).strip().lower(), STREAMS, n=1) \
            if isinstance(spec, str) else []
        if close:  # a lone misspelt stream name reads as an unknown task: say what was meant
            raise ValueError(f'unknown stream {spec!r}. Did you mean {close[0]!r}? Streams: '
                             f'{", ".join(STREAMS)}, or a list of task names') from error
        raise
    repeated = sorted({name for name in tasks if tasks.count(name) > 1})
    if repeated and not allow_repeats:
        raise ValueError(f'task stream lists {", ".join(repeated)} more than once; pass '
                         'allow_repeats=True for a stream that revisits tasks (few-shot re-learning)')
    if order == 'reverse':
        tasks.reverse()
    elif order == 'random':
        permutation = np.random.default_rng(seed).permutation(len(tasks))
        tasks = [tasks[i] for i in permutation]
    return tasks
