"""An export killed with SIGKILL at each of its kill points (nasseg.faults): the output folder is always the
previous complete export or the new complete one, and running the same command again completes it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pytest
import torch

from nasseg import faults
from nasseg import study as St
from nasseg.build import build
from tests.test_export import _attrs, _crafted, _distinct_genomes


def _export(url: str, out: Path, kill: str | None, *extra: str) -> int:
    """``nasseg export`` in a forked child (this process has torch and nasseg imported already, so a run is
    the export itself, not start-up); returns its exit code, or minus the signal that ended it."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.environ.pop(faults.KILL_ENV, None)
            if kill:
                os.environ[faults.KILL_ENV] = kill
            faults._kill_counts.clear()
            from nasseg.cli import main

            code = main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress", *extra])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _complete(out: Path, members: int) -> dict:
    """``out`` is a finished export of ``members`` architectures, each with its weights and a checked ONNX."""
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["exported"] == members == len(manifest["members"]) and not manifest["incomplete"]
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [f.name for f in folders] == [m["folder"] for m in manifest["members"]]
    for f in folders:
        assert (f / "model.pt").is_file() and (f / "model.onnx").is_file() and (f / "README.md").is_file()
        assert json.loads((f / "model.json").read_text())["problems"] == []
    for name in ("pareto.csv", "pareto.png", "report.md"):
        assert (out / name).is_file()
    return manifest


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.slow
def test_export_killed_at_every_point_leaves_a_complete_export_and_a_rerun_finishes(tmp_path):
    g1, g2 = _distinct_genomes(2)
    weights = []
    for i, g in enumerate((g1, g2)):
        weights.append(tmp_path / f"w{i}.pt")
        torch.save(build(g, 11).state_dict(), weights[-1])
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g1, 0.6, 0.8, weights=weights[0]))])
    out = tmp_path / "front"

    # a first export killed after its only architecture: nothing at out, a partial folder beside it
    assert _export(url, out, "export_member:1") == -signal.SIGKILL
    assert not out.exists() and [n.rpartition("-")[0] for n in _leftovers(out)] == [".front.partial"]
    assert _export(url, out, None) == 0  # the same command completes it and removes the partial folder
    old = _complete(out, 1)
    assert _leftovers(out) == []
    old_bytes = (out / "export.json").read_bytes()

    # a second architecture joins the front; each --overwrite export is killed at a later point
    study = St.load_study(url, "c", readonly=False)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.7],
                                              user_attrs=_attrs(g2, 0.7, 0.9, weights=weights[1])))
    seen = []
    for point, expect in (("export_member:2", "old"), ("export_aside:1", "none"), ("export_swap:1", "old"),
                          ("export_swapped:1", "new")):
        assert _export(url, out, point, "--overwrite") == -signal.SIGKILL, point
        kinds = [n.rpartition("-")[0] for n in _leftovers(out)]
        if expect == "old":  # the previous export, byte for byte, and the new one half-built beside it
            assert (out / "export.json").read_bytes() == old_bytes and _complete(out, 1) == old, point
            assert kinds == [".front.partial"], (point, kinds)
        elif expect == "none":  # the one window: between moving the old export aside and renaming the new in
            assert not out.exists() and kinds == [".front.old", ".front.partial"], (point, kinds)
            aside = next(p for p in out.parent.iterdir() if p.name.startswith(".front.old-"))
            assert (aside / "export.json").read_bytes() == old_bytes  # complete, and put back by the next run
        else:  # the new export in place, the old one still aside
            assert _complete(out, 2)["front_size"] == 2 and kinds == [".front.old"], (point, kinds)
        seen.append(expect)
    assert seen == ["old", "none", "old", "new"]

    assert _export(url, out, None, "--overwrite") == 0  # re-running completes it and cleans every leftover
    assert _complete(out, 2)["front_size"] == 2 and _leftovers(out) == []


def test_leftovers_of_a_live_exporter_are_left_alone(tmp_path):
    """Only folders of exporters that are gone are removed: a partial folder named after a live pid stays."""
    from nasseg.export.bundle import _clean_leftovers

    out = tmp_path / "front"
    mine = tmp_path / f".front.partial-{os.getpid()}"
    mine.mkdir()
    dead_pid = _dead_pid()
    gone = tmp_path / f".front.partial-{dead_pid}"
    gone.mkdir()
    other = tmp_path / f".frontier.partial-{dead_pid}"  # another export's folder
    other.mkdir()
    _clean_leftovers(out)
    assert mine.is_dir() and not gone.exists() and other.is_dir() and not out.exists()


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
