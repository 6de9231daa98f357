"""Milliseconds to draw one offscreen frame of the twin's scenes: MuJoCo's default drawing (every
station's shadow-casting light, 4x multisampling) against legion_core.video.OffscreenRenderer's
(one shadow-casting light, no multisampling), for the demo's three-station workcell and one task's
scene; prints one JSON object with the median wall time and the mean CPU time of a frame (the CPU time
counts Mesa's llvmpipe threads too, and depends less on what else the machine runs).

    .venv/bin/python scripts/bench_render.py [WIDTHxHEIGHT=640x360] [FRAMES=10]

Software EGL (MUJOCO_GL=egl, set here before MuJoCo is imported). Pause other jobs first.
"""
import json
import statistics
import sys
import time

from legion_core.video import OffscreenRenderer, overview_camera, use_offscreen_gl

use_offscreen_gl()

import mujoco  # noqa: E402

from legion_kuka.twin import Twin  # noqa: E402
from legion_kuka.workcell import WorkcellTwin  # noqa: E402


def per_frame_ms(render, data, frames: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms of this process, llvmpipe's threads included) per frame."""
    render(data)  # the first frame uploads textures and shadow maps
    times = []
    cpu = time.process_time()
    for _ in range(frames):
        start = time.perf_counter()
        render(data)
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 1), round((time.process_time() - cpu) / frames * 1e3, 1)


if __name__ == '__main__':
    width, height = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else '640x360').split('x'))
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    stations = ['drawer-close-v3', 'reach-v3', 'window-close-v3']
    scenes = {'workcell (3 stations)': lambda: WorkcellTwin(stations, 'reach-v3', seed=1),
              'one task (drawer-close)': lambda: Twin('drawer-close-v3', seed=1)}
    results = {}
    for name, build in scenes.items():
        twin = build()
        camera = overview_camera(twin.model, twin.data, aspect=width / height)
        twin.model.vis.global_.offwidth = max(int(twin.model.vis.global_.offwidth), width)
        twin.model.vis.global_.offheight = max(int(twin.model.vis.global_.offheight), height)
        default = mujoco.Renderer(twin.model, height, width)

        def draw(data, renderer=default, camera=camera):
            renderer.update_scene(data, camera=camera)
            return renderer.render()

        default_ms = per_frame_ms(draw, twin.data, frames)
        default.close()
        with OffscreenRenderer(twin.model, width, height, camera=camera) as fast:
            fast_ms = per_frame_ms(fast.render, twin.data, frames)
        results[name] = {'mujoco_default_ms': default_ms[0], 'mujoco_default_cpu_ms': default_ms[1],
                         'offscreen_renderer_ms': fast_ms[0], 'offscreen_renderer_cpu_ms': fast_ms[1]}
    print(json.dumps({'size': f'{width}x{height}', 'frames': frames, 'backend': 'egl', **results}))
