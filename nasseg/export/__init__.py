"""Export the Pareto front of a search study: one self-contained folder per architecture.

``nasseg export --storage URL --study NAME --out DIR [--top K] [--remeasure] [--retrain-steps N]``

1. **The front** (:func:`pareto_front`, a pure function over plain trial records): proxy mIoU
   (maximised) against measured median latency (minimised), over *qualifying* trials only: Optuna state
   COMPLETE, ``nasseg_status`` trained or reused, ``fidelity.full`` true, and latency within the
   study's budget when it has one.  Rejected, stopped (ASHA), failed, crashed, running and
   partial-fidelity trials never qualify.  Trials of one genome id collapse to the earliest *trained*
   one (the others are listed as its duplicates); distinct genomes with exactly equal (mIoU, latency)
   collapse to the earliest (listed as ties).  Members are ranked by mIoU (best first).
2. **The bundle**, per front member, folder ``<rank>_<genome_id>``:

   * ``genome.json`` (canonical JSON, what the study stores) and ``genome.txt`` (compact string);
   * ``model.pt``: the proxy's ``state_dict`` (copied from the trial's ``weights_path``; when that file
     is gone, ``--retrain-steps N`` retrains the proxy with the study's recipe but N steps);
   * ``model.onnx``: opset :data:`ONNX_OPSET` (GridSample needs >= 16; 17 also has LayerNormalization),
     static H x W (the study's latency resolution: adaptive pooling and attention reshape by it),
     dynamic batch; checked in onnxruntime against PyTorch on a random input (max abs diff recorded,
     at most :data:`ONNX_TOLERANCE`);
   * ``model.json``: machine-readable facts (classes, input, checks, metrics, latency records);
   * ``README.md``: the model card.

   At the top of ``DIR``: ``pareto.csv`` (every trial, its front status and a front flag),
   ``pareto.png``, ``report.md`` (index) and ``export.json`` (manifest).  The folder is assembled
   under a temporary name and renamed at the end, so an interrupted export leaves no half bundle.
3. :func:`load` rebuilds an exported architecture with its weights, needing only the genome codec,
   ``build`` and torch (no Optuna, no search code).

The study is opened read-only (SQLite ``mode=ro``), so exporting beside a running search is safe.
Exit codes of ``nasseg export``: 0 = every chosen architecture exported and checked; 1 = some folder is
incomplete (missing weights, weights that do not fit, a failed ONNX check: each is named on stderr, in
its card and in ``report.md``); 2 = nothing written (no such study, no qualifying trial, bad option).

Divergences and limits: the ONNX graph uses the legacy TorchScript exporter (``dynamo=False``): the
dynamo exporter needs ``onnxscript``, which is not a dependency.  Two of its operator translations are
replaced while exporting (and only then): ``adaptive_avg_pool2d``, which it refuses when the output
size does not divide the input size (PPM's 3x3 and 6x6 bins on a 16x32 map, SPPM's 4x4 bins on a 2x4
map), is written as two constant pooling matrices applied with MatMul (the same average over the same,
possibly overlapping, windows); ``linspace``, whose ``dtype`` it drops (computing in float64, so a
sampling grid reaches GridSample as float64, which onnxruntime cannot run), is computed in float32
and cast to the requested type.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasseg.errors import ConfigError, NassegError
from nasseg.export.deploy import load
from nasseg.export.front import (
    _META_KEY,
    _STATUS_KEY,
    QUALIFYING_STATUSES,  # noqa: F401  (tests read it here until the split is done)
    FrontMember,
    _finite,
    _miou,
    _state,
    classify_trials,
    disqualification,
    pareto_front,
    trial_record,
)
from nasseg.export.onnx import ONNX_OPSET, ONNX_TOLERANCE, _onnx_symbolics, export_onnx  # noqa: F401  (tests)

__all__ = [
    "ONNX_OPSET",
    "ONNX_TOLERANCE",
    "FrontMember",
    "trial_record",
    "disqualification",
    "pareto_front",
    "classify_trials",
    "export_onnx",
    "load",
    "export",
]

FORMAT = "nasseg-export"
FORMAT_VERSION = 1


# ============================================================================================ export
@dataclass
class _Study:
    name: str
    storage_masked: str
    sqlite_path: Path | None
    meta: dict[str, Any]
    records: list[dict[str, Any]]


def _open(storage: str, study: str) -> _Study:
    from nasseg import search as S

    st = S.load_study(storage, study, readonly=True)
    meta = dict(st.user_attrs.get(S.META_KEY) or {})
    if meta.get("kind") != "search":
        raise NassegError(f"study {study!r} in {S.mask_url(storage)} was not created by nasseg search (no "
                          f"'{S.META_KEY}' study attribute); nothing to export")
    records = [trial_record(t) for t in st.get_trials(deepcopy=False)]
    return _Study(study, S.mask_url(storage), S._sqlite_path(storage), meta, records)


def _class_names(dataset: str, n: int) -> list[str]:
    names: Sequence[str] | None = None
    with contextlib.suppress(Exception):
        from nasseg.data import describe_spec, open_dataset

        names = describe_spec(dataset).class_names or open_dataset(dataset, "val").class_names
    names = list(names or [])
    return names[:n] + [f"class {i}" for i in range(len(names), n)]


def _counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        s = (r.get("user_attrs") or {}).get(_STATUS_KEY) or _state(r).lower()
        out[s] = out.get(s, 0) + 1
    return dict(sorted(out.items()))


def _weights_candidates(member: FrontMember, study: _Study) -> list[Path]:
    out = []
    stored = member.record["user_attrs"].get("weights_path")
    if stored:
        out.append(Path(stored))
    src = member.record["user_attrs"].get("reused_from")
    n = member.number if src is None else int(src)
    if study.sqlite_path is not None:  # a DB moved together with its artifacts folder
        out.append(study.sqlite_path.parent / f"{study.sqlite_path.stem}_artifacts" / study.name
                   / f"trial_{n:05d}" / "model.pt")
    return out


def _fmt(v: Any, spec: str = ".4f", none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


class _Reporter:
    """Rich progress on stderr (or nothing), plus log lines."""

    def __init__(self, enabled: bool, log: Callable[[str], None] | None):
        from rich.console import Console

        self._log = log
        self.progress = None
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console,
                                     transient=False)

    def log(self, msg: str) -> None:
        if self._log is not None:
            from rich.text import Text

            self._log(Text.from_markup(msg).plain)
        else:  # through the progress bar's console, so lines print above the live bar
            self.console.print(msg)

    def __enter__(self) -> _Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


def _fresh_dir(out: Path) -> None:
    """Refuse to write over anything but nothing, an empty folder or a previous nasseg export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()):
        raise ConfigError(f"--out {out} exists and is not empty; choose another folder, or pass --overwrite to "
                          "replace a previous nasseg export there")


def _is_export(out: Path) -> bool:
    try:
        return json.loads((out / "export.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export(storage: str, study: str, out: str | os.PathLike, *, top: int | None = None, remeasure: bool = False,
           retrain_steps: int | None = None, device: str | None = None, overwrite: bool = False,
           progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export the front of ``study`` in ``storage`` to ``out`` (see the module docstring).

    Returns a summary: ``{"out", "front_size", "exported", "incomplete", "max_onnx_diff", "wall_seconds",
    "members": [...]}``.  Raises :class:`NassegError` (nothing written) for a missing study, a study
    with no qualifying trial, or a bad option.  An architecture whose weights cannot be found (and
    ``retrain_steps`` is None), whose weights do not fit, or whose ONNX check fails is listed in
    ``incomplete`` with the reason; its folder keeps the genome and the card.
    """
    import torch

    t_start = time.perf_counter()
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ConfigError(f"--top = {top!r} must be a positive integer")
    if retrain_steps is not None and (isinstance(retrain_steps, bool) or not isinstance(retrain_steps, int)
                                      or retrain_steps < 1):
        raise ConfigError(f"--retrain-steps = {retrain_steps!r} must be a positive integer")
    out = Path(out)
    if overwrite and out.exists() and any(out.iterdir()) and not _is_export(out):
        raise ConfigError(f"--out {out} holds something other than a nasseg export; --overwrite only replaces a "
                          "previous export (export.json); choose another folder")
    if not overwrite:
        _fresh_dir(out)

    st = _open(storage, study)
    meta = st.meta
    budget = meta.get("latency_budget_ms")
    front = pareto_front(st.records, budget)
    labels = classify_trials(st.records, budget, front)
    counts = _counts(st.records)
    if not front:
        what = ", ".join(f"{k} {v}" for k, v in counts.items()) or "no trials"
        raise NassegError(f"study {study!r} in {st.storage_masked} has no complete, feasible, full-fidelity trial "
                          f"({len(st.records)} trials: {what}"
                          + (f"; budget {budget:g} ms" if budget is not None else "") + "); nothing exported")
    chosen = front[:top] if top else list(front)
    lat_spec = dict(meta.get("latency") or {})
    h, w = (int(v) for v in lat_spec.get("resolution", (512, 1024)))
    batch = int(lat_spec.get("batch", 1))
    if not isinstance(meta.get("num_classes"), int):
        raise NassegError(f"study {study!r}: its '{_META_KEY}' attribute records no num_classes; cannot build models")
    num_classes = int(meta["num_classes"])
    dataset = str(meta.get("dataset", "synthetic"))
    class_names = _class_names(dataset, num_classes)
    dev = device or str(lat_spec.get("device", "cpu"))
    if remeasure and dev.startswith("cuda") and not torch.cuda.is_available():
        if device is not None:
            raise ConfigError(f"--device = {device!r} is not available here (torch.cuda.is_available() is False); "
                              "valid: cpu")
        dev = "cpu"  # the study measured on a GPU this machine lacks: "the current device" is the CPU

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    members: list[dict[str, Any]] = []
    try:
        with _Reporter(progress, log) as rep:
            task = rep.progress.add_task("", total=len(chosen)) if rep.progress is not None else None
            pad = max(2, len(str(len(front))))
            for m in chosen:
                folder = tmp / f"{m.rank:0{pad}d}_{m.genome_id}"

                def step(text: str, m: FrontMember = m) -> None:
                    if rep.progress is not None:
                        rep.progress.update(task, description=f"#{m.rank} trial {m.number}: {text}")

                try:
                    info = _export_member(m, folder, st, num_classes, class_names, (batch, 3, h, w), dev,
                                          remeasure, retrain_steps, step, rep.log)
                except (RuntimeError, ValueError, OSError, MemoryError) as e:  # e.g. out of memory: keep going
                    why = f"export failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
                    rep.log(f"[red]trial {m.number} ({folder.name}): {why}[/red]")
                    info = {"folder": folder.name, "rank": m.rank, "trial": m.number, "genome_id": m.genome_id,
                            "miou": m.miou, "latency_ms": m.latency_ms, "problems": [why], "onnx": None,
                            "genome": m.record["user_attrs"].get("genome")}
                members.append(info)
                if rep.progress is not None:
                    rep.progress.advance(task)
            if rep.progress is not None:
                rep.progress.update(task, description="pareto.csv, pareto.png, report.md")
            _write_csv(tmp / "pareto.csv", st, labels, {i["trial"]: i for i in members})
            _plot(tmp / "pareto.png", st, labels, front, budget)
            summary = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "study": study, "storage": st.storage_masked,
                "mode": meta.get("mode"), "latency_budget_ms": budget, "latency": lat_spec, "dataset": dataset,
                "num_classes": num_classes, "recipe": meta.get("recipe"), "trials": len(st.records),
                "counts": counts, "front_size": len(front), "exported": len(members), "top": top,
                "incomplete": [{"folder": i["folder"], "trial": i["trial"], "problems": i["problems"]}
                               for i in members if i["problems"]],
                "max_onnx_diff": max((i["onnx"]["max_abs_diff"] for i in members if i.get("onnx")), default=None),
                "members": members,
            }
            summary["wall_seconds"] = round(time.perf_counter() - t_start, 3)
            _write_report(tmp / "report.md", summary, front, chosen)
            (tmp / "export.json").write_text(json.dumps(summary, indent=1, sort_keys=True, allow_nan=False) + "\n",
                                             encoding="utf-8")
        if out.exists():
            if overwrite:
                shutil.rmtree(out)
            else:
                out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    summary["out"] = str(out)
    return summary


def _export_member(m: FrontMember, folder: Path, st: _Study, num_classes: int, class_names: list[str],
                   input_shape: tuple[int, int, int, int], device: str, remeasure: bool, retrain_steps: int | None,
                   step: Callable[[str], None], log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from nasseg.build import build
    from nasseg.cost import count_params
    from nasseg.genome import from_json, genome_id, to_json, to_string

    ua = m.record["user_attrs"]
    folder.mkdir(parents=True)
    problems: list[str] = []
    info: dict[str, Any] = {"folder": folder.name, "rank": m.rank, "trial": m.number, "genome_id": m.genome_id,
                            "duplicates": list(m.duplicates), "ties": list(m.ties), "miou": m.miou,
                            "latency_ms": m.latency_ms, "problems": problems}

    step("genome")
    genome, gjson, gtext = None, ua["genome_json"], ua.get("genome", "")
    try:
        genome = from_json(ua["genome_json"])
        gtext = to_string(genome)
        if genome_id(genome) == m.genome_id:
            gjson = to_json(genome)
        else:
            problems.append(f"the stored genome JSON re-encodes to id {genome_id(genome)}, not {m.genome_id} (a "
                            "registry default changed since the search); genome.json holds the stored form")
    except NassegError as e:  # a module renamed or removed since the search
        problems.append(f"this nasseg cannot read the stored genome: {e}")
    (folder / "genome.json").write_text(gjson + "\n", encoding="utf-8")
    (folder / "genome.txt").write_text(gtext + "\n", encoding="utf-8")
    model_json: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "num_classes": num_classes, "in_channels": 3,
        "class_names": class_names, "genome_id": m.genome_id,
        "input": {"shape": list(input_shape), "layout": "NCHW, RGB, float32 (x / 255 - mean) / std",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "study": st.name, "storage": st.storage_masked, "trial": m.number, "duplicates": list(m.duplicates),
        "ties": list(m.ties), "params": ua.get("params"), "macs": ua.get("macs"),
        "macs_resolution": list(input_shape[2:]), "latency": ua.get("latency"), "latency_ms": m.latency_ms,
        "miou": m.miou, "metrics": ua.get("metrics"), "fidelity": ua.get("fidelity"),
        "recipe": json.loads(ua["recipe_json"]) if ua.get("recipe_json") else st.meta.get("recipe"),
        "dataset": ua.get("dataset", st.meta.get("dataset")), "seed": ua.get("seed"),
    }
    _write_json(folder / "model.json", model_json)  # written early: load() and the card need it

    step("weights")
    weights: dict[str, Any] | None = None
    source = None
    unusable: list[str] = []  # candidate files that exist but cannot be used
    for cand in _weights_candidates(m, st) if genome is not None else []:
        if not cand.is_file():
            continue
        try:
            state = torch.load(cand, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a corrupt or unsafe file
            unusable.append(f"{cand}: not a loadable state_dict ({type(e).__name__}: {str(e)[:200]})")
            continue
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            unusable.append(f"{cand}: not a state_dict (a dict of tensors)")
            continue
        try:
            build(genome, num_classes).load_state_dict(state, strict=True)
        except RuntimeError as e:
            unusable.append(f"{cand}: the weights do not fit the genome: {str(e)[:300]}")
            continue
        weights, source = state, {"kind": "copied", "path": str(cand)}
        shutil.copyfile(cand, folder / "model.pt")
        break
    if weights is None and retrain_steps is not None and genome is not None:
        weights, source = _retrain(m, st, retrain_steps, folder / "model.pt", step, log)
    if weights is None and genome is not None:
        problems.extend(unusable)
        where = ", ".join(str(c) for c in _weights_candidates(m, st)) or "(the trial records no weights_path)"
        problems.append(f"no usable proxy weights for trial {m.number} (looked in {where}); rerun with "
                        "--retrain-steps N to retrain the proxy for N steps")
        log(f"[yellow]trial {m.number} ({folder.name}): {problems[-1]}[/yellow]")
    model_json["weights"] = source
    if weights is not None:
        step("rebuild check")
        reference = build(genome, num_classes)
        reference.load_state_dict(weights, strict=True)
    if weights is not None:
        reference.eval()
        rebuilt = load(folder)
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            same = float((reference(x) - rebuilt(x)).abs().max())
        params = count_params(rebuilt)
        model_json["rebuild_check"] = {"max_abs_diff": same, "strict_load": True, "params": params,
                                       "params_match_study": params == ua.get("params")}
        if same != 0.0 or (ua.get("params") is not None and params != ua["params"]):
            problems.append(f"the model rebuilt from genome.json differs (max abs diff {same:g}, params {params} "
                            f"vs {ua.get('params')} in the study)")
        step("ONNX export + onnxruntime check")
        try:
            meta = {"nasseg_genome": to_string(genome), "nasseg_genome_id": m.genome_id,
                    "nasseg_num_classes": str(num_classes), "nasseg_study": st.name, "nasseg_trial": str(m.number),
                    "nasseg_input": "NCHW RGB float32, (x/255 - [0.485,0.456,0.406]) / [0.229,0.224,0.225]"}
            model_json["onnx"] = export_onnx(rebuilt, folder / "model.onnx", input_shape, metadata=meta)
        except NassegError as e:
            problems.append(str(e))
            (folder / "model.onnx").unlink(missing_ok=True)
        if remeasure:
            step("re-measuring latency")
            model_json["latency_remeasured"] = _remeasure(rebuilt, input_shape, device, st.meta.get("latency") or {})
    info["onnx"] = model_json.get("onnx")
    info["latency_remeasured_ms"] = (model_json.get("latency_remeasured") or {}).get("median_ms")
    info["weights"] = source
    info["params"], info["macs"] = ua.get("params"), ua.get("macs")
    info["genome"] = ua.get("genome")
    model_json["problems"] = problems
    _write_json(folder / "model.json", model_json)
    step("model card")
    _write_card(folder / "README.md", m, model_json, st, gtext)
    return info


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _retrain(m: FrontMember, st: _Study, steps: int, dest: Path, step: Callable[[str], None],
             log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    from nasseg.genome import from_json
    from nasseg.train import Recipe, proxy_train

    ua = m.record["user_attrs"]
    base = Recipe.from_dict(json.loads(ua["recipe_json"]) if ua.get("recipe_json") else st.meta["recipe"])
    recipe = dataclasses.replace(base, steps=steps, warmup_steps=min(base.warmup_steps, steps - 1),
                                 eval_every=0, amp=base.amp and torch.cuda.is_available())
    seed = int(ua.get("seed", (st.meta.get("sampler") or {}).get("seed", 0)))
    dataset = ua.get("dataset", st.meta.get("dataset", "synthetic"))
    step(f"retraining {steps} steps on {dataset}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics = proxy_train(from_json(ua["genome_json"]), recipe, dataset, seed, device=device, weights_path=dest)
    log(f"trial {m.number}: weights missing, retrained {steps} steps ({dataset}, seed {seed}): mIoU "
        f"{metrics.miou:.4f} (the study's {base.steps}-step proxy: "
        f"{m.miou:.4f})")
    weights = torch.load(dest, map_location="cpu", weights_only=True)
    return weights, {"kind": "retrained", "steps": steps, "planned_steps": base.steps, "seed": seed,
                     "device": device, "dataset": dataset, "recipe": recipe.to_dict(), "metrics": metrics.to_dict()}


def _remeasure(module: Any, input_shape: tuple[int, ...], device: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    from nasseg.cost import MIN_RUNS, measure_latency

    rec = measure_latency(module, input_shape, device=device, warmup=max(1, int(spec.get("warmup", 10))),
                          runs=max(MIN_RUNS, int(spec.get("runs", 30))), threads=spec.get("threads"),
                          dtype=str(spec.get("dtype", "float32")))
    d = rec.to_dict()
    d["isolation"] = "measured by nasseg export (--remeasure), one model at a time"
    return d


# ========================================================================================= documents
def _latency_lines(rec: Mapping[str, Any] | None) -> list[str]:
    if not rec:
        return ["- (no latency record)"]
    res = rec.get("resolution") or ["?", "?"]
    return [
        f"- median **{_fmt(rec.get('median_ms'), '.3f')} ms**, p90 {_fmt(rec.get('p90_ms'), '.3f')} ms, "
        f"CV {_fmt(rec.get('cv'), '.3f')} (mean {_fmt(rec.get('mean_ms'), '.3f')}, min {_fmt(rec.get('min_ms'), '.3f')}"
        f" ms; {rec.get('runs')} timed runs after {rec.get('warmup')} warm-up)",
        f"- input {rec.get('batch')}x3x{res[0]}x{res[1]}, {rec.get('dtype')}"
        + (", channels-last" if rec.get("channels_last") else "") + (", torch.compile" if rec.get("compile") else ""),
        f"- device `{rec.get('device')}` ({rec.get('device_name')}), {rec.get('threads')} thread(s); torch "
        f"{rec.get('torch_version')}" + (f", CUDA {rec['cuda_version']}" if rec.get("cuda_version") else "")
        + f"; nasseg {rec.get('nasseg_version')}",
        f"- measured {rec.get('date_utc')} on host `{rec.get('hostname')}`"
        + (f"; {rec['isolation']}" if rec.get("isolation") else ""),
    ]


def _write_card(path: Path, m: FrontMember, mj: Mapping[str, Any], st: _Study, genome_text: str) -> None:
    metrics = mj.get("metrics") or {}
    per_class = metrics.get("per_class_iou") or []
    names = mj["class_names"]
    res = mj["input"]["shape"]
    L = [f"# {m.genome_id}: rank {m.rank} on the front of study `{st.name}`", ""]
    if mj.get("problems"):
        L += ["> **Incomplete export.**", ""] + [f"> - {_md_escape(p)}" for p in mj["problems"]] + [""]
    L += ["```", genome_text, "```", "",
          "| | |", "|---|---|",
          f"| proxy mIoU | **{_fmt(m.miou)}** (pixel acc. {_fmt(metrics.get('pixel_acc'))}) |",
          f"| latency (median) | **{_fmt(m.latency_ms, '.3f')} ms** at {res[0]}x{res[1]}x{res[2]}x{res[3]} |",
          f"| params (inference) | {_fmt(mj.get('params'), ',d')} |",
          f"| MACs (conv + linear) | {_fmt(mj.get('macs'), ',d')} at {res[2]}x{res[3]} "
          f"({_fmt((mj.get('macs') or 0) / 1e9, '.4f')} G) |",
          f"| classes | {mj['num_classes']} ({_md_escape(str(mj.get('dataset')))}) |",
          f"| study / trial | `{st.name}` / {m.number}"
          + (f" (same genome: trials {', '.join(map(str, m.duplicates))})" if m.duplicates else "")
          + (f" (ties: trials {', '.join(map(str, m.ties))})" if m.ties else "") + " |",
          f"| storage | `{st.storage_masked}` |",
          f"| genome id | `{m.genome_id}` |", ""]
    L += ["## Latency (as measured by the search, before training)", ""] + _latency_lines(mj.get("latency")) + [""]
    if mj.get("latency_remeasured"):
        r = mj["latency_remeasured"]
        L += ["## Latency re-measured at export (`--remeasure`)", ""] + _latency_lines(r)
        L += [f"- vs the study: {_fmt(r['median_ms'], '.3f')} ms / {_fmt(m.latency_ms, '.3f')} ms = "
              f"{r['median_ms'] / m.latency_ms:.2f}x", ""]
    fid = mj.get("fidelity") or {}
    L += ["## Proxy accuracy", "",
          f"Proxy training: {fid.get('steps')} of {fid.get('planned_steps')} steps at "
          f"{'x'.join(map(str, fid.get('resolution') or []))}, seed {mj.get('seed')}, on "
          f"`{_md_escape(str(mj.get('dataset')))}`; mIoU is a fraction in [0, 1] on the validation split at the proxy "
          "resolution (a class absent from prediction and ground truth is left out).", "",
          "| class | IoU |", "|---|---|"]
    for i, name in enumerate(names):
        v = per_class[i] if i < len(per_class) else None
        L.append(f"| {i} {_md_escape(name)} | {_fmt(v, '.4f', 'n/a (absent)')} |")
    items = sorted((mj.get("recipe") or {}).items())
    half = (len(items) + 1) // 2
    L += ["", "## Recipe (proxy training)", "", "| field | value | field | value |", "|---|---|---|---|"]
    for (k1, v1), right in zip(items[:half], [*items[half:], None]):
        k2, v2 = right if right else ("", "")
        L.append(f"| {k1} | `{json.dumps(v1)}` | {k2} | " + (f"`{json.dumps(v2)}` |" if right else " |"))
    L.append("")
    w = mj.get("weights") or {}
    L += ["## Files", "",
          "- `genome.json`: canonical genome JSON (what the study stores); `genome.txt`: compact string",
          "- `model.json`: classes, input layout, checks and records (machine-readable)"]
    if w.get("kind") == "copied":
        L.append(f"- `model.pt`: the proxy's `state_dict`, copied from `{w['path']}`")
    elif w.get("kind") == "retrained":
        wm = w.get("metrics") or {}
        L.append(f"- `model.pt`: **retrained** at export for {w['steps']} steps (the study trained "
                 f"{w['planned_steps']}; seed {w['seed']}, {w['device']}): mIoU {_fmt(wm.get('miou'))}, not the "
                 f"study's {_fmt(m.miou)}")
    else:
        L.append("- `model.pt`: **missing** (see above)")
    rc = mj.get("rebuild_check")
    if rc:
        L.append(f"- rebuilt from `genome.json` with `load_state_dict(strict=True)`: max abs output difference "
                 f"{rc['max_abs_diff']:g}; {rc['params']:,} params"
                 + (" (= the study's count)" if rc["params_match_study"] else " (**differs from the study's count**)"))
    ox = mj.get("onnx")
    if ox:
        L.append(f"- `model.onnx`: opset {ox['opset']}, input `image` {'x'.join(map(str, ox['input_shape']))} "
                 f"(batch dynamic), output `logits`; {ox['runtime']} vs PyTorch on a random input, batches "
                 f"{', '.join(map(str, ox['checked_batches']))}: max abs diff **{ox['max_abs_diff']:.3g}** "
                 f"(<= {ONNX_TOLERANCE:g})")
    L += ["", "## Use", "", "```python", "from nasseg.export import load",
          f"net = load('path/to/{path.parent.name}')  # nn.Module in eval mode, weights loaded",
          f"logits = net(x)  # x: N x 3 x H x W, {mj['input']['layout']}; logits N x {mj['num_classes']} x H x W",
          "```", "",
          f"ONNX: `onnxruntime.InferenceSession('model.onnx').run(None, {{'image': x}})` with x of shape "
          f"N x 3 x {res[2]} x {res[3]} (the exported resolution).", ""]
    path.write_text("\n".join(L), encoding="utf-8")


def _write_csv(path: Path, st: _Study, labels: Mapping[int, Mapping[str, Any]],
               exported: Mapping[int, Mapping[str, Any]]) -> None:
    import pandas as pd

    rows = []
    for r in st.records:
        ua = r["user_attrs"]
        lat = ua.get("latency") or {}
        lab = labels[int(r["number"])]
        ex = exported.get(int(r["number"])) or {}
        rows.append({
            "trial": r["number"], "state": _state(r), "status": ua.get(_STATUS_KEY, ""),
            "front_status": lab["front_status"], "on_front": lab["on_front"], "front_rank": lab["front_rank"],
            "same_as": lab["same_as"], "exported_folder": ex.get("folder"),
            "miou": _miou(r) if _finite(_miou(r)) else None, "latency_ms": ua.get("latency_ms"),
            "latency_p90_ms": lat.get("p90_ms"), "latency_cv": lat.get("cv"),
            "latency_remeasured_ms": ex.get("latency_remeasured_ms"),
            "params": ua.get("params"), "macs": ua.get("macs"),
            "fidelity_full": (ua.get("fidelity") or {}).get("full"),
            "fidelity_steps": (ua.get("fidelity") or {}).get("steps"), "train_seconds": ua.get("train_seconds"),
            "onnx_max_abs_diff": (ex.get("onnx") or {}).get("max_abs_diff"),
            "genome_id": ua.get("genome_id", ""), "reused_from": ua.get("reused_from"),
            "genome": ua.get("genome", ""), "reason": ua.get("reason", ""),
        })
    df = pd.DataFrame(rows)
    for col in ("front_rank", "same_as", "params", "macs", "fidelity_steps", "reused_from"):
        df[col] = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                            for v in df[col]], dtype="Int64")
    df.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)


def _plot(path: Path, st: _Study, labels: Mapping[int, Mapping[str, Any]], front: Sequence[FrontMember],
          budget: float | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, without touching pyplot's global backend
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lat_spec = st.meta.get("latency") or {}
    res = lat_spec.get("resolution") or ["?", "?"]
    groups: dict[str, list[tuple[float, float, int]]] = {}
    strip: dict[str, list[tuple[float, int]]] = {}
    for r in st.records:
        ua, n = r["user_attrs"], int(r["number"])
        lat, miou, lab = ua.get("latency_ms"), _miou(r), labels[n]["front_status"]
        if not _finite(lat):
            continue
        if _finite(miou) and lab != "front":
            key = {"dominated": "dominated", "duplicate": "dominated", "tie": "dominated",
                   "over budget": "over budget (trained)"}.get(lab, "stopped early / partial fidelity")
            groups.setdefault(key, []).append((lat, miou, n))
        elif not _finite(miou):
            key = "rejected: over budget, never trained" if lab == "rejected" else "failed / crashed"
            strip.setdefault(key, []).append((lat, n))
    xs = [v for pts in groups.values() for v, _, _ in pts] + [v for pts in strip.values() for v, _ in pts]
    xs += [m.latency_ms for m in front] + ([budget] if budget else [])
    logx = min(xs) > 0 and max(xs) / min(xs) > 20

    fig = Figure(figsize=(10, 6.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    if strip:  # a thin panel below for trials measured but never given an mIoU
        ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    else:
        ax, ax2 = fig.subplots(1, 1), None
    style = {"dominated": dict(marker="o", color="#8c8c8c", s=36, alpha=0.8),
             "over budget (trained)": dict(marker="s", color="#d62728", s=36, alpha=0.6),
             "stopped early / partial fidelity": dict(marker="^", facecolors="none", edgecolors="#ff7f0e", s=48)}
    for key in ("dominated", "stopped early / partial fidelity", "over budget (trained)"):
        pts = groups.get(key)
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=f"{key} ({len(pts)})", zorder=2, **style[key])
    fr = sorted(front, key=lambda m: m.latency_ms)
    ax.plot([m.latency_ms for m in fr], [m.miou for m in fr], drawstyle="steps-post", color="#1f77b4", lw=1.8,
            zorder=3)
    ax.scatter([m.latency_ms for m in fr], [m.miou for m in fr], marker="*", s=220, color="#1f77b4",
               edgecolors="black", linewidths=0.6, zorder=4, label=f"Pareto front ({len(fr)})")
    for m in fr:
        ax.annotate(f"#{m.rank} (t{m.number})", (m.latency_ms, m.miou), textcoords="offset points", xytext=(6, 6),
                    fontsize=9, zorder=5)
    sstyle = {"rejected: over budget, never trained": dict(marker="x", color="#d62728", s=44),
              "failed / crashed": dict(marker="D", facecolors="none", edgecolors="black", s=36)}
    for i, (key, pts) in enumerate(sorted(strip.items())):
        ax2.scatter([p[0] for p in pts], [i] * len(pts), label=f"{key} ({len(pts)})", zorder=2, **sstyle[key])
    if ax2 is not None:
        ax2.set_yticks(range(len(strip)), [k.split(":")[0] for k in sorted(strip)])
        ax2.set_ylim(-0.7, len(strip) - 0.3)
        ax2.set_title("measured, no mIoU", fontsize=9, loc="left")
    lo, hi = min(xs), max(xs)
    left, right = (lo / 1.3, hi * 1.3) if logx else (lo - 0.06 * (hi - lo + 1e-9), hi + 0.06 * (hi - lo + 1e-9))
    axes = [ax] if ax2 is None else [ax, ax2]
    for a in axes:
        if budget:
            a.axvline(budget, color="#d62728", ls="--", lw=1.3, zorder=1,
                      label=f"latency budget {budget:g} ms" if a is ax else None)
            a.axvspan(budget, max(right, budget * 1.05), color="#d62728", alpha=0.06, zorder=0, lw=0)
        a.grid(True, which="both", alpha=0.3)
        if logx:
            a.set_xscale("log")
            a.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            a.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(left, right)
    ax.set_ylabel("proxy mIoU (fraction of 1, validation split)")
    axes[-1].set_xlabel(f"latency, ms (median of {lat_spec.get('runs', '?')} runs; {lat_spec.get('batch', 1)}x3x"
                        f"{res[0]}x{res[1]}, {lat_spec.get('device', '?')}, {_threads_label(lat_spec)} "
                        f"thread(s), {lat_spec.get('dtype', 'float32')})" + (", log scale" if logx else ""))
    handles, names = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    ax.legend(handles, names, loc="best", fontsize=9, framealpha=0.9)
    n_trials = len(st.records)
    fig.suptitle(f"study {st.name!r}: proxy mIoU vs measured latency — {n_trials} trials, front of {len(front)} "
                 f"({st.meta.get('mode', '?')} mode" + (f", budget {budget:g} ms" if budget else "") + ")",
                 fontsize=11)
    fig.savefig(path)


def _write_report(path: Path, s: Mapping[str, Any], front: Sequence[FrontMember],
                  chosen: Sequence[FrontMember]) -> None:
    lat = s.get("latency") or {}
    res = lat.get("resolution") or ["?", "?"]
    recipe = s.get("recipe") or {}
    L = [f"# Pareto front of study `{s['study']}`", "",
         f"- storage: `{s['storage']}`",
         f"- mode: {s.get('mode')}; latency budget: "
         + (f"{s['latency_budget_ms']:g} ms" if s.get("latency_budget_ms") is not None else "none"),
         f"- latency: {lat.get('batch', 1)}x3x{res[0]}x{res[1]} on `{lat.get('device')}`, {lat.get('threads')} "
         f"thread(s), {lat.get('dtype')}, median of {lat.get('runs')} runs",
         f"- dataset: `{s.get('dataset')}` ({s.get('num_classes')} classes); proxy: {recipe.get('steps')} steps at "
         f"{'x'.join(map(str, recipe.get('resolution') or []))}, batch {recipe.get('batch_size')}",
         f"- trials: {s['trials']} (" + ", ".join(f"{k} {v}" for k, v in s["counts"].items()) + ")",
         f"- front: {len(front)} architecture(s) over complete, feasible, full-fidelity trials; exported "
         f"{len(chosen)}" + (f" (--top {s['top']})" if s.get("top") else ""),
         f"- max ONNX |onnxruntime - PyTorch|: {_fmt(s.get('max_onnx_diff'), '.3g')} (tolerance {ONNX_TOLERANCE:g}); "
         f"export took {s.get('wall_seconds', 0):.1f} s", "",
         "![Pareto front](pareto.png)", "",
         "| rank | trial | mIoU | latency ms | re-measured ms | params | GMACs | ONNX diff | folder | genome |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for i in s["members"]:
        ox = i.get("onnx") or {}
        L.append(f"| {i['rank']} | {i['trial']} | {_fmt(i['miou'])} | {_fmt(i['latency_ms'], '.3f')} | "
                 f"{_fmt(i.get('latency_remeasured_ms'), '.3f')} | "
                 f"{_fmt(i.get('params'), ',d')} | {_fmt((i.get('macs') or 0) / 1e9, '.4f')} | "
                 f"{_fmt(ox.get('max_abs_diff'), '.2g')} | [{i['folder']}]({i['folder']}/README.md) | "
                 f"`{_md_escape(i.get('genome') or '')}` |")
    if s.get("incomplete"):
        L += ["", "## Incomplete", ""]
        for i in s["incomplete"]:
            L += [f"- `{i['folder']}` (trial {i['trial']}): " + "; ".join(_md_escape(p) for p in i["problems"])]
    L += ["", "Every trial with its front status: [pareto.csv](pareto.csv). Load an architecture with "
          "`nasseg.export.load('<folder>')`.", ""]
    path.write_text("\n".join(L), encoding="utf-8")


# =============================================================================================== CLI
def _threads_label(lat_spec: dict[str, Any]) -> Any:
    """The thread count the latency records used: nasseg.cost measures on 1 CPU thread unless told otherwise."""
    threads = lat_spec.get("threads")
    if threads:
        return threads
    return 1 if str(lat_spec.get("device", "cpu")).startswith("cpu") else "default"


def _add_export_args(p: Any) -> None:
    p.add_argument("--storage", required=True, help="sqlite:///path.db or postgresql://... (opened read-only)")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--out", required=True, help="output folder (created; must not exist or be empty)")
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help="export only the K best-mIoU members of the front")
    p.add_argument("--remeasure", action="store_true", help="re-measure each exported model's latency here too")
    p.add_argument("--retrain-steps", type=int, default=None, metavar="N",
                   help="when a trial's weights file is gone, retrain its proxy for N steps (study recipe)")
    p.add_argument("--device", default=None, help="device for --remeasure (default: the study's latency device, "
                   "or cpu when it is not available here)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous nasseg export in --out")
    p.add_argument("--no-progress", action="store_true")


def _run_export(a: Any) -> int:
    from rich.console import Console

    con = Console(stderr=True, highlight=False, soft_wrap=True)
    s = export(a.storage, a.study, a.out, top=a.top, remeasure=a.remeasure, retrain_steps=a.retrain_steps,
               device=a.device, overwrite=a.overwrite, progress=not a.no_progress)
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"exported {s['exported']} of {s['front_size']} front architecture(s) of study {a.study!r} to "
              f"{s['out']} in {s['wall_seconds']:.1f} s; max ONNX diff {_fmt(s['max_onnx_diff'], '.3g')}")
    for i in s["members"]:
        out.print(f"  {i['folder']}: trial {i['trial']}, mIoU {i['miou']:.4f}, {i['latency_ms']:.3f} ms"
                  + (" [INCOMPLETE]" if i["problems"] else ""))
    out.print(f"index: {Path(s['out']) / 'report.md'}")
    if s["incomplete"]:
        con.print(f"nasseg: {len(s['incomplete'])} architecture(s) exported without weights or ONNX: "
                  + "; ".join(f"{i['folder']}: {i['problems'][0]}" for i in s["incomplete"]))
        return 1
    return 0


def _register_cli() -> None:
    from nasseg.cli import COMMANDS

    COMMANDS["export"] = (_add_export_args, _run_export, "export a study's Pareto front (weights, ONNX, cards)")


_register_cli()
