"""Videos of MuJoCo scenes without a display: offscreen frames, captions, MP4 or GIF files.

What a run shows is drawn after it, never inside a control loop: ``legion sim --video`` renders the
twin's recorded states (:mod:`legion_kuka.video`), ``legion report --clips`` one evaluation episode
per task (:mod:`legion_core.clips`). Both go through this module.

Offscreen OpenGL (design): MuJoCo picks its GL back-end once, when ``mujoco`` is first imported, from
``MUJOCO_GL``; without a display only ``egl`` (software EGL through Mesa's llvmpipe where there is no
GPU) or ``osmesa`` work. :func:`use_offscreen_gl` sets ``MUJOCO_GL=egl`` and ``PYOPENGL_PLATFORM=egl``
when nothing has imported MuJoCo yet and otherwise checks what was chosen, so a process that cannot
render says so in one sentence instead of failing inside GLFW.

Speed (``scripts/bench_render.py``, software EGL on the 2 shared CPU cores, 640x360, the demo's
three-station workcell): MuJoCo's default drawing costs 810 ms of CPU a frame, mostly shadow maps, one
per shadow-casting light, and a workcell brings each station's lights; with one shadow-casting light and
no 4x multisampling, which look the same at this size, 86 ms. :class:`OffscreenRenderer` draws that way.
It also hides floor planes that lie in the plane of an earlier one (each station brings its own floor;
coplanar floors flicker).

Files: ``.mp4`` (H.264, yuv420p: plays in browsers and players) through the ffmpeg binary that the
``imageio-ffmpeg`` wheel carries, ``.gif`` through Pillow (shows inline in markdown). Both are written
to a temporary file beside the target and renamed at the end: a render that fails leaves no torn file.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = ('.mp4', '.gif')
FILE_MODE = 0o644  # what a plain write would give under the usual umask
OFFSCREEN_BACKENDS = ('egl', 'osmesa')
#: Where the camera looks from by default: behind the arm, which faces +y in Meta-World's world frame.
CAMERA_AZIMUTH_DEG = 90.0
CAMERA_ELEVATION_DEG = -45.0
#: Caption colours: plain text, a success, a failure.
WHITE, GREEN, RED = (255, 255, 255), (120, 235, 120), (255, 120, 110)
#: One task's scene (azimuth, elevation in degrees; framing margin): from the side, so that the arm
#: does not hide the object it works on.
TASK_VIEW = (150.0, -30.0, 1.3)
#: Fixed geoms larger than this (half-size, m) are furniture (tables, walls) and not framed.
MAX_FRAMED_FIXED_HALF_M = 0.25


class VideoError(RuntimeError):
    """A video cannot be made here (no offscreen OpenGL, an unknown file type, nothing to draw)."""


def offscreen_backend() -> str | None:
    """The offscreen back-end whose library this machine has (``egl``, else ``osmesa``), or None."""
    import ctypes.util

    for backend, library in (('egl', 'EGL'), ('osmesa', 'OSMesa')):
        if ctypes.util.find_library(library):
            return backend
    return None


def use_offscreen_gl() -> str:
    """Make MuJoCo render offscreen in this process; returns the back-end (``egl`` or ``osmesa``).

    Sets ``MUJOCO_GL`` (``egl`` where libEGL is found, else ``osmesa``) and ``PYOPENGL_PLATFORM`` unless
    given; call it before anything imports ``mujoco``. Raises :class:`VideoError` when neither library
    is there, or MuJoCo was already imported with another back-end."""
    chosen = os.environ.get('MUJOCO_GL', '').strip().lower()
    if 'mujoco' not in sys.modules:
        if chosen not in OFFSCREEN_BACKENDS:
            chosen = offscreen_backend()
            if chosen is None:
                raise VideoError('no offscreen OpenGL here: MuJoCo renders without a display through '
                                 'libEGL (Debian: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) or '
                                 'libOSMesa (libosmesa6)')
            os.environ['MUJOCO_GL'] = chosen
        os.environ.setdefault('PYOPENGL_PLATFORM', chosen)
        return chosen
    from mujoco import gl_context

    context = getattr(gl_context, 'GLContext', None)
    backend = (getattr(context, '__module__', '') or '').split('.')[-1]
    if backend not in OFFSCREEN_BACKENDS:
        raise VideoError(f'MuJoCo was loaded with the {backend or "no"} OpenGL back-end, which needs a '
                         'display; start the process with MUJOCO_GL=egl PYOPENGL_PLATFORM=egl (or osmesa) to '
                         'render offscreen')
    return backend


def offscreen_problem() -> str | None:
    """Why this process cannot render offscreen (one sentence), or None when it can (draws one frame)."""
    try:
        use_offscreen_gl()
        import mujoco

        model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="0.1"/></worldbody></mujoco>')
        with OffscreenRenderer(model, 32, 32) as renderer:
            renderer.render(mujoco.MjData(model))
    except VideoError as error:
        return str(error)
    return None


def overview_camera(model: Any, data: Any, *, azimuth_deg: float = CAMERA_AZIMUTH_DEG,
                    elevation_deg: float = CAMERA_ELEVATION_DEG, aspect: float = 16 / 9,
                    margin: float = 1.15) -> Any:
    """A free camera that sees what a task is about from ``azimuth_deg`` / ``elevation_deg``, framed
    for an image of width/height ``aspect``: every body that can move (arm, fingers, objects, drawers)
    and the small fixed parts (a drawer's case, a window's frame), not tables, walls or floors."""
    import mujoco

    mujoco.mj_kinematics(model, data)
    low, high = np.full(3, np.inf), np.full(3, -np.inf)
    for g in range(model.ngeom):
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE or model.geom_group[g] > 2 \
                or model.geom_rgba[g, 3] == 0:
            continue
        rotation = data.geom_xmat[g].reshape(3, 3)
        centre = data.geom_xpos[g] + rotation @ model.geom_aabb[g][:3]
        half = np.abs(rotation) @ model.geom_aabb[g][3:]
        fixed = model.body_weldid[model.geom_bodyid[g]] == 0
        if fixed and half.max() > MAX_FRAMED_FIXED_HALF_M:
            continue
        low, high = np.minimum(low, centre - half), np.maximum(high, centre + half)
    if not np.all(np.isfinite(low)):
        low, high = model.stat.center - model.stat.extent / 2, model.stat.center + model.stat.extent / 2
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.lookat[:] = (low + high) / 2
    camera.azimuth, camera.elevation = azimuth_deg, elevation_deg
    # The box's bounding sphere inside the narrower of the two fields of view.
    radius = float(np.linalg.norm(high - low)) / 2
    half_fov = math.radians(float(model.vis.global_.fovy)) / 2
    half_fov = min(half_fov, math.atan(math.tan(half_fov) * aspect))
    camera.distance = margin * radius / math.tan(half_fov)
    return camera


class OffscreenRenderer:
    """Frames of a MuJoCo model from one camera, drawn the fast way (see module): one shadow-casting
    light, no multisampling, one floor. Changes the model's visual settings only (light shadows, the
    floor's colour, the offscreen buffer size), never its physics.

    Args:
        model: the ``mujoco.MjModel``.
        width, height: image size (pixels).
        camera: a ``mujoco.MjvCamera`` or camera name; default: :func:`overview_camera` of ``data``.
        data: the state used to frame the default camera.
    """

    def __init__(self, model: Any, width: int = 640, height: int = 360, *, camera: Any = None,
                 data: Any = None) -> None:
        use_offscreen_gl()
        import mujoco

        if width < 16 or height < 16:
            raise VideoError(f'a frame must be at least 16x16 pixels, got {width}x{height}')
        self.width, self.height = int(width), int(height)
        casters = [i for i in range(model.nlight) if model.light_castshadow[i]]
        for i in casters[1:]:
            model.light_castshadow[i] = 0
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self.width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self.height)
        self._hide_coplanar_floors(model)
        if camera is None:
            camera = overview_camera(model, data if data is not None else mujoco.MjData(model),
                                     aspect=self.width / self.height)
        self.camera = camera
        try:
            self._renderer = mujoco.Renderer(model, self.height, self.width)
        except Exception as error:  # no EGL/OSMesa library, no device: say what to do
            raise VideoError(f'MuJoCo cannot render offscreen here ({type(error).__name__}: {error}); '
                             'software EGL needs libEGL with Mesa (Debian: apt-get install libegl1 '
                             'libegl-mesa0 libgl1-mesa-dri), or MUJOCO_GL=osmesa with libosmesa6') from error

    @staticmethod
    def _hide_coplanar_floors(model: Any) -> None:
        import mujoco

        planes = []
        for g in range(model.ngeom):
            if model.geom_type[g] != mujoco.mjtGeom.mjGEOM_PLANE or model.geom_bodyid[g] != 0:
                continue
            normal = np.zeros(3)
            mujoco.mju_rotVecQuat(normal, np.array([0.0, 0.0, 1.0]), model.geom_quat[g])
            plane = np.array([*normal, normal @ model.geom_pos[g]])
            if any(np.allclose(plane, other, atol=1e-6) for other in planes):
                model.geom_rgba[g, 3] = 0.0  # transparent geoms are not drawn
            planes.append(plane)

    def render(self, data: Any) -> np.ndarray:
        """The frame of ``data``'s state, ``uint8 [height, width, 3]`` (call ``mj_forward`` first)."""
        self._renderer.update_scene(data, camera=self.camera)
        return self._renderer.render()

    def close(self) -> None:
        # Explicitly: a renderer left to the garbage collector at exit can meet a finalised EGL.
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> OffscreenRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's own FreeType font: the same everywhere
    except TypeError:  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def caption(frame: np.ndarray, lines: Sequence[str], *, corner: str = 'bottom',
            colours: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
    """``frame`` with ``lines`` of text on a dark band along its top or bottom edge (a new array)."""
    from PIL import Image, ImageDraw

    lines = [line for line in lines if line]
    if not lines:
        return frame
    image = Image.fromarray(np.ascontiguousarray(frame))
    height = image.height
    size = max(10, round(height / 22))
    font, pad = _font(size), max(3, size // 3)
    band = len(lines) * (size + pad) + pad
    top = 0 if corner == 'top' else height - band
    overlay = Image.new('RGBA', image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle([0, top, image.width, top + band], fill=(0, 0, 0, 150))
    image = Image.alpha_composite(image.convert('RGBA'), overlay)
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        colour = colours[k] if colours is not None and k < len(colours) else WHITE
        draw.text((pad + 2, top + pad + k * (size + pad)), line, font=font, fill=colour)
    return np.asarray(image.convert('RGB'))


class VideoWriter:
    """Frames into ``path`` (``.mp4`` or ``.gif``) at ``fps``, atomically: the file appears complete on
    :meth:`close`, and a writer left by an error removes its temporary file. Use as a context manager."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_SUFFIXES:
            raise VideoError(f'{self.path}: a video must end in {" or ".join(VIDEO_SUFFIXES)}')
        if not fps > 0:
            raise VideoError(f'fps must be positive, got {fps}')
        self.fps = float(fps)
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{self.path.stem}.', suffix=self.suffix, dir=self.path.parent)
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would keep a video from everyone else
        os.close(fd)
        self._tmp = Path(tmp)
        self._gif: list = []
        self._mp4 = None
        if self.suffix == '.mp4':
            import imageio.v2 as imageio

            # H.264 needs even sizes; macro_block_size=2 pads an odd one by a pixel instead of scaling.
            self._mp4 = imageio.get_writer(self._tmp, format='FFMPEG', mode='I', fps=self.fps,
                                           codec='libx264', pixelformat='yuv420p', quality=6,
                                           macro_block_size=2, ffmpeg_log_level='error')

    def append(self, frame: np.ndarray) -> None:
        if self._mp4 is not None:
            self._mp4.append_data(frame)
        else:
            from PIL import Image

            self._gif.append(Image.fromarray(frame).quantize(colors=128, dither=Image.Dither.NONE))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and put it in place; returns its path."""
        try:
            if self.frames == 0:
                raise VideoError(f'{self.path}: no frames to write')
            if self._mp4 is not None:
                self._mp4.close()
                self._mp4 = None
            else:
                first, *rest = self._gif
                first.save(self._tmp, format='GIF', save_all=True, append_images=rest, loop=0,
                           duration=round(1000 / self.fps), optimize=False)
                self._gif = []
            os.replace(self._tmp, self.path)
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        if self._mp4 is not None:
            with contextlib.suppress(Exception):  # the error that brought us here matters more
                self._mp4.close()
            self._mp4 = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Every frame of ``frames`` into ``path`` (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.append(frame)
    return Path(path)


def read_frames(path: str | Path) -> list[np.ndarray]:
    """The frames of a video written here (for checks and tests)."""
    import imageio.v3 as iio

    path = Path(path)
    plugin = 'FFMPEG' if path.suffix.lower() == '.mp4' else 'pillow'
    return [np.asarray(f)[..., :3] for f in iio.imiter(path, plugin=plugin)]
