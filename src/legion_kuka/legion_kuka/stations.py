"""How many task stations a workcell holds and in which order they stand: the layout shared by the
workcell (:mod:`legion_kuka.workcell`, which builds and runs it) and the job planner
(:mod:`legion_kuka.job`, which splits a job into workcells), so that neither imports the other's
module for it.
"""
from __future__ import annotations

from collections.abc import Sequence

#: Stations of one workcell: ahead, left and right of the base, 90 deg apart about A1 (see
#: :mod:`legion_kuka.workcell`).
MAX_STATIONS = 3


def station_order(tasks: Sequence[str]) -> list[str]:
    """Stations for a job that visits ``tasks`` in this order: the distinct tasks placed so that
    consecutive ones are neighbours (three: the second ahead, the first left, the third right), so
    every move between them is one quarter turn of A1, never a half turn."""
    distinct = list(dict.fromkeys(tasks))
    if not 1 <= len(distinct) <= MAX_STATIONS:
        raise ValueError(f'a workcell holds 1 to {MAX_STATIONS} distinct tasks, got {len(distinct)}')
    return [distinct[1], distinct[0], distinct[2]] if len(distinct) == 3 else distinct
