"""The DPMM knowledge space: a Dirichlet-process Gaussian mixture with diagonal covariances over z.

A backend fits the variational posterior; this base class owns everything that must behave the same
for every backend: input checks, which components count, the exposed summary (means, variances,
log weights), hard assignment and the checkpoint format.

Conventions shared by all backends:

- ``variances[k]`` is the diagonal of E[Σ_k] under the variational posterior (what the original fed
  back to the VAE, legion-original.md §3.4).
- ``log_weights[k]`` is the log of the expected mixture weight E[π_k], renormalised over the exposed
  components so that ``exp(log_weights)`` sums to 1. (The original's responsibilities used
  E[log π_k]; the difference is a per-component constant that vanishes as counts grow.)
- A component is exposed only when its expected share of the fit data is at least ``min_fraction``
  (default 0.005, i.e. 15 of 3,000 points). Truncated variational DPs always carry near-empty
  components with prior-sized weights; counting those would inflate K.
- ``predict`` and ``responsibilities`` use these plug-in parameters (the same formula as
  ``dpmm.kl.responsibilities``), so the trainer's KL prior and the reported clusters agree, and a
  model restored from ``state_dict`` predicts exactly as the one that was fitted.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp

BACKENDS = {
    'bnpy': 'legion_core.dpmm.bnpy_backend:BnpyDPMM',
    'sklearn': 'legion_core.dpmm.sklearn_backend:SklearnDPMM',
}


@dataclass
class FitResult:
    """What a backend returns: the posterior summary of ALL its components (before selection)."""

    means: np.ndarray  # [K_all, d]
    variances: np.ndarray  # [K_all, d], diagonal of E[Σ_k]
    weights: np.ndarray  # [K_all], E[π_k] (need not sum to 1: a DP keeps mass for unseen components)
    counts: np.ndarray  # [K_all], expected number of fit points per component


class DPMM(ABC):
    """Abstract DP Gaussian mixture over latent vectors z ∈ R^d (diagonal covariances)."""

    backend: ClassVar[str]
    #: configuration keys with their defaults; subclasses extend it. Values are plain python.
    DEFAULTS: ClassVar[dict[str, Any]] = {'min_fraction': 0.005}

    def __init__(self, **cfg: Any):
        unknown = sorted(set(cfg) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(f'unknown {self.backend} DPMM option(s) {unknown}; valid options: '
                             f'{sorted(self.DEFAULTS)}')
        self.config: dict[str, Any] = {**self.DEFAULTS, **cfg}
        self._validate_config(self.config)
        mf = self.config['min_fraction']
        if not isinstance(mf, (int, float)) or not 0.0 <= mf < 1.0:
            raise ValueError(f'min_fraction must be a number in [0, 1); got {mf!r}')
        self._means: np.ndarray | None = None
        self._variances: np.ndarray | None = None
        self._log_weights: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self.num_fits = 0

    # ---------------------------------------------------------------- backend interface
    @abstractmethod
    def _validate_config(self, cfg: dict[str, Any]) -> None:
        """Raise ValueError naming the option and the allowed values for a bad value."""

    @abstractmethod
    def _fit(self, z: np.ndarray, seed: int) -> FitResult:
        """Fit (warm-starting from the previous fit if there is one) and summarise all components."""

    def _backend_state(self) -> dict[str, Any]:
        """Extra plain state a backend needs to warm-start after ``load_state_dict``."""
        return {}

    def _load_backend_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what ``_backend_state`` returned."""

    # ---------------------------------------------------------------- public API
    def fit(self, z: np.ndarray, seed: int) -> None:
        """Fit the mixture to ``z`` [N, d]; warm-starts from the previous fit when there is one."""
        z = self._check_z(z, 'fit')
        if z.shape[0] < 2:
            raise ValueError(f'fit needs at least 2 points; got {z.shape[0]}')
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f'seed must be an int; got {seed!r}')
        result = self._fit(z, int(seed))
        total = float(result.counts.sum())
        keep = result.counts >= self.config['min_fraction'] * total
        if not keep.any():  # cannot happen for a sane fit; never expose an empty model
            keep[np.argmax(result.counts)] = True
        weights = result.weights[keep]
        self._means = np.ascontiguousarray(result.means[keep], dtype=np.float64)
        self._variances = np.ascontiguousarray(result.variances[keep], dtype=np.float64)
        self._log_weights = np.log(weights / weights.sum())
        self._counts = np.asarray(result.counts[keep], dtype=np.float64)
        self.num_fits += 1

    @property
    def fitted(self) -> bool:
        return self._means is not None

    @property
    def dim(self) -> int:
        return int(self._require('dim').shape[1])

    @property
    def num_components(self) -> int:
        return int(self._require('num_components').shape[0])

    @property
    def means(self) -> np.ndarray:
        """[K, d] posterior means of the exposed components."""
        return self._require('means').copy()

    @property
    def variances(self) -> np.ndarray:
        """[K, d] diagonal of E[Σ_k] of the exposed components."""
        self._require('variances')
        return self._variances.copy()

    @property
    def log_weights(self) -> np.ndarray:
        """[K] log E[π_k], renormalised over the exposed components."""
        self._require('log_weights')
        return self._log_weights.copy()

    @property
    def counts(self) -> np.ndarray:
        """[K] expected number of points of the last fit in each exposed component."""
        self._require('counts')
        return self._counts.copy()

    def log_responsibilities(self, z: np.ndarray) -> np.ndarray:
        """[N, K] log posterior component probabilities under the plug-in parameters."""
        z = self._check_z(z, 'predict', expect_dim=self.dim)
        diff = z[:, None, :] - self._means[None]
        log_lik = -0.5 * ((diff ** 2 / self._variances[None]).sum(-1)
                          + np.log(self._variances).sum(-1)[None] + z.shape[1] * np.log(2 * np.pi))
        logits = log_lik + self._log_weights[None]
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def responsibilities(self, z: np.ndarray) -> np.ndarray:
        """[N, K] posterior component probabilities (rows sum to 1)."""
        return np.exp(self.log_responsibilities(z))

    def predict(self, z: np.ndarray) -> np.ndarray:
        """[N] hard assignment: index of the most responsible exposed component."""
        return np.argmax(self.log_responsibilities(z), axis=1)

    def state_dict(self) -> dict[str, Any]:
        """Plain numpy / python values; ``load_state_dict`` restores it without refitting."""
        state: dict[str, Any] = {'backend': self.backend, 'config': dict(self.config),
                                 'num_fits': self.num_fits, 'fitted': self.fitted}
        if self.fitted:
            state.update(means=self.means, variances=self.variances, log_weights=self.log_weights,
                         counts=self.counts, backend_state=self._backend_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('backend') != self.backend:
            raise ValueError(f'state_dict is from DPMM backend {state.get("backend")!r}, '
                             f'not {self.backend!r}')
        self.config = {**self.DEFAULTS, **state.get('config', {})}
        self._validate_config(self.config)
        self.num_fits = int(state.get('num_fits', 0))
        if not state.get('fitted', False):
            self._means = self._variances = self._log_weights = self._counts = None
            return
        means = np.asarray(state['means'], dtype=np.float64)
        variances = np.asarray(state['variances'], dtype=np.float64)
        log_weights = np.asarray(state['log_weights'], dtype=np.float64)
        counts = np.asarray(state['counts'], dtype=np.float64)
        k = means.shape[0] if means.ndim == 2 else -1
        if (k < 1 or variances.shape != means.shape or log_weights.shape != (k,) or counts.shape != (k,)
                or not np.all(variances > 0)):
            raise ValueError('corrupt DPMM state_dict: need means/variances [K, d] (variances > 0), '
                             f'log_weights and counts [K]; got {means.shape}, {variances.shape}, '
                             f'{log_weights.shape}, {counts.shape}')
        self._means, self._variances, self._log_weights, self._counts = means, variances, log_weights, counts
        self._load_backend_state(state.get('backend_state', {}))

    # ---------------------------------------------------------------- helpers
    def _require(self, what: str) -> np.ndarray:
        if self._means is None:
            raise RuntimeError(f'DPMM.{what} is not available before the first fit (or load_state_dict)')
        return self._means

    def _check_z(self, z: np.ndarray, op: str, expect_dim: int | None = None) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] < 1:
            raise ValueError(f'{op}: z must be a 2-d array [N, d]; got shape {z.shape}')
        if expect_dim is None and self.fitted:
            expect_dim = self.dim
        if expect_dim is not None and z.shape[1] != expect_dim:
            raise ValueError(f'{op}: z has {z.shape[1]} dimensions but the DPMM was fitted on {expect_dim}')
        if not np.all(np.isfinite(z)):
            raise ValueError(f'{op}: z contains NaN or inf')
        return z

    def __repr__(self) -> str:
        k = self.num_components if self.fitted else 'unfitted'
        return f'{type(self).__name__}(K={k}, fits={self.num_fits}, config={self.config})'


def make_dpmm(backend: str, **cfg: Any) -> DPMM:
    """Build a DPMM: ``backend`` is one of ``BACKENDS`` ('bnpy', 'sklearn'); ``cfg`` its options."""
    if backend not in BACKENDS:
        raise ValueError(f'unknown DPMM backend {backend!r}; valid choices: {sorted(BACKENDS)}')
    module_name, class_name = BACKENDS[backend].split(':')
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**cfg)


def load_dpmm(state: dict[str, Any]) -> DPMM:
    """Rebuild a DPMM of the right backend from ``DPMM.state_dict()``, without refitting."""
    model = make_dpmm(state.get('backend'), **state.get('config', {}))
    model.load_state_dict(state)
    return model
