"""bench/gpu_check.py: its CPU dry path (what CI runs), its refusals, and its GPU run where CUDA is present."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
SECTIONS = ("synthetic", "latency", "amp", "ray", "search")


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_DISABLE_USAGE_STATS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _check_table(proc: subprocess.CompletedProcess, out: Path, statuses: set[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("\ngpu_check ("):]  # the final table, after the sections' own output
    for name in SECTIONS:
        assert any(line.startswith(name + " ") for line in table.splitlines()), (name, table)
    rows = json.loads((out / "gpu_check.json").read_text())["rows"]
    assert [r["section"] for r in rows] == list(SECTIONS)
    assert {r["status"] for r in rows} <= statuses, rows
    md = (out / "gpu_check.md").read_text()
    assert all(f"| {name} |" in md for name in SECTIONS)


@pytest.mark.slow
def test_cpu_dry_path_runs_every_section(tmp_path):
    """Without CUDA the bare command says so in one line and runs the dry path; with CUDA, ask for it."""
    cuda = torch.cuda.is_available()
    proc = _run(*(["--device", "cpu", "--quick"] if cuda else []), "--out", str(tmp_path))
    if not cuda:
        assert proc.stdout.splitlines()[0] == "no CUDA device: running the CPU dry path (--device cpu --quick)"
    _check_table(proc, tmp_path, {"ran", "WARN"})  # WARN: the ONNX exporter's own limits, the same on any device
    assert (tmp_path / "logs" / "export.log").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_cuda_and_unknown_sections_are_refused():
    proc = _run("--device", "cuda")
    assert proc.returncode == 2 and "torch.cuda.is_available() is False" in proc.stderr
    proc = _run("--device", "cpu", "--only", "latency,warp")
    assert proc.returncode == 2 and "unknown section(s) ['warp']" in proc.stderr


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_quick_runs_every_section(tmp_path):
    _check_table(_run("--device", "cuda", "--quick", "--out", str(tmp_path)), tmp_path, {"ran", "WARN"})
