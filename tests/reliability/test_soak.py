"""A CI-size soak (bench/soak.py is the full one): 4 drivers on one PostgreSQL study, drivers SIGKILLed at random
while they hold trials and restarted with the same command, then resumed once more: exactly --trials finished,
no genome trained twice, nothing lost."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import soak as SOAK  # noqa: E402


@pytest.mark.slow
def test_four_drivers_killed_at_random_lose_and_duplicate_nothing(postgres_url, tmp_path):
    r = SOAK.soak(postgres_url, trials=20, drivers=4, kill_every_s=3.0, max_kills=3, seed=1, workdir=tmp_path,
                  timeout_s=400, log=lambda s: None)
    assert not r["errors"], r["errors"]
    assert r["faults_injected"] >= 2 and r["in_flight_at_kills"] >= r["faults_injected"], r
    assert r["finished"] == 20, r
    assert r["trained_twice"] == 0, r
    assert r["lost"] == 0, r
    assert r["crashed_recovered"] >= 1 and r["unrecovered_kills"] == 0, r
    assert not r["final_resume_stderr"] or "Traceback" not in " ".join(r["final_resume_stderr"])
