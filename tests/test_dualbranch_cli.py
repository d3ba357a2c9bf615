"""A search of ``search_spaces/dualbranch.yaml`` through the CLI, and an export of its front (issue #17), at tiny
size: multi-branch genomes go through sampling, the cost table, latency, proxy training (with the auxiliary and
boundary heads of the branches), the study database, the Pareto front, ONNX export and the model cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasseg import genome as G

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "nasseg", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_search_and_export_of_the_dualbranch_space(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    out = _run(["search", "--space", str(ROOT / "search_spaces" / "dualbranch.yaml"), "--mode", "pareto",
                "--latency-resolution", "64x128", "--latency-threads", "1", "--latency-runs", "30",
                "--latency-tolerance", "0", "--trials", "3",
                "--proxy-resolution", "64x128", "--proxy-steps", "2", "--proxy-batch", "2", "--sampler", "random",
                "--seed", "3", "--no-progress", "--executor", "local", "--storage", db, "--study", "d"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    export = _run(["export", "--storage", db, "--study", "d", "--out", str(tmp_path / "front")], tmp_path)
    assert export.returncode == 0, export.stderr[-3000:]
    members = [p for p in (tmp_path / "front").iterdir() if p.is_dir()]
    assert members, sorted(p.name for p in (tmp_path / "front").iterdir())
    branched = 0
    for m in members:
        files = {p.name for p in m.iterdir()}
        assert any(n.endswith(".onnx") for n in files), (m.name, files)
        genome = next(json.loads((m / n).read_text()) for n in files if n.endswith("genome.json"))
        g = G.from_dict(genome["genome"] if "genome" in genome else genome)
        branched += bool(g.branches)
    assert branched == len(members)  # every member of the space has the high-resolution branch
