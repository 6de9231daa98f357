"""Evaluation clips of a run: one deterministic episode of its policy per task, drawn as a short GIF
(``legion report RUN --clips``), so that a report shows what the numbers mean.

Each clip is the first episode ``legion eval`` would run for the task: the run's policy, deterministic
actions, the env settings it was trained with (embodiment, layout, episode length, goal mode, seed).
Frames come from the embodiment env's own MuJoCo model and data (every embodiment here has them:
Meta-World's Sawyer, the KUKA, the twin), drawn offscreen (:mod:`legion_core.video`) after every env
step, with the task, the step and the success written on them. A clip ends ``AFTER_SUCCESS_STEPS``
steps after the task first succeeds, or with the episode.

Cost (measured on 2 shared CPU cores, 320x240, the shipped policy on the twin): 11 s a task, episode
and drawing; GIFs of 19-83 frames, 0.55-2.3 MB (docs/benchmarks.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from legion_core.video import GREEN, TASK_VIEW, WHITE, VideoError

CLIP_DIR = 'clips'
CLIP_SIZE = (320, 240)
CLIP_FPS = 20.0
AFTER_SUCCESS_STEPS = 10


def _mujoco_env(env: Any) -> Any:
    """The object holding the embodiment env's MuJoCo ``model`` and ``data``."""
    for candidate in (env, getattr(env, 'unwrapped', None)):
        if candidate is not None and hasattr(candidate, 'model') and hasattr(candidate, 'data'):
            return candidate
    raise VideoError(f'{type(env).__name__} has no MuJoCo model and data to draw')


def episode_clip(policy: Any, task: str, out: str | Path, *, embodiment: str, layout: str,
                 episode_length: int, goal: str, seed: int, size: tuple[int, int] = CLIP_SIZE,
                 fps: float = CLIP_FPS) -> dict[str, Any]:
    """Run one deterministic episode of ``policy`` on ``task`` and write its clip to ``out`` (.gif or
    .mp4); returns ``{"task", "clip", "success", "success_step", "steps", "frames"}``."""
    from legion_core.envs import make_task_env
    from legion_core.video import OffscreenRenderer, VideoWriter, caption, overview_camera, use_offscreen_gl

    use_offscreen_gl()
    env = make_task_env(task, embodiment=embodiment, layout=layout, episode_length=episode_length, goal=goal,
                        seed=seed)
    width, height = size
    success_step = None
    steps = 0
    try:
        obs = env.reset()
        scene = _mujoco_env(env.env)
        azimuth, elevation, margin = TASK_VIEW
        camera = overview_camera(scene.model, scene.data, azimuth_deg=azimuth, elevation_deg=elevation,
                                 aspect=width / height, margin=margin)
        with OffscreenRenderer(scene.model, width, height, camera=camera) as renderer, \
                VideoWriter(out, fps) as writer:

            def draw() -> None:
                done = success_step is not None
                status = f'succeeded at step {success_step}' if done else f'step {steps}/{env.episode_length}'
                writer.append(caption(renderer.render(scene.data), [task, status],
                                      colours=[WHITE, GREEN if done else WHITE]))

            draw()
            while True:
                obs, _reward, terminated, truncated, info = env.step(policy(obs))
                steps += 1
                if success_step is None and info['success']:
                    success_step = steps
                draw()
                if terminated or truncated or (success_step is not None
                                               and steps >= success_step + AFTER_SUCCESS_STEPS):
                    break
            frames = writer.frames
    finally:
        env.close()
    return {'task': task, 'clip': str(out), 'success': success_step is not None,
            'success_step': success_step, 'steps': steps, 'frames': frames}


def write_clips(source: str | Path, out_dir: str | Path, *, tasks: list[str] | None = None,
                size: tuple[int, int] = CLIP_SIZE, progress: bool = False) -> list[dict[str, Any]]:
    """One clip per task of the policy in ``source`` (a run directory, checkpoint or policy.pt) into
    ``out_dir/clips/<task>.gif``, with the settings the policy was trained with."""
    from legion_core.checkpoint import load_checkpoint
    from legion_core.policy import policy_from_state
    from legion_core.video import use_offscreen_gl

    use_offscreen_gl()  # before the envs import MuJoCo
    state = load_checkpoint(source)
    policy = policy_from_state(state)
    env = policy.env
    seed = int((state.get('config') or {}).get('seed', 0))
    clips = []
    chosen = tasks or policy.tasks
    if progress:
        from tqdm import tqdm
        chosen = tqdm(chosen, desc='evaluation clips', unit='task')
    for task in chosen:
        clips.append(episode_clip(lambda obs, task=task: policy.act(obs, task, deterministic=True), task,
                                  Path(out_dir) / CLIP_DIR / f'{task}.gif', embodiment=env['embodiment'],
                                  layout=env['layout'], episode_length=int(env['episode_length']),
                                  goal=env['goal'], seed=seed, size=size))
    return clips
