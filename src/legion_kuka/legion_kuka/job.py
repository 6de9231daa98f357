"""Jobs of any length: a sequence of workcells, every object's state carried from one to the next.

A workcell holds at most :data:`~legion_kuka.workcell.MAX_STATIONS` stations (90 deg apart about A1:
each station's objects and goals spread over about +-35 deg as seen from the base, and A1 reaches
+-170 deg), so a job of more distinct tasks than that needs more than one scene. It runs as a sequence
of workcells (:func:`plan_workcells`): consecutive steps share a workcell while its stations hold their
tasks; the next step that does not fit starts the next workcell. A station is its task's Meta-World
scene file (:func:`station_object`: the drawer of drawer-open and drawer-close, the window of
window-open and window-close), and a workcell never holds the same object twice: a step on an object
that already stands in the workcell under another task (close the window it just opened) starts the
next workcell, where that object is the one the step before left.

Carrying state (:class:`ObjectState`, :meth:`legion_kuka.workcell.WorkcellTwin.enter`): when the twin
changes workcell it keeps, per object, where Meta-World placed it (the task's random vector: object and
goal positions) and every joint of its station (slides, hinges, free bodies; in the station's own frame).
A later workcell whose station has that object places it the same way and puts those joints back, so
the window that window-open left open is the one window-close starts from, and a station that comes back
is as its last step left it, at rest. Only the arm jumps at a change of workcell (to the next step's
start, as with one scene per step), which the twin announces.

Why not more stations in one scene: six tasks at 90 deg need more than A1's 340 deg, and at the 68 deg
that would fit, neighbouring stations' objects (+-35 deg each) overlap; a ring is no answer either,
since A1 cannot turn through the back. A sequence of workcells holds any number of tasks.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from legion_kuka.stations import MAX_STATIONS, station_order


@cache
def station_object(task: str) -> str:
    """The object a task's station is: the stem of its Meta-World scene file (``sawyer_window_horizontal``
    for window-open and window-close). Tasks with the same object work on the same thing."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    if task not in ALL_V3_ENVIRONMENTS:
        raise ValueError(f'unknown Meta-World task {task!r}')
    return Path(ALL_V3_ENVIRONMENTS[task].model_name.fget(None)).stem  # (a constant path per class)


@dataclass(frozen=True)
class WorkcellPlan:
    """One workcell of a job: its stations (station order, :func:`~legion_kuka.workcell.station_order`)
    and the job's steps (indices) it serves, consecutive."""

    stations: tuple[str, ...]
    steps: tuple[int, ...]


def plan_workcells(tasks: Sequence[str], object_of: Callable[[str], str] = station_object,
                   max_stations: int = MAX_STATIONS) -> list[WorkcellPlan]:
    """The workcells a job that visits ``tasks`` in this order runs through (see module): a step stays in
    the workcell of the step before if its task is a station there, or if there is room for one more
    station and its object is not there yet; otherwise it starts the next workcell."""
    if not tasks:
        raise ValueError('a job needs at least one step')
    groups: list[tuple[list[str], list[int]]] = []
    for step, task in enumerate(tasks):
        if groups:
            stations, steps = groups[-1]
            if task in stations or (len(stations) < max_stations
                                    and object_of(task) not in {object_of(t) for t in stations}):
                if task not in stations:
                    stations.append(task)
                steps.append(step)
                continue
        groups.append(([task], [step]))
    # (stations in the order the steps first visit them)
    return [WorkcellPlan(tuple(station_order(stations)), tuple(steps)) for stations, steps in groups]


@dataclass(frozen=True)
class ObjectState:
    """An object's state as its station last held it (station frame): what carries it into a later
    workcell. ``rand_vec`` is Meta-World's placement of the task's objects and goal; ``qpos`` the
    station's joints in order (a free joint: 7 values)."""

    object: str
    task: str
    rand_vec: np.ndarray | None
    joint_types: tuple[int, ...]
    qpos: np.ndarray
