"""Pinning the measuring thread: the last allowed core(s), recorded, and everything restored afterwards."""

import os
import threading

import pytest

from nasseg.latency import pinned

linux = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity on this OS")


@linux
def test_pins_the_calling_thread_and_threads_born_inside_then_restores_both():
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("one allowed core: nothing to pin to apart")
    seen: dict[str, set[int]] = {}
    born, release = threading.Event(), threading.Event()

    def worker() -> None:
        seen["born"] = os.sched_getaffinity(0)
        born.set()
        release.wait(10)
        seen["after"] = os.sched_getaffinity(0)

    with pinned(1) as aff:
        assert aff["cores"] == [allowed[-1]] and aff["allowed"] == allowed
        assert os.sched_getaffinity(0) == {allowed[-1]}
        t = threading.Thread(target=worker)
        t.start()
        assert born.wait(10)
    release.set()
    t.join()
    assert os.sched_getaffinity(0) == set(allowed)
    assert seen["born"] == {allowed[-1]} and seen["after"] == set(allowed)  # a pool started while pinned is freed


@linux
def test_as_many_threads_as_cores_pins_nothing_and_says_so():
    allowed = sorted(os.sched_getaffinity(0))
    with pinned(len(allowed)) as aff:
        assert os.sched_getaffinity(0) == set(allowed)
        assert aff["scope"].startswith("none")
    assert os.sched_getaffinity(0) == set(allowed)


@linux
def test_restored_after_an_exception():
    allowed = set(os.sched_getaffinity(0))
    with pytest.raises(RuntimeError), pinned(1):
        raise RuntimeError("boom")
    assert os.sched_getaffinity(0) == allowed
