"""The DPMM knowledge space over LEGION's latent z: ``make_dpmm(backend, **cfg) -> DPMM``.

Backends: ``'sklearn'`` (scikit-learn, truncated variational DP) and ``'bnpy'`` (bnpy memoized VB
with birth/merge moves, as the original). The torch KL terms live in ``legion_core.dpmm.kl`` (not
imported here, so that this package stays importable without touching torch).
"""
from legion_core.dpmm.base import BACKENDS, DPMM, FitResult, load_dpmm, make_dpmm

__all__ = ['BACKENDS', 'DPMM', 'FitResult', 'load_dpmm', 'make_dpmm']
