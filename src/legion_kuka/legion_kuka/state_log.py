"""The twin's state log: what it takes to draw a run again after it, recorded beside the control loop.

A video of a run must not cost the run: the twin keeps stepping at its controller rate while nothing
is drawn, and the frames come later, in another process (:mod:`legion_kuka.video`). What that process
needs is small: the scene's identity (its tasks, seed, workcell or not: a twin built from these is the
same scene, Meta-World's reset placing objects and goals for the seed) and, at a modest rate, every
joint position of the scene (MuJoCo's ``qpos``: arm, fingers, objects, drawers, windows), from which
the whole picture follows by forward kinematics. Recorded joint states and object poses, as the bag
has them, would not do: the bag has neither the fingers nor an articulated object's joint.

:class:`StateRecorder` keeps that in preallocated arrays (one row copy per record, about a
microsecond) and a few timestamped notes (the instruction's active step, a step's success), and
:func:`save_state_log` writes it atomically (temporary file, then rename): a crash while writing
leaves the previous file whole, never a torn one.

File (``.npz``, numpy only): ``format`` (:data:`FORMAT`), ``meta`` (JSON: a list of segments, each
``{"scene": {...}, "rows": N}``, and the notes ``[{"t", "topic", "data"}]``), and per segment ``i``
``times_i`` ``[N]`` (the twin's simulated time, s) and ``qpos_i`` ``[N, nq]``. A segment is one scene:
a process that loads another scene starts a new one; simulated time runs on across segments.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from legion_core.atomic_file import atomic_replace

FORMAT = 'legion-state-log/1'
#: Notes kept at most (a job has a few per step; a hostile publisher must not fill the memory).
MAX_NOTES = 10_000


@dataclass(frozen=True)
class Scene:
    """What rebuilds a twin's scene: ``tasks`` are a workcell's stations (``workcell``) or the one task,
    ``task`` the active one when the segment began; ``placements`` (object, Meta-World's placement vector)
    of the objects a job carried into this workcell from an earlier one (a window is where the window-open
    step left it, not where window-close would put it), which a state's joints alone do not say."""

    tasks: tuple[str, ...]
    task: str
    seed: int
    workcell: bool = False
    profile: str = 'lbr'
    control_rate_hz: float = 100.0
    placements: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @classmethod
    def of(cls, twin: Any) -> Scene:
        """The scene ``twin`` (a :class:`~legion_kuka.twin.Twin` or a workcell) holds now."""
        stations = tuple(getattr(twin, 'tasks', ()) or ())
        carried = twin.carried_placements() if hasattr(twin, 'carried_placements') else {}
        placements = tuple((name, tuple(float(x) for x in vector))
                           for name, vector in sorted(carried.items()))
        return cls(tasks=stations or (twin.task,), task=twin.task, seed=int(twin.seed),
                   workcell=bool(stations), profile=twin.profile, control_rate_hz=twin.control_rate_hz,
                   placements=placements)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        placements = tuple((str(name), tuple(float(x) for x in vector))
                           for name, vector in data.get('placements') or ())
        return cls(tasks=tuple(data['tasks']), task=data['task'], seed=int(data['seed']),
                   workcell=bool(data.get('workcell', False)), profile=data.get('profile', 'lbr'),
                   control_rate_hz=float(data.get('control_rate_hz', 100.0)), placements=placements)

    def build(self) -> Any:
        """A twin of this scene, freshly reset (MuJoCo and Meta-World: imported here)."""
        if self.workcell:
            from legion_kuka.workcell import WorkcellTwin

            return WorkcellTwin(self.tasks, self.task, seed=self.seed, profile=self.profile,
                                control_rate_hz=self.control_rate_hz,
                                placements={name: np.array(vector) for name, vector in self.placements})
        from legion_kuka.twin import Twin

        return Twin(self.task, seed=self.seed, profile=self.profile, control_rate_hz=self.control_rate_hz)


@dataclass
class Segment:
    """The states recorded in one scene: ``times`` ``[N]`` (s), ``qpos`` ``[N, nq]``."""

    scene: Scene
    times: np.ndarray
    qpos: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class StateLog:
    """A whole log: its segments in order and its notes (``{"t", "topic", "data"}``, in time order)."""

    segments: list[Segment] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(s) for s in self.segments)


class StateRecorder:
    """Records a twin's states into memory; cheap enough for every control cycle's callback.

    ``every`` control cycles one state is kept (:meth:`due` tells when), so the log's rate is the
    controller rate divided by ``every`` (100 Hz / 4 = 25 Hz, a video's frame rate)."""

    def __init__(self, every: int = 4, capacity: int = 4096) -> None:
        if int(every) != every or every < 1:
            raise ValueError(f'every must be a positive whole number of control cycles, got {every}')
        self.every = int(every)
        self._capacity = max(16, int(capacity))
        self._closed: list[Segment] = []
        self._scene: Scene | None = None
        self._times = np.zeros(0)
        self._qpos = np.zeros((0, 0))
        self._rows = 0
        self.notes: list[dict] = []
        self.max_notes = MAX_NOTES
        self.dropped_notes = 0

    def begin(self, scene: Scene, nq: int) -> None:
        """A new segment (a scene was loaded); the current one, if it holds states, is kept."""
        self._close_segment()
        self._scene = scene
        self._times = np.zeros(self._capacity)
        self._qpos = np.zeros((self._capacity, int(nq)))
        self._rows = 0

    def due(self, cycle: int) -> bool:
        return cycle % self.every == 0

    def record(self, t: float, qpos: np.ndarray) -> None:
        """One state at simulated time ``t`` (s); ``qpos`` is copied."""
        if self._scene is None:
            raise RuntimeError('begin() a segment before recording states')
        if self._rows == len(self._times):  # double the buffers: amortised O(1) per record
            self._times = np.concatenate([self._times, np.zeros(len(self._times))])
            self._qpos = np.concatenate([self._qpos, np.zeros_like(self._qpos)])
        self._times[self._rows] = t
        self._qpos[self._rows] = qpos
        self._rows += 1

    def note(self, t: float, topic: str, data: Any) -> bool:
        """Something that happened at simulated time ``t`` (an instruction step started, succeeded);
        False (and counted in ``dropped_notes``) once ``max_notes`` are kept: a topic flooded with
        messages must not grow the twin's memory without bound."""
        if len(self.notes) >= self.max_notes:
            self.dropped_notes += 1
            return False
        self.notes.append({'t': float(t), 'topic': str(topic), 'data': data})
        return True

    def _close_segment(self) -> None:
        if self._scene is not None and self._rows:
            self._closed.append(Segment(self._scene, self._times[:self._rows].copy(),
                                        self._qpos[:self._rows].copy()))
        self._scene = None
        self._rows = 0

    def snapshot(self) -> StateLog:
        """Everything so far, as copies (safe to write from another thread while recording goes on)."""
        segments = list(self._closed)
        if self._scene is not None and self._rows:
            segments.append(Segment(self._scene, self._times[:self._rows].copy(),
                                    self._qpos[:self._rows].copy()))
        return StateLog(segments, [dict(n) for n in self.notes])

    @property
    def rows(self) -> int:
        return sum(len(s) for s in self._closed) + self._rows


def save_state_log(path: str | Path, log: StateLog) -> Path:
    """Write ``log`` to ``path`` atomically (see module for the format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {'segments': [{'scene': {**asdict(s.scene), 'tasks': list(s.scene.tasks),
                                    'placements': [[name, list(v)] for name, v in s.scene.placements]},
                          'rows': len(s)}
                         for s in log.segments],
            'notes': log.notes}
    arrays = {'format': np.array(FORMAT), 'meta': np.array(json.dumps(meta))}
    for i, segment in enumerate(log.segments):
        arrays[f'times_{i}'] = segment.times
        arrays[f'qpos_{i}'] = segment.qpos
    # 0644: readable by others, as a plain write under the usual umask would be.
    return atomic_replace(path, lambda f: np.savez(f, **arrays), mode=0o644)


def load_state_log(path: str | Path) -> StateLog:
    """Read a file of :func:`save_state_log`; ValueError naming the file if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data['format']) != FORMAT:
                raise ValueError(f'format {data["format"]!s}, expected {FORMAT}')
            meta = json.loads(str(data['meta']))
            segments = [Segment(Scene.from_dict(s['scene']), data[f'times_{i}'], data[f'qpos_{i}'])
                        for i, s in enumerate(meta['segments'])]
    except FileNotFoundError:
        raise
    except Exception as error:  # not an npz, a missing key, bad JSON
        raise ValueError(f'{path}: not a state log of the twin ({type(error).__name__}: {error})') from None
    return StateLog(segments, list(meta.get('notes') or []))
