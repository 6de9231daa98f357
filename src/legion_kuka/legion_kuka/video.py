"""A video of a run on the twin, drawn after it from the twin's state log (``legion sim --video``).

The twin records its scene and states while it runs (:mod:`legion_kuka.state_log`, off the control
loop's way: a row copy every 4th control cycle); afterwards, in a process of its own, this module builds
the same scene again (same tasks, seed, workcell), puts it at each recorded state and draws it offscreen
(:mod:`legion_core.video`), one frame per 1/fps of the twin's time, so the video plays at the twin's
pace. Each frame carries the instruction's active step and the last step's result, taken from the notes
the twin recorded (``/legion/active_step``, ``/legion/step_success``) and, where a job summary is
given (``legion sim --json``'s result), the step count and the failures.

``legion kuka video LOG... -o FILE`` renders logs again later; ``python -m legion_kuka.video`` is the
same command for a child process (legion sim runs it so, with ``MUJOCO_GL=egl``).

Trimming (the default for a job): the twin runs while the graph comes up and after the job ends; a
log's frames start ``LEAD_S`` before its first step and end ``TAIL_S`` after the instruction ended.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from legion_core.video import GREEN, RED, WHITE
from legion_kuka.state_log import Scene, StateLog, load_state_log

LEAD_S = 1.0
TAIL_S = 2.0
DEFAULT_SIZE = (640, 360)
#: The view of a workcell of several stations (azimuth, elevation in degrees; framing margin): from
#: high behind the arm, every station in sight (one station: legion_core.video.TASK_VIEW, from the side).
WORKCELL_VIEW = (90.0, -55.0, 1.15)


@dataclass(frozen=True)
class Frame:
    """One video frame: which log, segment and row it shows, at which of the twin's times."""

    log: int
    segment: int
    row: int
    t: float


def log_rate_hz(log: StateLog) -> float:
    """The rate the log was recorded at (rows per simulated second)."""
    gaps = [np.diff(s.times) for s in log.segments if len(s) > 1]
    if not gaps:
        return 25.0
    return float(round(1.0 / float(np.median(np.concatenate(gaps))), 6))


def job_window(log: StateLog) -> tuple[float, float] | None:
    """(start, end) of the job in ``log``'s time: from ``LEAD_S`` before its first active step to
    ``TAIL_S`` after the step that ended the instruction; None without steps."""
    steps = [n for n in log.notes if n['topic'] == 'active_step' and isinstance(n['data'], dict)]
    started = [n['t'] for n in steps if n['data'].get('task')]
    if not started:
        return None
    ended = [n['t'] for n in steps if not n['data'].get('task') and n['t'] >= started[0]]
    return started[0] - LEAD_S, (ended[-1] + TAIL_S if ended else math.inf)


def plan_frames(logs: Sequence[StateLog], fps: float, trim: bool = True) -> list[Frame]:
    """The frames of a video of ``logs`` (in order) at ``fps``: each segment from its first to its
    last state, one frame per 1/fps of simulated time, showing the latest state at that time."""
    frames = []
    for k, log in enumerate(logs):
        window = job_window(log) if trim else None
        for i, segment in enumerate(log.segments):
            times = segment.times
            if not len(times):
                continue
            start, end = float(times[0]), float(times[-1])
            if window is not None:
                start, end = max(start, window[0]), min(end, window[1])
            if end < start:
                continue
            count = math.floor((end - start) * fps + 1e-6) + 1
            at = start + np.arange(count) / fps
            rows = np.clip(np.searchsorted(times, at + 1e-9, side='right') - 1, 0, len(times) - 1)
            frames += [Frame(k, i, int(r), float(t)) for r, t in zip(rows, at, strict=True)]
    return frames


def step_note(data: Any) -> bool:
    """A step as the instruction node and the task monitor publish it (``{sequence_id, index, task,
    ...}``); anything else a topic carried is not shown."""
    return (isinstance(data, dict) and isinstance(data.get('sequence_id'), int)
            and (data.get('index') is None or isinstance(data['index'], int))
            and (data.get('task') is None or isinstance(data['task'], str))
            and (data.get('instruction') is None or isinstance(data['instruction'], str)))


class Captions:
    """What each frame says: the active step of the instruction and the last step's result."""

    def __init__(self, log: StateLog, job: dict | None = None) -> None:
        self.steps = [(n['t'], n['data']) for n in log.notes
                      if n['topic'] == 'active_step' and step_note(n['data'])]
        self.successes = {(d['sequence_id'], d['index']): t for t, d in
                          ((n['t'], n['data']) for n in log.notes if n['topic'] == 'step_success')
                          if step_note(d) and d.get('success') is True}
        self.job = job or {}
        self.job_steps = list(self.job.get('steps') or [])
        # The last result an earlier log showed (one log per twin process: per-step scenes), until this
        # log knows one of its own.
        self.carried: tuple[str, tuple[int, int, int]] | None = None

    def _outcome(self, i: int, t: float) -> tuple[str, tuple[int, int, int]] | None:
        """How step note ``i`` ended, as known at ``t``: its success note, or, once the next step
        started, the job's result for it; None while it runs."""
        _, step = self.steps[i]
        success = self.successes.get((step.get('sequence_id'), step.get('index')))
        if success is not None and success <= t:
            return 'succeeded', GREEN
        if i + 1 >= len(self.steps) or self.steps[i + 1][0] > t:
            return None
        index = step.get('index')
        if isinstance(index, int) and index < len(self.job_steps):
            return ('succeeded', GREEN) if self.job_steps[index].get('success') else ('failed', RED)
        return 'ended', WHITE

    def lines(self, t: float, clock_s: float) -> tuple[list[str], list[tuple[int, int, int]]]:
        """The caption at the twin's time ``t``, with ``clock_s`` (the video's time) shown."""
        active = [i for i, (when, _) in enumerate(self.steps) if when <= t]
        current = self.steps[active[-1]][1] if active else None
        total = f'/{len(self.job_steps)}' if self.job_steps else ''
        if current is None:
            first = 'waiting for the instruction'
        elif current.get('task'):
            first = (f'step {(current.get("index") or 0) + 1}{total}: {current.get("instruction") or ""}'
                     f'  [{current["task"]}]')
        elif self.job_steps:
            done = sum(bool(s.get('success')) for s in self.job_steps)
            first = f'instruction done: {done}/{len(self.job_steps)} steps succeeded'
        else:
            first = 'instruction done'
        result = self.last_result(t)
        second = f't = {clock_s:5.1f} s' + (f'    {result[0]}' if result else '')
        return [first, second], [WHITE, result[1] if result else WHITE]

    def last_result(self, t: float = math.inf) -> tuple[str, tuple[int, int, int]] | None:
        """('step N succeeded', colour) of the latest step whose result is known at ``t``."""
        for i in reversed([i for i, (when, _) in enumerate(self.steps) if when <= t]):
            step = self.steps[i][1]
            outcome = self._outcome(i, t) if step.get('task') else None
            if outcome is not None:
                return f'step {(step.get("index") or 0) + 1} {outcome[0]}', outcome[1]
        return self.carried


def captions_of(logs: Sequence[StateLog], job: dict | None = None) -> list[Captions]:
    """The captions of each log, each starting from the last result the one before showed."""
    captions = [Captions(log, job) for log in logs]
    for before, after in itertools.pairwise(captions):
        after.carried = before.last_result()
    return captions


def _view(scene: Scene) -> tuple[float, float, float]:
    from legion_core.video import TASK_VIEW

    return WORKCELL_VIEW if len(scene.tasks) > 1 else TASK_VIEW


def render_state_logs(paths: Sequence[str | Path], out: str | Path, *, size: tuple[int, int] = DEFAULT_SIZE,
                      fps: float | None = None, job: dict | None = None, trim: bool = True,
                      progress: bool = True) -> dict[str, Any]:
    """Render the state logs ``paths`` (in order: one per twin process of the run) into the video
    ``out`` (``.mp4`` or ``.gif``); returns what was made: frames, seconds, render time, bytes."""
    from legion_core.video import OffscreenRenderer, VideoError, VideoWriter, caption, overview_camera

    started = time.perf_counter()
    logs = [load_state_log(p) for p in paths]
    if not logs or not any(log.rows for log in logs):
        raise VideoError(f'no recorded states in {", ".join(map(str, paths)) or "(no logs)"}')
    fps = float(fps) if fps else log_rate_hz(logs[0])
    frames = plan_frames(logs, fps, trim=trim)
    if not frames:
        raise VideoError('no frame falls inside the job (try without trimming)')
    width, height = size
    captions = captions_of(logs, job)
    title = (job or {}).get('instruction') or ''
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(frames), unit='frame', desc='rendering', file=sys.stderr, dynamic_ncols=True)
    drawn = 0
    draw_s = 0.0
    with VideoWriter(out, fps) as writer:
        scene = twin = renderer = None
        try:
            for frame in frames:
                segment = logs[frame.log].segments[frame.segment]
                if segment.scene != scene:  # another scene: build it (the same one is reused)
                    if renderer is not None:
                        renderer.close()
                        renderer = None
                    scene = segment.scene
                    twin = scene.build()
                    twin.show_state(segment.qpos[0])
                    azimuth, elevation, margin = _view(scene)
                    camera = overview_camera(twin.model, twin.data, azimuth_deg=azimuth,
                                             elevation_deg=elevation, aspect=width / height, margin=margin)
                    renderer = OffscreenRenderer(twin.model, width, height, camera=camera)
                tick = time.perf_counter()
                twin.show_state(segment.qpos[frame.row])
                image = renderer.render(twin.data)
                draw_s += time.perf_counter() - tick
                lines, colours = captions[frame.log].lines(frame.t, drawn / fps)
                image = caption(image, lines, colours=colours)
                if title:
                    image = caption(image, [title], corner='top')
                writer.append(image)
                drawn += 1
                if bar is not None:
                    bar.update()
        finally:
            if renderer is not None:
                renderer.close()
            if bar is not None:
                bar.close()
    total_s = time.perf_counter() - started
    return {'video': str(out), 'frames': drawn, 'fps': fps, 'duration_s': round(drawn / fps, 3),
            'size': f'{width}x{height}', 'bytes': Path(out).stat().st_size,
            'render_s': round(total_s, 2), 'draw_ms_per_frame': round(1000 * draw_s / drawn, 1),
            'ms_per_frame': round(1000 * total_s / drawn, 1), 'logs': [str(p) for p in paths]}


# --------------------------------------------------------------------------------------------------
# legion kuka video / python -m legion_kuka.video


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT, e.g. 640x360, got {text!r}') from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise argparse.ArgumentTypeError(f'{text}: width and height must be 16..4096 pixels')
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('logs', nargs='+', metavar='LOG', help='state logs of the twin (.npz), in run order')
    parser.add_argument('-o', '--output', required=True, metavar='FILE', help='the video: .mp4 or .gif')
    parser.add_argument('--size', type=parse_size, default=DEFAULT_SIZE, metavar='WxH',
                        help='frame size in pixels (default 640x360)')
    parser.add_argument('--fps', type=float, default=None,
                        help='frames per second of the twin\'s time (default: the log\'s rate, 25)')
    parser.add_argument('--job', metavar='FILE', default=None,
                        help='the job\'s summary (the JSON `legion sim --json` prints): the instruction as '
                             'the title, the step count, each step\'s result')
    parser.add_argument('--no-trim', action='store_true',
                        help='every recorded state (default: from just before the first step to just '
                             'after the instruction ended)')
    parser.add_argument('--json', action='store_true', help='print what was made as one JSON object')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on standard error')


def run(args: argparse.Namespace) -> int:
    from legion_core.video import VideoError, use_offscreen_gl

    try:
        use_offscreen_gl()  # before MuJoCo is imported (the scenes below import it)
        job = json.loads(Path(args.job).read_text()) if args.job else None
        result = render_state_logs(args.logs, args.output, size=args.size, fps=args.fps, job=job,
                                   trim=not args.no_trim, progress=not args.no_progress)
    except (VideoError, ValueError, OSError) as error:
        print(f'legion kuka video: {error}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(f'{result["video"]}: {result["frames"]} frames ({result["duration_s"]:.1f} s at '
              f'{result["fps"]:g} fps, {result["size"]}), {result["bytes"] / 1e6:.1f} MB, rendered in '
              f'{result["render_s"]:.0f} s ({result["ms_per_frame"]:.0f} ms a frame)')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m legion_kuka.video', description=__doc__.split('\n')[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
