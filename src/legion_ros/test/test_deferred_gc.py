"""DeferredCollection: the decision path's garbage collection runs between callbacks, at Python's rate."""
from __future__ import annotations

import gc
import weakref

import pytest

from legion_ros.node_base import DeferredCollection


class _Cyclic:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def collection():
    thresholds = gc.get_threshold()
    deferred = DeferredCollection()
    yield deferred
    deferred.close()
    gc.set_threshold(*thresholds)


def test_no_automatic_collection_until_asked_then_garbage_is_freed(collection):
    assert not gc.isenabled()
    assert gc.get_freeze_count() > 0  # what start-up left alive is never traversed again
    garbage = _Cyclic()
    alive = weakref.ref(garbage)
    del garbage
    survivors = [[i] for i in range(5 * collection.thresholds[0])]  # far past the automatic threshold
    assert alive() is not None  # nothing collected inside "the callback"
    collection.collect_if_due()
    assert alive() is None
    assert len(survivors) == 5 * collection.thresholds[0]


def test_nothing_is_collected_before_the_threshold(collection):
    collection.collect_if_due()  # start from an empty young generation
    garbage = _Cyclic()
    alive = weakref.ref(garbage)
    del garbage
    collection.collect_if_due()
    assert alive() is not None  # one object is not worth a collection: Python would not run one either
    gc.collect()
    assert alive() is None


def test_close_restores_automatic_collection():
    deferred = DeferredCollection()
    deferred.close()
    assert gc.isenabled() and gc.get_freeze_count() == 0
