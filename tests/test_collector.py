"""encd.collector: the collector's settings for long-running processes, and their undoing."""

from __future__ import annotations

import gc

import pytest

from encd.collector import YOUNG_GC_THRESHOLD, long_running


def test_long_running_freezes_raises_the_young_threshold_and_undoes_both() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(10)] + [[n] for n in range(10)]  # tracked lists
    with long_running():
        assert gc.get_threshold() == (max(YOUNG_GC_THRESHOLD, before[0]), *before[1:])
        assert gc.get_freeze_count() >= len(kept) // 2
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_long_running_undoes_its_settings_when_the_work_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), long_running():
        raise RuntimeError("the work failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_long_running_keeps_a_young_threshold_already_higher() -> None:
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD * 2, *before[1:])
    try:
        with long_running():
            assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)
