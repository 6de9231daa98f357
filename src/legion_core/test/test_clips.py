"""`legion report RUN --clips`: a tiny real run's report gets one evaluation clip per task, a GIF of
one deterministic episode of its policy, shown in report.md."""
import json

import numpy as np
import pytest
import torch
from test_trainer import small_config

from legion_core.cli.main import main
from legion_core.clips import AFTER_SUCCESS_STEPS, CLIP_FPS, CLIP_SIZE
from legion_core.trainer import Trainer
from legion_core.video import offscreen_problem

torch.set_num_threads(1)
EPISODE = 40  # env.episode_length of small_config


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    problem = offscreen_problem()
    if problem is not None:
        pytest.skip(f'no offscreen rendering here: {problem}')
    run = tmp_path_factory.mktemp('run')
    Trainer(small_config('train.steps_per_task=60', 'train.warmup_steps=50', 'train.eval_every=0',
                         'train.checkpoint_every=0'), run, progress=False).run()
    return run


def gif_frames(path):
    """(frames as Pillow stores them, total duration in ms): identical neighbours are merged into one
    longer frame, so the duration tells how many were written."""
    from PIL import Image

    with Image.open(path) as image:
        durations = []
        for k in range(image.n_frames):
            image.seek(k)
            durations.append(image.info['duration'])
        size = image.size
    return len(durations), sum(durations), size


def test_report_clips_one_episode_per_task(run_dir, tmp_path, capsys):
    out = tmp_path / 'report'
    assert main(['report', str(run_dir), '--out', str(out), '--clips']) == 0
    printed = capsys.readouterr().out.split()
    tasks = json.loads((run_dir / 'metrics.json').read_text())['tasks']
    assert sorted(p.name for p in (out / 'clips').iterdir()) == sorted(f'{t}.gif' for t in tasks)
    report = (out / 'report.md').read_text()
    assert '## Evaluation clips' in report
    for task in tasks:
        clip = out / 'clips' / f'{task}.gif'
        assert str(clip) in printed
        assert f'![{task}](clips/{task}.gif)' in report
        _stored, duration_ms, size = gif_frames(clip)
        assert size == CLIP_SIZE
        # The first frame, then one per env step: the whole episode, or up to 10 steps past a success.
        (line,) = [line for line in report.splitlines() if line.startswith(f'**{task}**: ')]
        if 'succeeded at step' in line:
            steps = min(int(line.split()[-1]) + AFTER_SUCCESS_STEPS, EPISODE)
        else:
            assert line.endswith(f'no success in {EPISODE} steps')
            steps = EPISODE
        assert round(duration_ms / (1000 / CLIP_FPS)) == steps + 1, (task, duration_ms)


def test_the_same_episode_gives_the_same_clip(run_dir, tmp_path):
    from legion_core.clips import write_clips
    from legion_core.video import read_frames

    first = write_clips(run_dir, tmp_path / 'a', tasks=['reach-v3'])
    again = write_clips(run_dir, tmp_path / 'b', tasks=['reach-v3'])
    assert first[0]['steps'] == again[0]['steps'] and first[0]['success'] == again[0]['success']
    a, b = read_frames(first[0]['clip']), read_frames(again[0]['clip'])
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_clips_need_one_run_not_a_sweep(tmp_path, capsys):
    sweep = tmp_path / 'sweep'
    (sweep / 'seed0').mkdir(parents=True)
    (sweep / 'seed0' / 'metrics.json').write_text(json.dumps({'tasks': ['reach-v3'], 'success_matrix': []}))
    (sweep / 'seed0' / 'evals.jsonl').write_text('')
    assert main(['report', str(sweep), '--clips']) == 2
    assert 'one run directory' in capsys.readouterr().err
