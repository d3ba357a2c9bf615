"""Export of a study's Pareto front: the front function, the bundle, ONNX, load(), and the CLI's errors."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import optuna
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from nasseg import export as E
from nasseg import search as S
from nasseg import study as St
from nasseg.build import build
from nasseg.cli import main
from nasseg.cost import count_params
from nasseg.errors import NassegError
from nasseg.export.front import _META_KEY, _STATUS_KEY, QUALIFYING_STATUSES
from nasseg.export.onnx import _onnx_symbolics
from nasseg.genome import from_json, genome_id, parse, to_json, to_string
from nasseg.space import load_space
from nasseg.train import Recipe

TINY = str(Path(__file__).parent / "fixtures" / "tiny_space.yaml")
LAT_RES = (64, 128)
RECIPE = Recipe(resolution=(32, 64), steps=6, batch_size=2, eval_every=3, warmup_steps=0, amp=False,
                train_length=16, val_length=4, log_every=1)


# ============================================================================== the front (pure function)
def _rec(n, miou=0.5, lat=1.0, *, state="COMPLETE", status="trained", full=True, gid=None):
    ua = {"nasseg_status": status, "genome_id": gid or f"g{n}", "latency_ms": lat,
          "fidelity": {"steps": 6 if full else 3, "planned_steps": 6, "full": full}}
    if miou is not None:
        ua["miou"] = miou
    return {"number": n, "state": state, "values": None if miou is None else [miou], "user_attrs": ua}


def test_front_keeps_only_non_dominated_and_ranks_by_miou():
    recs = [_rec(0, 0.50, 2.0), _rec(1, 0.60, 3.0), _rec(2, 0.40, 2.5),  # 2 is dominated by 0
            _rec(3, 0.50, 2.5), _rec(4, 0.30, 1.0), _rec(5, 0.30, 1.5)]  # 3 by 0 (same mIoU, slower); 5 by 4
    front = E.pareto_front(recs)
    assert [(m.rank, m.number) for m in front] == [(1, 1), (2, 0), (3, 4)]
    labels = E.classify_trials(recs)
    assert {n for n, v in labels.items() if v["on_front"]} == {0, 1, 4}
    assert labels[2]["front_status"] == labels[3]["front_status"] == labels[5]["front_status"] == "dominated"


def test_front_excludes_rejected_pruned_failed_running_and_partial_fidelity():
    best = dict(miou=0.99, lat=0.1)  # each would dominate everything if it qualified
    recs = [
        _rec(0, 0.5, 1.0),
        _rec(1, None, 0.05, state="PRUNED", status="rejected"),
        _rec(2, state="PRUNED", status="stopped", full=False, **best),  # ASHA-stopped, higher mIoU
        _rec(3, state="COMPLETE", status="trained", full=False, **best),  # partial fidelity told COMPLETE
        _rec(4, None, 0.1, state="FAIL", status="failed"),
        _rec(5, None, 0.1, state="FAIL", status="crashed"),
        _rec(6, None, None, state="RUNNING", status=None),
        _rec(7, state="COMPLETE", status="rejected", **best),  # inconsistent status: never trusted
        _rec(8, 0.98, 5.0),  # over the budget below
        _rec(9, float("nan"), 0.2),
        _rec(10, state=optuna.trial.TrialState.PRUNED, status="stopped", **best),  # an enum state works too
    ]
    front = E.pareto_front(recs, budget_ms=2.0)
    assert [m.number for m in front] == [0]
    why = {r["number"]: E.disqualification(r, 2.0) for r in recs}
    assert why == {0: None, 1: "rejected", 2: "stopped", 3: "partial fidelity", 4: "failed", 5: "crashed",
                   6: "running", 7: "status rejected", 8: "over budget", 9: "no result", 10: "stopped"}
    assert [m.number for m in E.pareto_front(recs)] == [8, 0]  # without a budget 8 is feasible


def test_front_collapses_duplicate_genomes_to_the_earliest_trained_trial():
    recs = [_rec(4, 0.7, 1.0, status="reused", gid="a"),  # a reuse listed before the trained one
            _rec(2, 0.7, 1.0, gid="a"), _rec(7, 0.7, 1.0, status="reused", gid="a"),
            _rec(3, 0.4, 0.5, gid="b")]
    front = E.pareto_front(recs)
    assert [(m.number, m.genome_id, m.duplicates) for m in front] == [(2, "a", (4, 7)), (3, "b", ())]
    labels = E.classify_trials(recs)
    assert labels[4] == labels[7] == {"front_status": "duplicate", "on_front": False, "front_rank": 1, "same_as": 2}
    # only reused copies (the trained trial was partial): the earliest reused one represents the genome
    recs2 = [_rec(1, 0.7, 1.0, gid="a", full=False), _rec(5, 0.7, 1.0, status="reused", gid="a"),
             _rec(6, 0.7, 1.0, status="reused", gid="a")]
    assert [(m.number, m.duplicates) for m in E.pareto_front(recs2)] == [(5, (6,))]


def test_front_collapses_exact_ties_of_distinct_genomes():
    recs = [_rec(5, 0.6, 1.0, gid="x"), _rec(3, 0.6, 1.0, gid="y"), _rec(8, 0.6, 1.0, gid="y", status="reused"),
            _rec(1, 0.4, 0.5, gid="z")]
    front = E.pareto_front(recs)
    assert [(m.number, m.genome_id, m.duplicates, m.ties) for m in front] == [(3, "y", (8,), (5,)),
                                                                              (1, "z", (), ())]
    labels = E.classify_trials(recs)
    assert labels[5]["front_status"] == "tie" and labels[5]["same_as"] == 3
    assert labels[8]["front_status"] == "duplicate"
    assert E.pareto_front([]) == [] and E.pareto_front([_rec(0, state="PRUNED", status="rejected")]) == []


def test_status_keys_match_the_search():
    assert _STATUS_KEY == S.STATUS_KEY and _META_KEY == S.META_KEY
    assert set(QUALIFYING_STATUSES) <= {"trained", "reused", "rejected", "stopped", "failed", "crashed"}


# ======================================================================================= ONNX helpers
class _Pools(nn.Module):
    def forward(self, x):
        h, w = x.shape[-2:]
        ys = [F.interpolate(F.adaptive_avg_pool2d(x, b), (h, w), mode="bilinear") for b in (1, 2, 3, 6, (5, 7))]
        return torch.cat(ys, 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_adaptive_pooling_exports_for_sizes_that_do_not_divide(tmp_path):
    """PPM's 3x3 / 6x6 bins on a 16x30 map: the stock exporter refuses them; ours writes exact pooling."""
    info = E.export_onnx(_Pools(), tmp_path / "p.onnx", (1, 4, 16, 30), dynamic_hw=False)
    assert info["max_abs_diff"] < 1e-5 and info["opset"] == E.ONNX_OPSET >= 17
    assert info["hw"] == "static" and info["checked_resolutions"] == [[16, 30]] and info["dynamic_hw_failure"] is None
    ops = {n.op_type for n in onnx.load(str(tmp_path / "p.onnx")).graph.node}
    assert {"GlobalAveragePool", "AveragePool", "MatMul"} <= ops  # 1x1, 2x2 (divides 16x30), the rest
    with pytest.raises(torch.onnx.errors.SymbolicValueError, match="adaptive_avg_pool2d"):  # ours is gone again
        torch.onnx.export(_Pools(), (torch.randn(1, 4, 16, 30),), io.BytesIO(), dynamo=False, opset_version=17)


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]


def test_adaptive_pooling_with_a_dynamic_height_and_width(tmp_path):
    """With dynamic H x W the pooling windows are computed from the runtime shape: exact at any size."""
    info = E.export_onnx(_Pools(), tmp_path / "p.onnx", (1, 4, 16, 30))
    assert info["hw"] == "dynamic" and info["dynamic_axes"] == ["batch", "height", "width"]
    assert info["checked_resolutions"] == [[16, 30], list(E.second_resolution(16, 30))] and info["max_abs_diff"] < 1e-5
    for size in ((13, 21), (40, 7)):  # sizes never traced nor checked by the export
        x = torch.randn(2, 4, *size)
        assert float(np.abs(_run_onnx(tmp_path / "p.onnx", x) - _Pools()(x).numpy()).max()) < 1e-5


class _Split(nn.Module):
    """As RegSeg's D block with two dilations: ``tensor_split`` over channels, a conv per part, concatenated.
    The exporter's shape inference loses H x W after the split, so the pooling behind it sees no static size."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(2, 2, 3, padding=d, dilation=d) for d in (1, 2))

    def forward(self, x):
        y = torch.cat([conv(p) for conv, p in zip(self.convs, torch.tensor_split(x, 2, dim=1))], 1)
        return _Pools()(y)


@pytest.mark.parametrize("dynamic_hw", [False, True])
def test_adaptive_pooling_after_a_split_whose_size_the_exporter_loses(tmp_path, dynamic_hw):
    """Issue #15: a PPM behind a multi-dilation D block failed with "needs a static input H x W"."""
    info = E.export_onnx(_Split().eval(), tmp_path / "s.onnx", (1, 4, 16, 32), dynamic_hw=dynamic_hw)
    assert info["hw"] == ("dynamic" if dynamic_hw else "static") and info["max_abs_diff"] < 1e-5


class _Baked(nn.Module):
    """Python ints taken from the traced shape: 16 x 30 is baked into the graph, so dynamic H x W cannot hold."""

    def forward(self, x):
        n, c, h, w = (int(v) for v in x.shape)
        return x.mean((2, 3), keepdim=True) * torch.arange(h * w, dtype=x.dtype).view(1, 1, h, w)


def test_a_graph_that_does_not_verify_at_a_second_resolution_falls_back_to_a_static_one(tmp_path, capfd):
    info = E.export_onnx(_Baked(), tmp_path / "b.onnx", (1, 2, 16, 30), log_path=tmp_path / "b.log")
    assert info["hw"] == "static" and info["dynamic_axes"] == ["batch"] and info["checked_resolutions"] == [[16, 30]]
    assert info["dynamic_hw_failure"].startswith("dynamic H x W: ") and "\n" not in info["dynamic_hw_failure"]
    x = torch.randn(2, 2, 16, 30)
    assert float(np.abs(_run_onnx(tmp_path / "b.onnx", x) - _Baked()(x).numpy()).max()) < 1e-5
    assert "export with dynamic H x W failed" in (tmp_path / "b.log").read_text()
    assert capfd.readouterr() == ("", "")


class _Unsupported(nn.Module):
    def forward(self, x):
        return torch.special.erfcx(x)


def test_a_failed_export_is_one_line_and_the_exporters_output_goes_to_the_log(tmp_path, capfd):
    """The TorchScript exporter prints its whole IR graph to stdout when an operator fails: never shown."""
    with pytest.raises(NassegError) as e:
        E.export_onnx(_Unsupported(), tmp_path / "u.onnx", (1, 3, 8, 8), log_path=tmp_path / "u.log")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("ONNX export failed at 8x8: ") and "special_erfcx" in msg
    assert "u.log" in msg and not (tmp_path / "u.onnx").exists()
    assert capfd.readouterr() == ("", "")
    log = (tmp_path / "u.log").read_text()
    assert "Torch IR graph at exception" in log and "static H x W = 8x8 failed" in log


class _Warp(nn.Module):
    """A grid built with ``linspace(..., dtype=x.dtype)`` from traced sizes, as RegSeg's ``_AlignedModule``."""

    def __init__(self):
        super().__init__()
        self.flow = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        flow = self.flow(x)
        h, w = flow.shape[-2:]
        norm = torch.tensor([w, h], dtype=x.dtype).view(1, 1, 1, 2)
        ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype).view(-1, 1).expand(h, w)
        xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype).view(1, -1).expand(h, w)
        grid = torch.stack((xs, ys), 2).unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(x, grid + flow.permute(0, 2, 3, 1) / norm, mode="bilinear", align_corners=False)


def test_linspace_keeps_its_dtype_so_grid_sample_runs(tmp_path):
    """With static shapes the stock exporter folds the grid to a float64 constant: no GridSample kernel."""
    net, x = _Warp().eval(), torch.randn(1, 3, 9, 14)
    with _onnx_symbolics(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "w.onnx"), dynamo=False, opset_version=E.ONNX_OPSET,
                          input_names=["x"])
        ref = net(x)
    sess = ort.InferenceSession(str(tmp_path / "w.onnx"), providers=["CPUExecutionProvider"])
    assert float(np.abs(sess.run(None, {"x": x.numpy()})[0] - ref.numpy()).max()) < 1e-5


# ===================================================================================== a real study
def _cfg_kwargs(db: Path, budget: float | None, mode: str, trials: int) -> dict:
    return dict(space=TINY, storage=f"sqlite:///{db}", study="t", trials=trials, latency_budget_ms=budget,
                mode=mode, sampler="random", seed=3, executor="local", progress=False)


def _search(db: Path, budget: float | None, mode: str = "constrained", trials: int = 8) -> S.SearchConfig:
    cfg = S.SearchConfig(**_cfg_kwargs(db, budget, mode, trials), recipe=RECIPE,
                         latency=S.LatencySpec(resolution=LAT_RES, threads=1, warmup=3))
    S.search(cfg, log=lambda s: None)
    return cfg


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, tiny_budget_ms) -> Path:
    db = tmp_path_factory.mktemp("study") / "study.db"
    _search(db, tiny_budget_ms)
    return db


@pytest.fixture(scope="module")
def exported(study_db, tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("exp") / "front"
    t0 = time.perf_counter()
    rc = main(["export", "--storage", f"sqlite:///{study_db}", "--study", "t", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out, time.perf_counter() - t0


def _folders(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def _check_bundle(out: Path, study: optuna.Study) -> list[float]:
    """Every folder: genome round trip, identical params, load() == trained weights, ONNX within 1e-4."""
    by_number = {t.number: t for t in study.trials}
    manifest = json.loads((out / "export.json").read_text())
    folders = _folders(out)
    assert [f.name for f in folders] == [m["folder"] for m in manifest["members"]]
    diffs = []
    for folder, m in zip(folders, manifest["members"]):
        t = by_number[m["trial"]]
        ua = t.user_attrs
        assert folder.name == f"{m['rank']:02d}_{ua['genome_id']}"
        text = (folder / "genome.json").read_text().strip()
        g = from_json(text)
        assert text == to_json(g) == ua["genome_json"] and genome_id(g) == ua["genome_id"]
        assert parse((folder / "genome.txt").read_text().strip()) == g
        # genome.json rebuilds a module with identical params, and load() gives the trained network
        trained = torch.load(ua["weights_path"], weights_only=True)
        ref = build(g, 11)
        ref.load_state_dict(trained, strict=True)
        ref.eval()
        net = E.load(folder)
        assert not net.training and count_params(net) == ua["params"]
        got = net.state_dict()
        assert got.keys() == trained.keys() and all(torch.equal(got[k], trained[k]) for k in got)
        x = torch.randn(2, 3, *LAT_RES, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            y = net(x)
            assert torch.equal(y, ref(x))
        # model.onnx in onnxruntime, on a fresh random input
        sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        o = sess.run(None, {"image": x.numpy()})[0]
        diffs.append(float(np.abs(o - y.numpy()).max()))
        assert diffs[-1] <= 1e-4
        mj = json.loads((folder / "model.json").read_text())
        assert mj["onnx"]["max_abs_diff"] <= 1e-4 and mj["onnx"]["opset"] >= 17 and mj["problems"] == []
        assert mj["rebuild_check"]["max_abs_diff"] == 0.0 and mj["rebuild_check"]["params_match_study"]
        card = (folder / "README.md").read_text()
        for needle in (f"{ua['params']:,}", f"{ua['macs']:,}", "median", "p90", "CV", "background", "token_cold",
                       f"`t` / {t.number}", "sqlite:///", ua["genome"], "steps", str(ua["latency"]["device_name"])):
            assert needle in card, needle
    return diffs


def test_export_bundle_of_a_constrained_study(exported, study_db, tiny_budget_ms):
    out, wall = exported
    study = St.load_study(f"sqlite:///{study_db}", "t")
    records = [E.trial_record(t) for t in study.trials]
    front = E.pareto_front(records, tiny_budget_ms)
    assert front and len(_folders(out)) == len(front)
    for m in front:
        assert m.latency_ms <= tiny_budget_ms and m.record["user_attrs"]["nasseg_status"] == "trained"
    diffs = _check_bundle(out, study)
    # pareto.csv: every trial, its status and the front flag
    df = pd.read_csv(out / "pareto.csv")
    assert sorted(df.trial) == [t.number for t in study.trials]
    assert set(df[df.on_front].trial) == {m.number for m in front}
    assert set(df[df.status == "rejected"].front_status) <= {"rejected"} and (df.status == "rejected").any()
    assert df.front_rank.dropna().astype(int).min() == 1
    with Image.open(out / "pareto.png") as im:
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 500
    report = (out / "report.md").read_text()
    assert "pareto.png" in report and all(f.name in report for f in _folders(out))
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["max_onnx_diff"] == pytest.approx(max(m["onnx"]["max_abs_diff"] for m in manifest["members"]))
    print(f"\nexport of the tiny study: {len(front)} architectures in {wall:.1f} s, max ONNX diff {max(diffs):.2e}")
    assert not list(out.parent.glob(".*partial*"))  # no temporary folder left behind


def test_load_needs_nothing_from_the_search_machinery(exported):
    folder = _folders(exported[0])[0]
    code = ("import sys, torch; from nasseg.export import load; net = load(sys.argv[1]); "
            "y = net(torch.zeros(1, 3, 64, 128)); assert not net.training and y.shape == (1, 11, 64, 128); "
            "bad = [m for m in ('optuna', 'ray', 'nasseg.search', 'nasseg.train', 'fvcore') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    with pytest.raises(NassegError, match="architecture folders in it: 01_"):
        E.load(exported[0])  # the top folder is not an architecture


def test_export_pareto_mode_study_with_top(tmp_path, tmp_path_factory):
    db = tmp_path_factory.mktemp("pareto") / "p.db"
    _search(db, None, mode="pareto", trials=6)
    study = St.load_study(f"sqlite:///{db}", "t")
    front = E.pareto_front([E.trial_record(t) for t in study.trials])
    assert front and {tuple(t.values) for t in study.best_trials} >= {(m.miou, m.latency_ms) for m in front}
    out = tmp_path / "top1"
    assert main(["export", "--storage", f"sqlite:///{db}", "--study", "t", "--out", str(out), "--top", "1",
                 "--no-progress"]) == 0
    assert len(_folders(out)) == 1 and _folders(out)[0].name.startswith("01_")
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["front_size"] == len(front) and manifest["exported"] == 1 and manifest["mode"] == "pareto"
    _check_bundle(out, study)


def test_export_from_a_copy_of_the_db_file(study_db, tmp_path, capsys):
    copy = tmp_path / "copy.db"
    shutil.copyfile(study_db, copy)
    if Path(f"{study_db}-wal").exists():  # the search's last writes may still sit in its WAL
        shutil.copyfile(f"{study_db}-wal", f"{copy}-wal")
    out = tmp_path / "out"
    assert main(["export", "--storage", f"sqlite:///{copy}", "--study", "t", "--out", str(out), "--top", "1",
                 "--no-progress"]) == 0
    assert len(_folders(out)) == 1 and (_folders(out)[0] / "model.onnx").is_file()
    assert "exported 1 of" in capsys.readouterr().out


def test_missing_study_names_the_existing_ones(study_db, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--storage", f"sqlite:///{study_db}", "--study", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasseg: error: study 'nope' does not exist") and "studies there: t" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_refuses_a_non_empty_out_folder(study_db, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ["export", "--storage", f"sqlite:///{study_db}", "--study", "t", "--out", str(out)]
    assert main(args) == 2 and "is not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 2 and "other than a nasseg export" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"


# ================================================================================== crafted studies
def _meta(budget: float | None, mode: str = "constrained", threads: int | None = 1) -> dict:
    return {"kind": "search", "space": TINY, "space_sha": "x", "mode": mode, "latency_budget_ms": budget,
            "latency": {"device": "cpu", "resolution": list(LAT_RES), "batch": 1, "threads": threads, "runs": 30,
                        "warmup": 3, "dtype": "float32"},
            "dataset": "synthetic", "num_classes": 11, "recipe": RECIPE.to_dict(),
            "sampler": {"name": "random", "seed": 0}, "asha": False, "nasseg_version": "0.1.0"}


def _crafted(tmp_path: Path, trials: list[tuple[str, dict]], budget: float | None = 1.0, url: str = "",
             mode: str = "constrained", threads: int | None = 1) -> str:
    """A study as nasseg search writes it: one objective (mIoU) in constrained mode, (mIoU, latency) in pareto."""
    url = url or f"sqlite:///{tmp_path / 'crafted.db'}"
    directions = ["maximize"] if mode == "constrained" else ["maximize", "minimize"]
    study = optuna.create_study(study_name="c", storage=St.open_storage(url), directions=directions)
    study.set_user_attr(S.META_KEY, _meta(budget, mode, threads))
    for state, ua in trials:
        st = optuna.trial.TrialState[state]
        values = None
        if state == "COMPLETE":
            values = [ua["miou"]] if mode == "constrained" else [ua["miou"], ua["latency_ms"]]
        study.add_trial(optuna.trial.create_trial(state=st, values=values, user_attrs=ua))
    return url


def _attrs(g, miou: float, lat: float, status: str = "trained", weights: Path | None = None) -> dict:
    net = build(g, 11)
    ua = {"genome_id": genome_id(g), "genome_json": to_json(g), "genome": to_string(g),
          "recipe_json": RECIPE.to_json(), "dataset": "synthetic", "params": count_params(net), "macs": 1000,
          "latency": {"median_ms": lat, "p90_ms": lat, "cv": 0.01, "device": "cpu", "resolution": list(LAT_RES)},
          "latency_ms": lat, "nasseg_status": status, "miou": miou, "seed": 0,
          "metrics": {"miou": miou, "per_class_iou": [miou] * 10 + [None], "pixel_acc": 0.5},
          "fidelity": {"steps": 6, "planned_steps": 6, "resolution": [32, 64], "full": True}}
    if weights is not None:
        ua["weights_path"] = str(weights)
    return ua


def test_no_feasible_trial_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    g = load_space(TINY).random(0)
    stopped = _attrs(g, 0.9, 0.5, "stopped") | {"fidelity": {"steps": 3, "planned_steps": 6, "full": False}}
    url = _crafted(tmp_path, [("PRUNED", _attrs(g, 0.0, 5.0, "rejected") | {"miou": None}),
                              ("PRUNED", stopped), ("FAIL", {"nasseg_status": "failed", "miou": None}),
                              ("COMPLETE", _attrs(g, 0.5, 3.0))])  # trained, but over the 1 ms budget
    out = tmp_path / "out"
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no complete, feasible, full-fidelity trial" in err
    assert "4 trials" in err and "rejected 1" in err and "budget 1 ms" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def _distinct_genomes(n: int) -> list:
    """n genomes of the tiny space whose state_dicts differ in shape (so weights of one never fit another)."""
    space, out, shapes = load_space(TINY), [], set()
    for i in range(500):
        g = space.random(i)
        key = tuple((k, tuple(v.shape)) for k, v in build(g, 11).state_dict().items())
        if key not in shapes:
            shapes.add(key)
            out.append(g)
            if len(out) == n:
                return out
    raise AssertionError("the tiny space has too few distinct architectures")


def test_missing_weights_are_reported_and_retrained_on_request(tmp_path, capsys):
    g1, g2, g3 = _distinct_genomes(3)
    present = tmp_path / "w2.pt"
    torch.save(build(g2, 11).state_dict(), present)
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g1, 0.6, 0.8, weights=tmp_path / "gone.pt")),
                              ("COMPLETE", _attrs(g2, 0.4, 0.5, weights=present)),
                              ("COMPLETE", _attrs(g3, 0.5, 0.7, weights=present))])  # another genome's weights
    out = tmp_path / "out"
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no usable proxy weights for trial 0" in err and "--retrain-steps" in err
    first, second, third = _folders(out)  # ranks: g1 (0.6), g3 (0.5), g2 (0.4)
    assert (first / "genome.json").is_file() and not (first / "model.pt").exists()
    assert "Incomplete export" in (first / "README.md").read_text()
    assert "do not fit the genome" in (second / "README.md").read_text() and not (second / "model.pt").exists()
    assert (third / "model.onnx").is_file() and json.loads((third / "model.json").read_text())["problems"] == []
    report = (out / "report.md").read_text()
    assert "## Incomplete" in report and first.name in report and second.name in report
    with pytest.raises(NassegError, match="model.pt is missing"):
        E.load(first)
    # --retrain-steps: the proxy is retrained with the study's recipe for N steps; --overwrite replaces the export
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress", "--overwrite",
                 "--retrain-steps", "2"]) == 0
    for folder in _folders(out)[:2]:
        mj = json.loads((folder / "model.json").read_text())
        assert mj["weights"]["kind"] == "retrained" and mj["weights"]["steps"] == 2 and mj["problems"] == []
        assert mj["weights"]["recipe"]["resolution"] == [32, 64] and mj["onnx"]["max_abs_diff"] <= 1e-4
        assert "retrained" in (folder / "README.md").read_text()
        assert E.load(folder)(torch.zeros(1, 3, 32, 64)).shape == (1, 11, 32, 64)


def test_remeasure_records_both_latencies(tmp_path):
    g = load_space(TINY).random(3)
    w = tmp_path / "w.pt"
    torch.save(build(g, 11).state_dict(), w)
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g, 0.6, 0.8, weights=w))], budget=None)
    s = E.export(url, "c", tmp_path / "out", remeasure=True, progress=False)
    folder = tmp_path / "out" / s["members"][0]["folder"]
    mj = json.loads((folder / "model.json").read_text())
    assert mj["latency_remeasured"]["runs"] >= 30 and mj["latency_ms"] == 0.8
    card = (folder / "README.md").read_text()
    assert "re-measured" in card and "vs the study" in card
    df = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert math.isfinite(df.latency_remeasured_ms[0])


# ===================================================== one front: what nasseg status stars is what export exports
def _status_stars(capsys, url: str) -> tuple[set[int], str]:
    """The trials ``nasseg status`` marks with a star, and its whole output."""
    assert main(["status", "--storage", url, "--study", "c", "--limit", "1000"]) == 0
    out = capsys.readouterr().out
    return {int(n) for n in re.findall(r"^\W*(\d+)\*", out, flags=re.MULTILINE)}, out


def _exported_trials(url: str, out: Path) -> set[int]:
    E.export(url, "c", out, progress=False)  # no weights: the folders are incomplete, but the choice is the same
    return {m["trial"] for m in json.loads((out / "export.json").read_text())["members"]}


@pytest.mark.parametrize("mode", ["constrained", "pareto"])
def test_status_stars_exactly_the_front_that_export_exports(tmp_path, capsys, mode):
    """Issue #15: status starred Optuna's best_trials (in constrained mode ONE trial, over budget or not; in pareto
    mode duplicates and partial-fidelity trials too) while export exported the front of nasseg.export.front."""
    g = _distinct_genomes(6)
    partial = _attrs(g[5], 0.95, 0.1) | {"fidelity": {"steps": 3, "planned_steps": 6, "full": False}}
    trials = [("COMPLETE", _attrs(g[0], 0.60, 0.9)), ("COMPLETE", _attrs(g[1], 0.50, 0.5)),
              ("COMPLETE", _attrs(g[2], 0.40, 0.3)), ("COMPLETE", _attrs(g[3], 0.30, 0.8)),  # 3 is dominated
              ("COMPLETE", _attrs(g[4], 0.90, 2.0)),  # over the 1 ms budget (constrained); on the front without one
              ("COMPLETE", _attrs(g[0], 0.60, 0.9, status="reused")),  # a duplicate of trial 0
              ("PRUNED", _attrs(g[4], 0.0, 5.0, "rejected") | {"miou": None}),
              ("COMPLETE", partial)]  # partial fidelity told COMPLETE: never on the front
    budget = 1.0 if mode == "constrained" else None
    url = _crafted(tmp_path, trials, budget=budget, mode=mode)
    stars, out = _status_stars(capsys, url)
    exported = _exported_trials(url, tmp_path / "out")
    records = [E.trial_record(t) for t in St.load_study(url, "c").trials]
    front = [m.number for m in E.pareto_front(records, budget)]
    assert stars == exported == set(front) == ({0, 1, 2} if mode == "constrained" else {4, 0, 1, 2})
    assert "* = on the Pareto front, one folder each in nasseg export" in " ".join(out.split())
    assert f"Pareto front (*): {len(front)} architecture(s), trials {', '.join(map(str, front))}" in out


def test_status_stars_the_exported_front_of_a_real_search(exported, study_db, capsys):
    out, _ = exported
    assert main(["status", "--storage", f"sqlite:///{study_db}", "--study", "t", "--limit", "1000"]) == 0
    stars = {int(n) for n in re.findall(r"^\W*(\d+)\*", capsys.readouterr().out, flags=re.MULTILINE)}
    assert stars and stars == {m["trial"] for m in json.loads((out / "export.json").read_text())["members"]}


def test_status_on_a_study_without_a_front_says_so(tmp_path, capsys):
    g = load_space(TINY).random(0)
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g, 0.5, 3.0))])  # over the 1 ms budget
    stars, out = _status_stars(capsys, url)
    assert stars == set() and "Pareto front (*): empty" in out


# ================================================================ ONNX in the bundle: resolution, card, failures
def test_onnx_resolution_dynamic_or_static_and_what_the_card_says(tmp_path, capsys, monkeypatch):
    g = load_space(TINY).random(3)
    w = tmp_path / "w.pt"
    torch.save(build(g, 11).state_dict(), w)
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g, 0.6, 0.8, weights=w))], budget=None, threads=None)
    out = tmp_path / "out"
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress",
                 "--onnx-resolution", "96x160"]) == 0
    assert "ONNX dynamic H x W" in capsys.readouterr().out
    folder = _folders(out)[0]
    ox = json.loads((folder / "model.json").read_text())["onnx"]
    assert ox["input_shape"] == [1, 3, 96, 160] and ox["hw"] == "dynamic"
    assert ox["checked_resolutions"] == [[96, 160], [64, 96]] and ox["max_abs_diff"] <= E.ONNX_TOLERANCE
    x = torch.randn(1, 3, 128, 64)  # neither traced nor checked
    with torch.no_grad():
        ref = E.load(folder)(x).numpy()
    assert float(np.abs(_run_onnx(folder / "model.onnx", x) - ref).max()) <= E.ONNX_TOLERANCE
    card = " ".join((folder / "README.md").read_text().split())
    assert "dynamic batch, height and width** (traced at 96x160)" in card and "at 96x160 and 64x96" in card
    assert "with x of shape N x 3 x H x W (dynamic; checked at 96x160 and 64x96)" in card
    report = (out / "report.md").read_text()
    assert "traced and checked at 96x160" in report and "1 with a dynamic H x W" in report
    for text in (card, report):  # the study recorded no thread count: say what nasseg.cost used
        assert "None thread" not in text and "1 thread (nasseg's CPU default)" in text
    assert not (folder / "onnx_export.log").exists()

    # a graph that only holds at its traced size: static, and the card says so (default resolution: 64x128)
    from nasseg.export import bundle

    monkeypatch.setattr(bundle, "export_onnx", lambda *a, **k: E.export_onnx(*a, **k, dynamic_hw=False))
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress", "--overwrite"]) == 0
    ox = json.loads((folder / "model.json").read_text())["onnx"]
    assert ox["input_shape"] == [1, 3, *LAT_RES] and ox["hw"] == "static" and ox["checked_resolutions"] == [[64, 128]]
    card = " ".join((folder / "README.md").read_text().split())
    assert "N x 3 x 64 x 128: **static 64x128**" in card
    assert "N x 3 x 64 x 128 (static: the exported resolution)" in card
    assert "with a static 64x128" in (out / "report.md").read_text()


def test_bad_onnx_resolution_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", "--storage", "sqlite:///x.db", "--study", "c", "--out", str(tmp_path / "o"),
                 "--onnx-resolution", "12x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--onnx-resolution = '12x'" in err and not (tmp_path / "o").exists()


def _no_relu(g, *args):
    raise RuntimeError("relu is refused for this test")


def test_a_failed_onnx_export_is_one_line_per_architecture_and_no_card_explains_it(tmp_path, capfd, monkeypatch):
    """Issue #15: a failed export printed ~460 lines of Torch IR, and the card explained how to run model.onnx."""
    from nasseg.export import onnx as O

    g1, g2 = _distinct_genomes(2)
    w1, w2 = tmp_path / "w1.pt", tmp_path / "w2.pt"
    torch.save(build(g1, 11).state_dict(), w1)
    torch.save(build(g2, 11).state_dict(), w2)
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g1, 0.6, 0.8, weights=w1)),
                              ("COMPLETE", _attrs(g2, 0.5, 0.5, weights=w2))])
    monkeypatch.setitem(O._SYMBOLICS, "aten::relu", _no_relu)  # every network of the tiny space has a ReLU
    out = tmp_path / "out"
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress"]) == 1
    stdout, stderr = capfd.readouterr()
    assert "Torch IR" not in stdout + stderr and "graph(" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("nasseg: ") for line in lines), stderr
    for line, folder in zip(lines, _folders(out)):
        assert folder.name in line and "ONNX export failed at 64x128" in line and "relu is refused" in line
        assert not (folder / "model.onnx").exists() and (folder / "model.pt").is_file()
        assert "Torch IR graph at exception" in (folder / "onnx_export.log").read_text()
        mj = json.loads((folder / "model.json").read_text())
        assert mj["onnx"] is None and "relu is refused" in mj["onnx_failure"]["error"]
        card = (folder / "README.md").read_text()
        assert "Incomplete export" in card and "`model.onnx`: **not written**" in card and "onnx_export.log" in card
        assert "InferenceSession" not in card and "No `model.onnx` in this folder" in card
    report = (out / "report.md").read_text()
    assert "## Incomplete" in report and "2 failed (see Incomplete)" in report and "**failed**" in report


@pytest.mark.slow
def test_export_from_postgresql_masks_the_password(request, tmp_path):
    try:
        url = request.getfixturevalue("postgres_url")  # tests/conftest.py: a throwaway server's database
    except pytest.FixtureLookupError:
        pytest.skip("no postgres_url fixture in this checkout")
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    g = load_space(TINY).random(3)
    w = tmp_path / "w.pt"
    torch.save(build(g, 11).state_dict(), w)
    _crafted(tmp_path, [("COMPLETE", _attrs(g, 0.6, 0.8, weights=w))], url=url)
    out = tmp_path / "out"
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress"]) == 0
    texts = [p.read_text() for p in out.rglob("*") if p.suffix in (".md", ".json", ".csv")]
    assert texts and not any(password in t for t in texts)
    assert ":***@" in (_folders(out)[0] / "README.md").read_text()
    assert json.loads((_folders(out)[0] / "model.json").read_text())["onnx"]["max_abs_diff"] <= 1e-4


# ================================================================================ while a search runs
_RESUME = """
import json, sys
from nasseg import search as S
from nasseg import study as St
from nasseg.train import Recipe
kw = json.loads(sys.argv[1])
cfg = S.SearchConfig(**kw["cfg"], recipe=Recipe.from_dict(kw["recipe"]),
                     latency=S.LatencySpec(resolution=tuple(kw["res"]), threads=1, warmup=3))
S.search(cfg, log=lambda s: None)
"""


@pytest.mark.slow
def test_export_while_a_search_is_writing_the_same_file(study_db, tiny_budget_ms, tmp_path):
    db = tmp_path / "live.db"
    shutil.copyfile(study_db, db)
    if Path(f"{study_db}-wal").exists():
        shutil.copyfile(f"{study_db}-wal", f"{db}-wal")
    before = len(St.load_study(f"sqlite:///{db}", "t").trials)
    kw = {"cfg": _cfg_kwargs(db, tiny_budget_ms, "constrained", 200), "recipe": RECIPE.to_dict(), "res": list(LAT_RES)}
    proc = subprocess.Popen([sys.executable, "-c", _RESUME, json.dumps(kw)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(St.load_study(f"sqlite:///{db}", "t").trials) < before + 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        assert len(St.load_study(f"sqlite:///{db}", "t").trials) >= before + 2, "the search did not start writing"
        out = tmp_path / "out"
        assert main(["export", "--storage", f"sqlite:///{db}", "--study", "t", "--out", str(out),
                     "--no-progress"]) == 0
        assert proc.poll() is None, "the search finished before the export did: the test proved nothing"
        assert _folders(out) and all((f / "model.onnx").is_file() for f in _folders(out))
        assert len(pd.read_csv(out / "pareto.csv")) >= before + 1
    finally:
        proc.kill()
        proc.wait()


# =========================================== every registered module (every preset: tests/test_export_spaces.py)
def _module_cases():
    from tests.contract.test_contract import _cases

    return [c for c in _cases() if c.values[1] is not None]


class _Wrap(nn.Module):
    def __init__(self, module: nn.Module, decoder: bool):
        super().__init__()
        self.module, self.decoder = module, decoder

    def forward(self, *xs):
        return self.module(list(xs)) if self.decoder else self.module(*xs)


@pytest.mark.slow
@pytest.mark.parametrize("entry,example", _module_cases())
def test_every_registered_module_exports_to_onnx(entry, example, tmp_path):
    from tests.contract.test_contract import _build, _inputs, _sizes

    torch.manual_seed(0)
    module = _Wrap(_build(entry, example), entry.kind == "decoder").eval()
    inputs = _inputs(entry, module.module, example, _sizes(entry, example)[0])
    inputs = tuple(t[:1] for t in (inputs[0] if entry.kind == "decoder" else inputs))
    names = [f"x{i}" for i in range(len(inputs))]
    path = tmp_path / "m.onnx"
    with _onnx_symbolics(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings; the onnxruntime comparison below is the check
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=E.ONNX_OPSET, input_names=names)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[names.index(i.name)].numpy() for i in sess.get_inputs()}  # unused taps are pruned
    with torch.no_grad():
        ref = module(*inputs)
    refs = ref if isinstance(ref, tuple) else (ref,)  # a link returns (main, branch)
    got = sess.run(None, feed)
    assert len(got) == len(refs)
    for g, r in zip(got, refs):
        assert g.shape == tuple(r.shape) and float(np.abs(g - r.numpy()).max()) <= E.ONNX_TOLERANCE



def test_the_card_names_argmax_flips_when_the_onnx_check_allowed_some(tmp_path, monkeypatch):
    """Max-unpooling networks (ENet) may have a few values moved by near-ties; the card says how many."""
    from nasseg.export import bundle

    g = load_space(TINY).random(3)
    w = tmp_path / "w.pt"
    torch.save(build(g, 11).state_dict(), w)
    url = _crafted(tmp_path, [("COMPLETE", _attrs(g, 0.6, 0.8, weights=w))], budget=None, threads=None)
    monkeypatch.setattr(bundle, "export_onnx", lambda *a, **k: {**E.export_onnx(*a, **k), "argmax_flip_values": 3})
    out = tmp_path / "out"
    assert main(["export", "--storage", url, "--study", "c", "--out", str(out), "--no-progress"]) == 0
    folder = _folders(out)[0]
    assert json.loads((folder / "model.json").read_text())["onnx"]["argmax_flip_values"] == 3
    card = " ".join((folder / "README.md").read_text().split())
    assert "not counting 3 output values moved by max-unpooling near-ties" in card
