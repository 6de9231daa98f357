"""DPMM knowledge space: each backend recovers clusters, warm-starts, restores, rejects bad input."""
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from legion_core.dpmm import BACKENDS, load_dpmm, make_dpmm

N_CLUSTERS, DIM, N_POINTS = 5, 10, 3000


def clustered_data(n=N_POINTS, k=N_CLUSTERS, d=DIM, spread=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, (k, d))
    labels = rng.integers(0, k, n)
    return centers[labels] + spread * rng.normal(size=(n, d)), labels


@pytest.fixture(scope='module')
def data():
    return clustered_data()


@pytest.fixture(scope='module', params=sorted(BACKENDS))
def fitted(request, data):
    z, _ = data
    model = make_dpmm(request.param)
    start = time.process_time()  # CPU time: other work on a shared machine does not count
    model.fit(z, seed=0)
    model.fit_cpu_seconds = time.process_time() - start
    return model


def test_recovers_well_separated_clusters(fitted, data):
    z, labels = data
    assert fitted.num_components == N_CLUSTERS
    assert adjusted_rand_score(labels, fitted.predict(z)) > 0.99
    assert fitted.means.shape == fitted.variances.shape == (N_CLUSTERS, DIM)
    assert fitted.log_weights.shape == (N_CLUSTERS,)
    np.testing.assert_allclose(np.exp(fitted.log_weights).sum(), 1.0)
    # Each fitted mean sits on a true center and the variances are the data's 0.1² per dimension.
    for k in range(N_CLUSTERS):
        members = z[fitted.predict(z) == k]
        np.testing.assert_allclose(fitted.means[k], members.mean(0), atol=0.02)
    np.testing.assert_allclose(np.median(fitted.variances), 0.01, rtol=0.2)
    assert fitted.fit_cpu_seconds < 15.0


def test_responsibilities_are_normalised(fitted, data):
    resp = fitted.responsibilities(data[0][:100])
    assert resp.shape == (100, N_CLUSTERS)
    np.testing.assert_allclose(resp.sum(1), 1.0)


def test_warm_start_keeps_k(fitted, data):
    z, labels = data
    fitted.fit(z, seed=1)
    assert fitted.num_components == N_CLUSTERS
    assert fitted.num_fits == 2
    assert adjusted_rand_score(labels, fitted.predict(z)) > 0.99


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_warm_start_discovers_a_new_cluster(backend):
    # The lifelong case: the refit after a new task must open a component for it.
    z, labels = clustered_data(n=2000, k=4, seed=3)
    model = make_dpmm(backend)
    model.fit(z[labels < 3], seed=0)
    assert model.num_components == 3
    model.fit(z, seed=1)
    assert model.num_components == 4
    assert adjusted_rand_score(labels, model.predict(z)) > 0.99


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_warm_start_drops_clusters_that_left_the_data(backend):
    # A FIFO replay buffer evicts old tasks: their components must not linger in the prior.
    z, labels = clustered_data(n=1500, k=4, seed=4)
    model = make_dpmm(backend)
    model.fit(z, seed=0)
    assert model.num_components == 4
    keep = labels < 2
    model.fit(z[keep], seed=1)
    assert model.num_components == 2
    assert adjusted_rand_score(labels[keep], model.predict(z[keep])) > 0.99


def test_state_dict_round_trip_predicts_identically(fitted, data):
    z, _ = data
    state = fitted.state_dict()
    restored = load_dpmm(state)
    assert type(restored) is type(fitted)
    assert restored.num_components == fitted.num_components
    np.testing.assert_array_equal(restored.predict(z), fitted.predict(z))
    np.testing.assert_array_equal(restored.variances, fitted.variances)
    # Plain numpy / python values only: survives a pickle-free serialisation such as torch.save.
    for key, value in state.items():
        assert isinstance(value, (np.ndarray, dict, str, int, float, bool)), key


def test_restored_model_warm_starts(fitted, data):
    z, labels = data
    restored = load_dpmm(fitted.state_dict())
    restored.fit(z, seed=5)
    assert restored.num_components == N_CLUSTERS
    assert adjusted_rand_score(labels, restored.predict(z)) > 0.99


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_unfitted_model_says_so(backend):
    model = make_dpmm(backend)
    assert not model.fitted
    with pytest.raises(RuntimeError, match='before the first fit'):
        _ = model.means
    state = model.state_dict()
    assert state['fitted'] is False
    assert not load_dpmm(state).fitted


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match=r"valid choices: \['bnpy', 'sklearn'\]"):
        make_dpmm('pyro')


@pytest.mark.parametrize('backend, cfg, match', [
    ('sklearn', {'truncaton': 10}, 'unknown sklearn DPMM option'),
    ('sklearn', {'gamma0': -1.0}, 'gamma0 must be a positive number'),
    ('sklearn', {'truncation': 2.5}, 'truncation'),
    ('sklearn', {'init_params': 'magic'}, 'init_params must be one of'),
    ('sklearn', {'min_fraction': 1.5}, 'min_fraction'),
    ('bnpy', {'sf': 1e-5}, 'valid options'),
    ('bnpy', {'moves': 'birth,teleport'}, 'moves must be'),
    ('bnpy', {'ECovMat': 'full'}, 'ECovMat must be one of'),
    ('bnpy', {'nBatch': 0}, 'nBatch'),
])
def test_bad_config_is_rejected(backend, cfg, match):
    with pytest.raises(ValueError, match=match):
        make_dpmm(backend, **cfg)


def test_unknown_bnpy_passthrough_option_is_rejected(data):
    model = make_dpmm('bnpy', bnpy_kwargs={'not_a_bnpy_option': 1})
    with pytest.raises(ValueError, match='not_a_bnpy_option'):
        model.fit(data[0][:200], seed=0)


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_bad_input_is_rejected(backend, data):
    model = make_dpmm(backend)
    with pytest.raises(ValueError, match='2-d array'):
        model.fit(np.zeros(10), seed=0)
    bad = data[0][:100].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        model.fit(bad, seed=0)
    with pytest.raises(ValueError, match='seed must be an int'):
        model.fit(data[0][:100], seed=0.5)


def test_dimension_mismatch_after_fit(fitted):
    with pytest.raises(ValueError, match='fitted on 10'):
        fitted.predict(np.zeros((3, 4)))


def test_load_state_dict_from_other_backend_fails(fitted):
    other = next(name for name in BACKENDS if name != fitted.backend)
    with pytest.raises(ValueError, match='from DPMM backend'):
        make_dpmm(other).load_state_dict(fitted.state_dict())


def test_bnpy_backend_has_no_global_side_effects():
    # In a fresh process: fit with bnpy, then check numpy, inspect and the root logger are as before.
    code = '''
import inspect, logging, os, tempfile
import numpy as np
root_handlers = list(logging.getLogger().handlers)
tmp_before = set(os.listdir(tempfile.gettempdir()))
from legion_core.dpmm import make_dpmm
rng = np.random.default_rng(0)
z = np.concatenate([rng.normal(-3, 0.1, (300, 3)), rng.normal(3, 0.1, (300, 3))])
model = make_dpmm('bnpy')
model.fit(z, seed=0)
fds = len(os.listdir('/proc/self/fd')) if os.path.isdir('/proc/self/fd') else 0
model.fit(z, seed=1)
model.fit(z, seed=2)
import bnpy
if fds:  # no log file stays open once its directory is gone
    assert len(os.listdir('/proc/self/fd')) == fds, (fds, os.listdir('/proc/self/fd'))
assert model.num_components == 2, model.num_components
for alias in ('float', 'bool8', 'unicode_', 'in1d', 'int', 'object'):
    assert not hasattr(np, alias), alias
assert not hasattr(inspect, 'getargspec')
assert logging.getLogger().handlers == root_handlers
leftovers = [n for n in set(os.listdir(tempfile.gettempdir())) - tmp_before if n.startswith('legion-bnpy-')]
assert not leftovers, leftovers
assert bnpy.util.StickBreakUtil.np is not np  # bnpy got the shim, numpy did not change
print('clean')
'''
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith('clean')


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_fits_are_reproducible_from_the_seed(backend):
    # Overlapping clusters, so that the initialisation matters; numpy's global RNG must not.
    z, _ = clustered_data(n=600, k=4, spread=0.5, seed=1)
    states = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)
        model = make_dpmm(backend)
        model.fit(z, seed=7)
        model.fit(z[:450], seed=8)
        states.append(model.state_dict())
    np.testing.assert_array_equal(states[0]['means'], states[1]['means'])
    np.testing.assert_array_equal(states[0]['variances'], states[1]['variances'])
