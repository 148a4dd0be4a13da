"""Clocks: the manual clock moves only when told to, the system clock is the wall clock."""

from __future__ import annotations

import time

import pytest

from cascata.local.clock import Clock, ManualClock, SystemClock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    clock.sleep(2.5)
    assert clock.advance(1) == 103.5
    clock.set(200)
    assert clock.now() == 200.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(10)


def test_manual_clock_starts_at_wall_time_by_default() -> None:
    assert abs(ManualClock().now() - time.time()) < 5


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    assert abs(SystemClock().now() - time.time()) < 1
