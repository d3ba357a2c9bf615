"""bench/latency_backends.py: its busy processes always end, and (slow) a tiny run prints every part."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import latency_backends as LB  # noqa: E402


def test_busy_processes_spin_then_are_terminated_even_on_an_error():
    with pytest.raises(RuntimeError), LB.busy(2, 60) as procs:
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
        raise RuntimeError("boom")
    assert not any(p.is_alive() for p in procs)
    with LB.busy(1, 0.1) as procs:  # bounded by itself too
        procs[0].join(10)
        assert not procs[0].is_alive()


@pytest.mark.slow
def test_a_tiny_run_prints_ratio_tau_and_widths():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "latency_backends.py"), "--resolution", "32x64",
                           "--samples", "1", "--presets", "lednet,espnet", "--max-seconds", "0.3", "--max-runs", "40",
                           "--width-models", "lednet",
                           "--width-repeats", "1", "--load", "1", "--load-seconds", "60"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Kendall tau-b of the two rankings" in out and "ort/eager" in out and "realtime#0" in out
    assert "loaded: 1 busy process(es): interval half-width (rule, pinned) / (fixed 30, pinned)" in out
    assert "load average" in out and "machine load during the run" in out
