"""StampWindow: joint-state stamps judged against the receiving clock (issue #15, 2)."""
from __future__ import annotations

import pytest

from legion_ros.provenance import BadMessageError, StampWindow

S = 1_000_000_000  # ns


def test_a_stamp_far_in_the_future_is_rejected_and_not_adopted():
    gate = StampWindow(0.5)
    now = 1000 * S
    assert gate.check(now, now) == now
    with pytest.raises(BadMessageError, match=r'3599\.990 s ahead'):
        gate.check(now + 3600 * S, now + S // 100)
    # The real driver's next samples are still accepted: the future one did not become the reference.
    for k in range(1, 5):
        assert gate.check(now + k * S // 100, now + k * S // 100)


def test_stale_and_out_of_order_stamps_inside_the_window_are_rejected():
    gate = StampWindow(0.5)
    now = 1000 * S
    gate.check(now, now)
    with pytest.raises(BadMessageError, match='behind'):
        gate.check(now - 2 * S, now)
    with pytest.raises(BadMessageError, match='older than the previous'):
        gate.check(now - S // 10, now)


def test_after_both_clocks_jump_back_the_order_starts_again():
    """Driver restart, NTP step or a simulator reset under sim time: the receiving clock goes back with
    the driver's; the old reference is outside the window and no longer counts."""
    gate = StampWindow(0.5)
    gate.check(5000 * S, 5000 * S)
    assert gate.check(10 * S, 10 * S) == 10 * S
    assert gate.check(10 * S + S // 100, 10 * S + S // 100)


def test_a_driver_clock_behind_ours_is_rejected_until_they_agree_again():
    gate = StampWindow(0.5)
    gate.check(1000 * S, 1000 * S)
    with pytest.raises(BadMessageError, match='clocks disagree'):
        gate.check(400 * S, 1000 * S + S // 100)
    # Within the window, a step back is rejected only until the stamps pass the previous one.
    with pytest.raises(BadMessageError):
        gate.check(1000 * S - S // 5, 1000 * S + S // 50)
    assert gate.check(1000 * S + S // 10, 1000 * S + S // 10)


def test_reset_forgets_the_reference_and_no_clock_means_order_only():
    gate = StampWindow(0.5)
    gate.check(100 * S, 0)            # sim time before the first /clock: only the order counts
    with pytest.raises(BadMessageError, match='older'):
        gate.check(99 * S, 0)
    gate.reset()
    assert gate.check(99 * S, 0) == 99 * S
    with pytest.raises(ValueError):
        StampWindow(0.0)
