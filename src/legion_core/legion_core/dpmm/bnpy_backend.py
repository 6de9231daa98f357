"""DPMM backend on bnpy 0.1.7 memoized variational Bayes with birth/merge moves, as the original.

Model and defaults follow legion-original.md §3: 'DPMixtureModel' + 'DiagGauss', 'memoVB', moves
'birth,merge', gamma0 = 5, sF = 1e-5 with ECovMat = 'eye' (the prior expects each cluster's
covariance to be sF·I), nBatch = 5, nLap = 2, and the birth/merge settings of the original config.
Every option is configurable; ``bnpy_kwargs`` passes further bnpy options (checked against bnpy's
own option tables).

bnpy 0.1.7 does not run as shipped on Python 3.11 + numpy 2. The fixes are CONTAINED here:

- numpy aliases removed in numpy 2 (``np.float``, ``np.bool8``, ``np.unicode_``, ``np.in1d``, ...):
  each ``bnpy.*`` module's global ``np`` is rebound to a private shim namespace that is numpy plus
  those aliases. The real ``numpy`` module is never touched, so other code still gets the numpy 2
  behaviour (``hasattr(numpy, 'float')`` stays False).
- ``inspect.getargspec`` (removed in Python 3.11): bnpy modules that use ``inspect`` get a shim
  namespace with a ``getargspec`` built on ``getfullargspec``; the real ``inspect`` is untouched.
- Warm start from disk goes through ``ndarray.newbyteorder`` (removed in numpy 2), and ``bnpy.run``
  clears the ROOT logger's handlers. Both are avoided: this backend drives bnpy's model,
  initialisation and learning-algorithm objects itself (the steps of ``bnpy.Runner``), and warm-starts
  IN MEMORY: the previous fit's responsibilities on the new data become bnpy's initial local
  parameters (its 'LP' initialisation), so the refit starts with the previous K components.
- bnpy writes trace and snapshot files on every fit (its birth move needs an output directory).
  They go to a private temporary directory that is deleted after the fit; the file handlers bnpy's
  move loggers opened there are closed.
"""
from __future__ import annotations

import inspect
import logging
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from legion_core.dpmm.base import DPMM, FitResult

# bnpy keeps module-level logger state (birth/merge logs), so fits must not overlap.
_BNPY_LOCK = threading.Lock()

_NUMPY_ALIASES = {
    'float': float, 'int': int, 'bool': bool, 'object': object, 'complex': complex, 'str': str,
    'bool8': np.bool_, 'unicode_': np.str_, 'string_': np.bytes_, 'float_': np.float64,
    'complex_': np.complex128, 'int0': np.intp, 'uint0': np.uintp, 'in1d': np.isin,
    'Inf': np.inf, 'NaN': np.nan, 'infty': np.inf, 'product': np.prod, 'alltrue': np.all,
    'sometrue': np.any, 'cumproduct': np.cumprod, 'row_stack': np.vstack,
}


def _make_numpy_shim() -> types.ModuleType:
    shim = types.ModuleType('numpy', 'numpy as bnpy 0.1.7 expects it (numpy 1.x aliases); bnpy-only')
    shim.__dict__.update(np.__dict__)  # includes numpy's lazy __getattr__ for submodules
    shim.__dict__.update(_NUMPY_ALIASES)
    return shim


def _getargspec(func):
    spec = inspect.getfullargspec(func)
    return spec.args, spec.varargs, spec.varkw, spec.defaults


def _make_inspect_shim() -> types.SimpleNamespace:
    ns = types.SimpleNamespace(**{name: getattr(inspect, name) for name in dir(inspect)
                                  if not name.startswith('__')})
    ns.getargspec = _getargspec
    return ns


_NP_SHIM = _make_numpy_shim()
_INSPECT_SHIM = _make_inspect_shim()


def _patch_bnpy_namespaces() -> None:
    """Rebind ``np`` / ``inspect`` inside every loaded bnpy module (idempotent, cheap).

    Run before every fit: bnpy imports some modules lazily, and those must be patched too.
    """
    for name, module in list(sys.modules.items()):
        if module is None or not (name == 'bnpy' or name.startswith('bnpy.')):
            continue
        if getattr(module, 'np', None) is np:
            module.np = _NP_SHIM
        if getattr(module, 'numpy', None) is np:
            module.numpy = _NP_SHIM
        if getattr(module, 'inspect', None) is inspect:
            module.inspect = _INSPECT_SHIM


def import_bnpy():
    """Import bnpy with the contained numpy-2 / Python-3.11 fixes applied to its namespaces."""
    try:
        with warnings.catch_warnings():
            # bnpy 0.1.7 uses SafeConfigParser and imp at import time: its problem, not the user's.
            warnings.filterwarnings('ignore', category=DeprecationWarning, module='bnpy')
            import bnpy
            import bnpy.birthmove.BLogger
            import bnpy.learnalg.ElapsedTimeLogger
            import bnpy.mergemove.MLogger  # loaded now so that they get patched
    except ImportError as error:
        raise ImportError(f'the bnpy DPMM backend needs bnpy 0.1.7 ({error}); install it with '
                          '`pip install --no-deps bnpy==0.1.7 six psutil pandas matplotlib`, or use '
                          "backend='sklearn'") from error
    _patch_bnpy_namespaces()
    return bnpy


def _close_bnpy_file_handlers(directory: str) -> None:
    """Close and detach the file handlers bnpy's loggers ('bnpy.*', 'elapsedtime.*', ...) opened
    under ``directory``, so no descriptor outlives the deleted directory."""
    loggers = [logger for logger in list(logging.root.manager.loggerDict.values())
               if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler) and handler.baseFilename.startswith(directory):
                logger.removeHandler(handler)
                handler.close()


class BnpyDPMM(DPMM):
    backend = 'bnpy'
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **DPMM.DEFAULTS,
        'gamma0': 5.0,
        'sF': 1e-5,
        'ECovMat': 'eye',
        'kappa': 1e-4,
        'nu': 0,  # bnpy's convention: 0 means D + 2
        'nBatch': 5,
        'nLap': 2,
        'moves': 'birth,merge',
        'initname': 'randexamples',
        'init_K': 1,
        # birth / merge settings of the original (legion-original.md §3.1)
        'b_startLap': 1,
        'b_stopLap': 2,
        'b_Kfresh': 10,
        'b_minNumAtomsForNewComp': 10.0,
        'b_minNumAtomsForTargetComp': 10.0,
        'b_minNumAtomsForRetainComp': 10.0,
        'b_minPercChangeInNumAtomsToReactivate': 0.03,
        'm_startLap': 2,
        'm_maxNumPairsContainingComp': 50,
        'm_nLapToReactivate': 1,
        'm_pair_ranking_procedure': 'obsmodel_elbo',
        'm_pair_ranking_direction': 'descending',
        'bnpy_kwargs': {},
    }
    _VALID_MOVES = ('birth', 'merge', 'delete', 'shuffle')
    _VALID_ECOV = ('eye', 'covdata', 'diagcovdata')

    def __init__(self, **cfg: Any):
        super().__init__(**cfg)
        self.last_loss: float | None = None

    def _validate_config(self, cfg: dict[str, Any]) -> None:
        def number(name: str, kind=(int, float), minimum: float = 0.0, strict: bool = True) -> None:
            value = cfg[name]
            ok = not isinstance(value, bool) and isinstance(value, kind) and (
                value > minimum if strict else value >= minimum)
            if not ok:
                rel = '>' if strict else '>='
                raise ValueError(f'bnpy DPMM option {name} must be a number {rel} {minimum}; got {value!r}')

        for name in ('gamma0', 'sF', 'kappa', 'nLap'):
            number(name)
        for name in ('nBatch', 'init_K', 'b_Kfresh', 'm_maxNumPairsContainingComp'):
            number(name, int)
        number('nu', (int, float), strict=False)
        moves = cfg['moves']
        if not isinstance(moves, str) or (moves and not set(moves.split(',')) <= set(self._VALID_MOVES)):
            raise ValueError(f'bnpy DPMM option moves must be a comma-separated subset of '
                             f'{self._VALID_MOVES} (or empty); got {moves!r}')
        if cfg['ECovMat'] not in self._VALID_ECOV:
            raise ValueError(f'bnpy DPMM option ECovMat must be one of {self._VALID_ECOV}; '
                             f'got {cfg["ECovMat"]!r}')
        if not isinstance(cfg['bnpy_kwargs'], Mapping):
            raise ValueError(f'bnpy DPMM option bnpy_kwargs must be a mapping; got {cfg["bnpy_kwargs"]!r}')
        cfg['bnpy_kwargs'] = dict(cfg['bnpy_kwargs'])  # e.g. from a Hydra DictConfig

    def _bnpy_kwargs(self, initname: str, init_k: int) -> dict[str, Any]:
        c = self.config
        kwargs = {key: c[key] for key in c if key not in ('min_fraction', 'bnpy_kwargs', 'init_K',
                                                          'initname')}
        if not c['moves']:
            kwargs.pop('moves')
        kwargs.update(c['bnpy_kwargs'])
        kwargs.update(initname=initname, K=init_k)
        return kwargs

    def _fit(self, z: np.ndarray, seed: int) -> FitResult:
        bnpy = import_bnpy()
        from bnpy import Runner
        from bnpy.ioutil import BNPYArgParser

        if z.shape[0] < self.config['nBatch']:
            raise ValueError(f'bnpy DPMM needs at least nBatch={self.config["nBatch"]} points; '
                             f'got {z.shape[0]}')
        seed = seed % (2 ** 31)
        req = dict(dataName='legion_latent', allocModelName='DPMixtureModel', obsModelName='DiagGauss',
                   algName='memoVB')
        warm = self.fitted
        init_lp = {'resp': self.responsibilities(z)} if warm else None
        initname = 'warmstartLP' if warm else self.config['initname']
        init_k = self.num_components if warm else self.config['init_K']

        with _BNPY_LOCK, warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix='legion-bnpy-') as out:
            # scipy warns about bnpy's '_FieldDims' names in the snapshot .mat files: noise.
            warnings.filterwarnings('ignore', message='Starting field name with a underscore')
            kw, unknown = BNPYArgParser.parseKeywordArgs(req, **self._bnpy_kwargs(initname, init_k))
            if unknown:
                raise ValueError(f'unknown bnpy option(s) {sorted(unknown)} in bnpy_kwargs')
            kw['OutputPrefs'].update(doSaveToDisk=False, doWriteStdOut=False, task_output_path=out)
            kw['memoVB'].update(nLap=kw['OnlineDataPrefs']['nLap'], algseed=seed, dataorderseed=seed)
            data = bnpy.data.XData(X=z)
            batches = data.to_iterator(nBatch=self.config['nBatch'], nLap=self.config['nLap'],
                                       dataorderseed=seed)
            init_args = dict(kw['Initialization'])
            if init_lp is not None:
                init_args['initLP'] = init_lp
            hmodel = Runner.make_initialized_model(
                data, seed=seed, taskid=1, allocModelName=req['allocModelName'],
                obsModelName=req['obsModelName'], algName=req['algName'], KwArgs=kw,
                initArgsDict=init_args)
            learner = Runner.createLearnAlg(batches, hmodel, req, kw, algseed=seed, task_output_path=out)
            self._configure_move_loggers(learner, kw, out)
            try:
                info = learner.fit(hmodel, batches)
            finally:
                _close_bnpy_file_handlers(out)
        self.last_loss = float(info['loss'])
        return self._summarise(hmodel)

    @staticmethod
    def _configure_move_loggers(learner, kw: dict, out: str) -> None:
        from bnpy.birthmove import BLogger
        from bnpy.learnalg import ElapsedTimeLogger
        from bnpy.mergemove import MLogger

        # Loggers write to files under ``out`` only; nothing reaches stdout or the root logger.
        if learner.hasMove('birth'):
            BLogger.configure(out, doSaveToDisk=True, doWriteStdOut=False)
        if learner.hasMove('merge'):
            MLogger.configure(out, doSaveToDisk=True, doWriteStdOut=False)
        if learner.hasMove('delete'):
            from bnpy.deletemove import DLogger
            DLogger.configure(out, doSaveToDisk=True, doWriteStdOut=False)
        if learner.hasMove('shuffle'):
            from bnpy.mergemove import SLogger
            SLogger.configure(out, doSaveToDisk=True, doWriteStdOut=False)
        # configure() appends the move names to a module-global list on every call (each repeat
        # opens one more file handle per fit): pass only the names it does not know yet.
        new_moves = [name for name in kw['MoveNames'] if name not in ElapsedTimeLogger.EVENTNAMES]
        ElapsedTimeLogger.configure(out, new_moves, doSaveToDisk=True, doWriteStdOut=False)
        _patch_bnpy_namespaces()  # in case configuring imported further bnpy modules

    @staticmethod
    def _summarise(hmodel) -> FitResult:
        obs, alloc = hmodel.obsModel, hmodel.allocModel
        k = obs.K
        means = np.array([obs.get_mean_for_comp(i) for i in range(k)], dtype=np.float64)
        variances = np.array([obs._E_Cov(i) for i in range(k)], dtype=np.float64)  # β_k / (ν_k - 2)
        weights = np.asarray(alloc.get_active_comp_probs(), dtype=np.float64)  # E[π_k]
        counts = np.maximum(np.asarray(alloc.eta1, dtype=np.float64) - alloc.gamma1, 0.0)
        return FitResult(means=means, variances=variances, weights=weights, counts=counts)
