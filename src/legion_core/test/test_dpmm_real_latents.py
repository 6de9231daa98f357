"""The DPMM's training default finds one cluster per task on real LEGION latents (issue #3).

``data/dpmm_real_latents.npz`` holds the z a DPMM refit sees (1,500 replay transitions, z sampled
from q(z|s,e) as ``agent.dpmm_fit_z: sample``), float32, with the task id of each point, taken from
the final phase checkpoints of two `legion train preset=bench_learn` runs:

- ``one_task``: runs/shipped_bench_learn after phase 0 (reach);
- ``two_tasks`` / ``three_tasks``: runs/demo3_kuka (KUKA, random goals) after phases 1 and 2
  (reach, drawer-close, window-close).

Each task's z is an elongated blob with sub-structure of its own (principal standard deviations
0.02-0.05, then 1e-3 and below) while the tasks' centroids are 0.75-2.6 apart. With the original's
prior (E[Σ_k] = 1e-5·I) the mixture resolves that sub-structure and splits tasks into several
components (K = 2 / 8-11 / 12-15 with sklearn, 1 / 5-6 / 6-7 with bnpy, over five fit seeds); the
covariance prior scaled to this latent (docs/training.md, "How many clusters") gives exactly one
pure component per task.

``data/dpmm_legion10_latents.npz`` holds the same kind of sample from the legion10 stream on the twin
(preset=legion10_recipe, seed 0; equal rows per task, as ``dpmm.sample: balanced``), phase checkpoints
3 and 9: ``four_tasks`` (3,000 rows) and ``ten_tasks`` (1,500). Its tasks' centroids lie further
apart, and each task spreads wider: the former sklearn default sF 0.03 split a task at phase 3
(docs/training.md, "How many clusters"); 3.0 merges tasks at phase 9.
"""
from pathlib import Path

import numpy as np
import pytest

from legion_core.config import compose_config
from legion_core.dpmm import BACKENDS, make_dpmm

DATA = Path(__file__).resolve().parent / 'data' / 'dpmm_real_latents.npz'
SNAPSHOTS = ('one_task', 'two_tasks', 'three_tasks')
LEGION10 = Path(__file__).resolve().parent / 'data' / 'dpmm_legion10_latents.npz'
LEGION10_SNAPSHOTS = ('four_tasks', 'ten_tasks')


def _load(path: Path, names: tuple[str, ...]) -> dict:
    with np.load(path) as data:
        return {name: (data[f'{name}_z'].astype(np.float64), data[f'{name}_task'].astype(int))
                for name in names}


@pytest.fixture(scope='module')
def latents():
    return {**_load(DATA, SNAPSHOTS), **_load(LEGION10, LEGION10_SNAPSHOTS)}


def default_options(backend: str) -> dict:
    """The DPMM options `legion train dpmm=<backend>` uses (config/train/dpmm/<backend>.yaml)."""
    cfg = compose_config([f'dpmm={backend}'])
    return dict(cfg.dpmm.options)


def one_pure_cluster_per_task(labels: np.ndarray, tasks: np.ndarray) -> bool:
    per_task = [np.unique(labels[tasks == t]) for t in np.unique(tasks)]
    return all(len(c) == 1 for c in per_task) and len({int(c[0]) for c in per_task}) == len(per_task)


@pytest.mark.parametrize('backend', sorted(BACKENDS))
@pytest.mark.parametrize('name', SNAPSHOTS + LEGION10_SNAPSHOTS)
def test_default_prior_finds_one_cluster_per_task(latents, backend, name):
    z, tasks = latents[name]
    model = make_dpmm(backend, **default_options(backend))
    model.fit(z, seed=0)
    assert model.num_components == len(np.unique(tasks))
    assert one_pure_cluster_per_task(model.predict(z), tasks)


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_lifelong_refits_grow_one_cluster_per_new_task(latents, backend):
    # As in training: one model refitted (warm-started) as the replay gains tasks.
    model = make_dpmm(backend, **default_options(backend))
    for seed, name in enumerate(SNAPSHOTS):
        z, tasks = latents[name]
        model.fit(z, seed=seed)
        assert model.num_components == len(np.unique(tasks)), name
        assert one_pure_cluster_per_task(model.predict(z), tasks), name


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_original_tight_prior_splits_tasks(latents, backend):
    # The failure the default fixes, so that these latents keep testing it: E[Σ] = 1e-5·I resolves
    # each task's sub-structure and returns more components than tasks.
    z, tasks = latents['three_tasks']
    model = make_dpmm(backend, **{**default_options(backend), 'sF': 1e-5})
    model.fit(z, seed=0)
    assert model.num_components > len(np.unique(tasks))


def test_sf_means_the_expected_covariance_in_both_backends():
    # sF is E[Σ_k] in both backends (sklearn's covariance_prior is β = sF (ν - 2), as bnpy's): one
    # tight blob at the prior mean reports the posterior E[Σ] = (β + N S) / (ν + N - 2), not a
    # variance ν - 2 times smaller.
    rng = np.random.default_rng(0)
    n, d, sf = 40, 4, 0.5
    z = rng.normal(0.0, 1e-4, (n, d))
    expected = sf * d / (d + 2 + n - 2)  # ν = d + 2, S ≈ 0
    for backend in sorted(BACKENDS):
        model = make_dpmm(backend, sF=sf, **({'truncation': 4} if backend == 'sklearn' else {}))
        model.fit(z, seed=0)
        assert model.num_components == 1, backend
        np.testing.assert_allclose(model.variances, expected, rtol=0.02, err_msg=backend)


def test_the_sklearn_default_sits_between_splitting_and_merging_the_legion10_tasks(latents):
    # So that these latents keep testing the choice: ten times tighter splits a task of four (the
    # former default, 0.03), ten times looser merges tasks of ten.
    sf = default_options('sklearn')['sF']
    z, tasks = latents['four_tasks']
    split = make_dpmm('sklearn', **{**default_options('sklearn'), 'sF': sf / 10})
    split.fit(z, seed=0)
    assert split.num_components > len(np.unique(tasks))
    z, tasks = latents['ten_tasks']
    merged = make_dpmm('sklearn', **{**default_options('sklearn'), 'sF': sf * 10})
    merged.fit(z, seed=0)
    assert merged.num_components < len(np.unique(tasks))
