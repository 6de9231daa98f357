"""MuJoCo chooses its OpenGL back-end when first imported: offscreen (EGL or OSMesa) for the video
tests, before any test module imports it. Nothing else here draws."""
import contextlib

from legion_core.video import VideoError, use_offscreen_gl

with contextlib.suppress(VideoError):  # no library: the video tests skip and say why
    use_offscreen_gl()
