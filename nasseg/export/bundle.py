"""Export the front of a search study: one self-contained folder per architecture (:func:`export`).

Opens the study read-only, computes the front (:mod:`nasseg.export.front`), and per chosen member writes
``genome.json``, ``genome.txt``, ``model.pt`` (copied, or retrained with ``retrain_steps``), ``model.onnx``
(:mod:`nasseg.export.onnx`), ``model.json`` and the card; then ``pareto.csv``, ``pareto.png``, ``report.md``
(:mod:`nasseg.export.render`) and ``export.json``.  The folder is assembled under a temporary name beside
``out`` and swapped in by renames at the end (:func:`_swap_in`), so that an export killed at any point leaves
``out`` as the previous complete export or the new complete one; re-running the command finishes the job.
The layout of the bundle is described in the :mod:`nasseg.export` docstring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasseg import faults
from nasseg.errors import ConfigError, NassegError
from nasseg.export.deploy import load
from nasseg.export.front import _META_KEY, _STATUS_KEY, FrontMember, _state, classify_trials, pareto_front, trial_record
from nasseg.export.onnx import export_onnx
from nasseg.export.render import _plot, _write_card, _write_csv, _write_report

__all__ = ["export"]

FORMAT = "nasseg-export"
FORMAT_VERSION = 1


@dataclass
class _Study:
    name: str
    storage_masked: str
    sqlite_path: Path | None
    meta: dict[str, Any]
    records: list[dict[str, Any]]
    proxy_fidelity: dict[str, Any] | None = None  # the search's "proxy_fidelity" study attribute


def _open(storage: str, study: str) -> _Study:
    from nasseg import study as S

    st = S.load_study(storage, study, readonly=True)
    meta = dict(st.user_attrs.get(S.META_KEY) or {})
    if meta.get("kind") != "search":
        raise NassegError(f"study {study!r} in {S.mask_url(storage)} was not created by nasseg search (no "
                          f"'{S.META_KEY}' study attribute); nothing to export")
    records = [trial_record(t) for t in st.get_trials(deepcopy=False)]
    return _Study(study, S.mask_url(storage), S.sqlite_path(storage), meta, records,
                  st.user_attrs.get("proxy_fidelity"))


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


class _Reporter:
    """Rich progress on stderr (or nothing), plus log lines.

    With progress on, the console writes to a duplicate of the stderr file descriptor, so the bar keeps
    drawing on the terminal while the ONNX export captures descriptors 1 and 2 (:mod:`nasseg.export.onnx`).
    """

    def __init__(self, enabled: bool, log: Callable[[str], None] | None):
        import sys

        from rich.console import Console

        self._log = log
        self.progress = None
        self._own: Any = None
        if enabled:
            with contextlib.suppress(AttributeError, OSError, ValueError):  # no real descriptor (e.g. pytest)
                self._own = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8",
                                      errors="replace")
        self.console = (Console(file=self._own, highlight=False, soft_wrap=True) if self._own is not None
                        else Console(stderr=True, highlight=False, soft_wrap=True))
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
        if self._own is not None:
            self._own.close()


def _fresh_dir(out: Path) -> None:
    """Refuse to write over anything but nothing, an empty folder or a previous nasseg export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()):
        raise ConfigError(f"--out {out} exists and is not empty; choose another folder, or pass --overwrite to "
                          "replace a previous nasseg export there")


_PARTIAL, _ASIDE = ".partial-", ".old-"


def _swap_in(tmp: Path, out: Path) -> None:
    """Put the finished bundle ``tmp`` at ``out`` so that ``out`` is, at every instant but one, the previous
    complete export or the new complete one: the previous folder is renamed aside (``.NAME.old-PID``, same
    parent, so both renames are atomic), ``tmp`` renamed to ``out``, then the aside folder deleted.  The one
    window is between the two renames (microseconds): a process killed exactly there leaves no ``out`` but a
    complete ``.NAME.old-PID``, which the next export to ``out`` puts back first (:func:`_clean_leftovers`)."""
    aside = None
    if out.exists():
        if any(out.iterdir()):  # a previous export (--overwrite, checked by the caller)
            aside = out.parent / f".{out.name}{_ASIDE}{os.getpid()}"
            if aside.exists():
                shutil.rmtree(aside)
            faults.point("export_swap")
            os.replace(out, aside)
            faults.point("export_aside")
        else:
            out.rmdir()
    os.replace(tmp, out)
    if aside is not None:
        faults.point("export_swapped")
        shutil.rmtree(aside, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _clean_leftovers(out: Path) -> None:
    """What an export to ``out`` killed midway left beside it (this host's exporters that are gone): a complete
    previous export moved aside while ``out`` is missing is put back at ``out``; partial folders and the other
    aside folders are deleted.  Folders of a live exporter are left alone."""
    if not out.parent.is_dir():
        return
    dead: list[tuple[str, Path]] = []
    for p in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, pid = p.name[len(out.name) + 1:].rpartition("-")
        if f"{kind}-" in (_PARTIAL, _ASIDE) and pid.isdigit() and p.is_dir() and not _pid_alive(int(pid)):
            dead.append((kind + "-", p))
    if not out.exists():
        asides = sorted((p for kind, p in dead if kind == _ASIDE and _is_export(p)), key=lambda p: p.stat().st_mtime)
        if asides:
            os.replace(asides[-1], out)
            dead = [(k, p) for k, p in dead if p != asides[-1]]
    for _, p in dead:
        shutil.rmtree(p, ignore_errors=True)


def _is_export(out: Path) -> bool:
    try:
        return json.loads((out / "export.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export(storage: str, study: str, out: str | os.PathLike, *, top: int | None = None, remeasure: bool = False,
           retrain_steps: int | None = None, device: str | None = None, overwrite: bool = False,
           onnx_resolution: Sequence[int] | None = None, progress: bool = True,
           log: Callable[[str], None] | None = None, latency_backend: str | None = None,
           latency_precision: str | None = None) -> dict[str, Any]:
    """Export the front of ``study`` in ``storage`` to ``out`` (see the :mod:`nasseg.export` docstring).

    ``onnx_resolution`` (H, W) is where ``model.onnx`` is traced and checked (default: the study's latency
    resolution, the deployment size); the graph keeps a dynamic H x W where it verifies at a second
    resolution too, else a static one (:func:`nasseg.export.onnx.export_onnx`).  ``remeasure`` times each model
    on the study's latency backend and precision, or on ``latency_backend`` / ``latency_precision`` (fp32, fp16,
    bf16) when given, with the study's stopping rule.

    Returns a summary: ``{"out", "front_size", "exported", "incomplete", "max_onnx_diff", "wall_seconds",
    "members": [...]}``.  Raises :class:`NassegError` (nothing written) for a missing study, a study
    with no qualifying trial, or a bad option.  An architecture whose weights cannot be found (and
    ``retrain_steps`` is None), whose weights do not fit, or whose ONNX export or check fails is listed in
    ``incomplete`` with one-line reasons; its folder keeps the genome and the card (an ONNX failure's full
    text is in its ``onnx_export.log``).
    """
    import torch

    t_start = time.perf_counter()
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ConfigError(f"--top = {top!r} must be a positive integer")
    if retrain_steps is not None and (isinstance(retrain_steps, bool) or not isinstance(retrain_steps, int)
                                      or retrain_steps < 1):
        raise ConfigError(f"--retrain-steps = {retrain_steps!r} must be a positive integer")
    if onnx_resolution is not None:
        if (isinstance(onnx_resolution, (str, bytes)) or len(onnx_resolution) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in onnx_resolution)):
            raise ConfigError(f"--onnx-resolution = {onnx_resolution!r} must be two positive integers (H, W)")
    out = Path(out)
    _clean_leftovers(out)
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
    onnx_h, onnx_w = (int(v) for v in onnx_resolution) if onnx_resolution is not None else (h, w)
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
    if (latency_backend or latency_precision) and not remeasure:
        raise ConfigError("--latency-backend and --latency-precision choose how --remeasure times the models; "
                          "valid: give --remeasure too")
    remeasure_spec = dict(lat_spec)
    if remeasure:
        from nasseg.latency import PRECISIONS, check_backend

        if latency_precision is not None and latency_precision not in PRECISIONS:
            raise ConfigError(f"--latency-precision = {latency_precision!r} is not known; valid: "
                              f"{', '.join(PRECISIONS)}")
        remeasure_spec["backend"] = latency_backend or str(lat_spec.get("backend", "torch"))
        if latency_precision is not None:
            remeasure_spec["dtype"] = PRECISIONS[latency_precision]
        check_backend(remeasure_spec["backend"], dev, str(remeasure_spec.get("dtype", "float32")))

    tmp = out.parent / f".{out.name}{_PARTIAL}{os.getpid()}"
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
                    info = _export_member(m, folder, st, num_classes, class_names, (batch, 3, h, w),
                                          (batch, 3, onnx_h, onnx_w), dev, remeasure_spec if remeasure else None,
                                          retrain_steps, step, rep.log)
                except (RuntimeError, ValueError, OSError, MemoryError) as e:  # e.g. out of memory: keep going
                    why = _one_line(f"export failed: {type(e).__name__}: {e}")
                    info = {"folder": folder.name, "rank": m.rank, "trial": m.number, "genome_id": m.genome_id,
                            "miou": m.miou, "latency_ms": m.latency_ms, "problems": [why], "onnx": None,
                            "genome": m.record["user_attrs"].get("genome")}
                members.append(info)
                faults.point("export_member")
                if rep.progress is not None:
                    rep.progress.advance(task)
            if rep.progress is not None:
                rep.progress.update(task, description="pareto.csv, pareto.png, report.md")
            _write_csv(tmp / "pareto.csv", st, labels, {i["trial"]: i for i in members})
            threads = _threads_used(lat_spec, [m.record for m in front])
            _plot(tmp / "pareto.png", st, labels, front, budget, threads)
            summary = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "study": study, "storage": st.storage_masked,
                "mode": meta.get("mode"), "latency_budget_ms": budget, "latency": lat_spec,
                "latency_threads": threads,
                "onnx_resolution": [onnx_h, onnx_w], "dataset": dataset,
                "num_classes": num_classes, "recipe": meta.get("recipe"), "trials": len(st.records),
                "counts": counts, "front_size": len(front), "exported": len(members), "top": top,
                "incomplete": [{"folder": i["folder"], "trial": i["trial"], "problems": i["problems"]}
                               for i in members if i["problems"]],
                "max_onnx_diff": max((i["onnx"]["max_abs_diff"] for i in members if i.get("onnx")), default=None),
                "proxy_fidelity": st.proxy_fidelity,
                "members": members,
            }
            summary["wall_seconds"] = round(time.perf_counter() - t_start, 3)
            _write_report(tmp / "report.md", summary, front, chosen)
            (tmp / "export.json").write_text(json.dumps(summary, indent=1, sort_keys=True, allow_nan=False) + "\n",
                                             encoding="utf-8")
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    summary["out"] = str(out)
    return summary


def _one_line(text: str, limit: int = 400) -> str:
    """A problem as one line (state_dict errors span several) of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def _threads_used(lat_spec: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> Any:
    """The intra-op thread count(s) the front's latency records used (each record holds the number it ran
    with); failing that the study's setting; None when neither says."""
    seen = sorted({int(t) for r in records
                   if isinstance(t := ((r.get("user_attrs") or {}).get("latency") or {}).get("threads"), int)})
    if seen:
        return seen[0] if len(seen) == 1 else seen
    return lat_spec.get("threads")


def _export_member(m: FrontMember, folder: Path, st: _Study, num_classes: int, class_names: list[str],
                   input_shape: tuple[int, int, int, int], onnx_shape: tuple[int, int, int, int], device: str,
                   remeasure: Mapping[str, Any] | None, retrain_steps: int | None, step: Callable[[str], None],
                   log: Callable[[str], None]) -> dict[str, Any]:
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
        problems.append(_one_line(f"this nasseg cannot read the stored genome: {e}"))
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
        "proxy_fidelity": ua.get("proxy_fidelity"),
        "latency_eager": ua.get("latency_eager"), "latency_decision": ua.get("latency_decision"),
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
        problems.extend(_one_line(u) for u in unusable)
        where = ", ".join(str(c) for c in _weights_candidates(m, st)) or "(the trial records no weights_path)"
        problems.append(f"no usable proxy weights for trial {m.number} (looked in {where}); rerun with "
                        "--retrain-steps N to retrain the proxy for N steps")
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
            model_json["onnx"] = export_onnx(rebuilt, folder / "model.onnx", onnx_shape, metadata=meta,
                                             log_path=folder / "onnx_export.log")
        except NassegError as e:
            problems.append(_one_line(str(e)))
            model_json["onnx"] = None
            model_json["onnx_failure"] = {"resolution": list(onnx_shape[2:]), "error": problems[-1],
                                          "log": "onnx_export.log" if (folder / "onnx_export.log").is_file()
                                          else None}
            (folder / "model.onnx").unlink(missing_ok=True)
        if remeasure:
            step("re-measuring latency")
            model_json["latency_remeasured"] = _remeasure(rebuilt, input_shape, device, remeasure)
    info["onnx"] = model_json.get("onnx")
    info["onnx_failure"] = model_json.get("onnx_failure")
    info["latency_remeasured_ms"] = (model_json.get("latency_remeasured") or {}).get("median_ms")
    info["latency_eager_ms"] = (model_json.get("latency_eager") or {}).get("median_ms")
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
    """One latency record on the spec's backend and precision, with its stopping rule (the study's unless
    overridden by --latency-backend / --latency-precision)."""
    from nasseg.cost import MIN_RUNS
    from nasseg.latency import measure_backend
    from nasseg.search.config import LatencySpec

    fields = {k: v for k, v in spec.items() if k in LatencySpec.__dataclass_fields__}
    fields["resolution"] = tuple(fields.get("resolution") or input_shape[2:])
    fields["runs"] = max(MIN_RUNS, int(fields.get("runs", 30)))
    ls = LatencySpec(**fields)
    rec = measure_backend(module, input_shape, device, backend=ls.backend, **ls.measure_kwargs())
    d = rec.to_dict()
    d["isolation"] = "measured by nasseg export (--remeasure), one model at a time"
    return d
