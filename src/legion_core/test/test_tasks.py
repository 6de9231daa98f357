"""Task streams: the built-in streams, name normalisation, orders and error messages."""
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3

from legion_core.tasks import CW10, LEGION10, MT10, STREAMS, normalise_task_name, resolve_stream


def test_builtin_streams_are_ten_distinct_metaworld_v3_tasks():
    for name, stream in STREAMS.items():
        assert len(stream) == len(set(stream)) == 10, name
        assert set(stream) <= set(ALL_V3_ENVIRONMENTS), name


def test_stream_contents_match_their_sources():
    assert list(MT10) == list(MT10_V3)  # Meta-World's own MT10, in its order
    assert LEGION10[0] == 'reach-v3' and LEGION10[-1] == 'window-close-v3'
    # LEGION swaps drawer-open and peg-insert-side for faucet-open and peg-unplug-side (§4.1).
    assert set(LEGION10) ^ set(MT10) == {'drawer-open-v3', 'peg-insert-side-v3', 'faucet-open-v3',
                                         'peg-unplug-side-v3'}
    assert LEGION10.index('faucet-open-v3') == MT10.index('drawer-open-v3')
    assert CW10[0] == 'hammer-v3' and CW10[-1] == 'peg-unplug-side-v3'


def test_resolve_names_lists_and_short_names():
    assert resolve_stream('legion10') == list(LEGION10)
    assert resolve_stream('MT10') == list(MT10)
    assert resolve_stream(['reach', 'push-v3']) == ['reach-v3', 'push-v3']
    assert resolve_stream('reach, window-close') == ['reach-v3', 'window-close-v3']
    assert normalise_task_name(' Reach ') == 'reach-v3'


def test_orders():
    assert resolve_stream('cw10', 'reverse') == list(reversed(CW10))
    first = resolve_stream('legion10', 'random', seed=3)
    assert first == resolve_stream('legion10', 'random', seed=3)  # seeded
    assert sorted(first) == sorted(LEGION10) and first != list(LEGION10)
    orders = {tuple(resolve_stream('legion10', 'random', seed=s)) for s in range(5)}
    assert len(orders) == 5


@pytest.mark.parametrize(('spec', 'order', 'fragments'), [
    ('rech', 'curriculum', ['reach-v3', 'Known tasks']),
    (['reach', 'pusj'], 'curriculum', ['push-v3']),
    ('legoin10', 'curriculum', ["'legion10'"]),
    ('legion10', 'randm', ["'random'", 'curriculum, reverse, random']),
    ([], 'curriculum', ['empty']),
    ('reach,push,reach', 'curriculum', ['reach-v3', 'allow_repeats']),
])
def test_errors_name_the_problem_and_suggest(spec, order, fragments):
    with pytest.raises(ValueError) as info:
        resolve_stream(spec, order)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_repeated_stream_when_allowed():
    assert resolve_stream('reach,push,reach', allow_repeats=True) == ['reach-v3', 'push-v3', 'reach-v3']
