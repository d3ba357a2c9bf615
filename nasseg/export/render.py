"""The documents of an export: the model card (``README.md``), ``pareto.csv``, ``pareto.png`` and
``report.md``, and their formatting helpers.

Each writer takes plain values (front members, trial labels from :mod:`nasseg.export.front`, the summary
dicts that :mod:`nasseg.export.bundle` assembles) and writes one file; pandas and matplotlib are imported
when called.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasseg.export.front import _STATUS_KEY, FRONT_RULE, FrontMember, _finite, _miou, _state
from nasseg.export.onnx import ONNX_TOLERANCE

if TYPE_CHECKING:
    from nasseg.export.bundle import _Study


def _fmt(v: Any, spec: str = ".4f", none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _threads_text(threads: Any, device: Any = "cpu") -> str:
    """What a latency measurement ran with, in words: ``1 thread``, ``4 threads``, ``1 or 4 threads``; when
    nothing recorded it, nasseg.cost's default (1 thread on CPU) or ``the runtime's default threads``."""
    if isinstance(threads, int) and not isinstance(threads, bool):
        return f"{threads} thread{'s' if threads != 1 else ''}"
    if isinstance(threads, (list, tuple)) and threads:
        return f"{', '.join(map(str, threads[:-1]))} or {threads[-1]} threads (it differed between trials)"
    if str(device or "cpu").startswith("cpu"):
        return "1 thread (nasseg's CPU default)"
    return "the runtime's default threads"


def _onnx_hw_text(ox: Mapping[str, Any]) -> str:
    """``dynamic H x W`` or ``static HxW``, as the card, report.md and the CLI say it."""
    h, w = ox["input_shape"][2:]
    return "dynamic H x W" if ox.get("hw") == "dynamic" else f"static {h}x{w}"


def _latency_lines(rec: Mapping[str, Any] | None) -> list[str]:
    if not rec:
        return ["- (no latency record)"]
    res = rec.get("resolution") or ["?", "?"]
    ci = rec.get("median_ci_ms")
    stop = rec.get("stopping") or {}
    runtime = [f"- runtime **{rec.get('backend', 'torch')}** {rec.get('backend_version') or ''}".rstrip()
               + (f" ({', '.join(rec['providers'])})" if rec.get("providers") else "")
               + (f"; median's 95 % interval [{_fmt(ci[0], '.3f')}, {_fmt(ci[1], '.3f')}] ms" if ci else "")
               + (f"; stopped: {stop.get('reason')}" if isinstance(stop, Mapping) and stop.get("reason") else "")
               + (f"; pinned to cores {rec['affinity'].get('cores')}" if isinstance(rec.get("affinity"), Mapping)
                  and rec["affinity"].get("cores") else "")]
    return runtime + [
        f"- median **{_fmt(rec.get('median_ms'), '.3f')} ms**, p90 {_fmt(rec.get('p90_ms'), '.3f')} ms, "
        f"CV {_fmt(rec.get('cv'), '.3f')} (mean {_fmt(rec.get('mean_ms'), '.3f')}, min {_fmt(rec.get('min_ms'), '.3f')}"
        f" ms; {rec.get('runs')} timed runs after {rec.get('warmup')} warm-up)",
        f"- input {rec.get('batch')}x3x{res[0]}x{res[1]}, {rec.get('dtype')}"
        + (", channels-last" if rec.get("channels_last") else "") + (", torch.compile" if rec.get("compile") else ""),
        f"- device `{rec.get('device')}` ({rec.get('device_name')}), "
        f"{_threads_text(rec.get('threads'), rec.get('device'))}; torch "
        f"{rec.get('torch_version')}" + (f", CUDA {rec['cuda_version']}" if rec.get("cuda_version") else "")
        + f"; nasseg {rec.get('nasseg_version')}",
        f"- measured {rec.get('date_utc')} on host `{rec.get('hostname')}`"
        + (f"; {rec['isolation']}" if rec.get("isolation") else ""),
    ] + ([f"- host load (1/5/15-min averages) before {rec.get('load_avg_before')}, after {rec.get('load_avg_after')}"
          + (f"; runnable tasks {rec.get('runnable_before')} / {rec.get('runnable_after')} on {rec.get('cpus')} "
             "core(s)" if rec.get("runnable_before") is not None else "")
          + (f"; {rec['attempts']} measurement(s), CVs {rec.get('attempt_cvs')}" if rec.get("attempts") else "")]
         if rec.get("load_avg_before") is not None or rec.get("attempts") else []) \
      + ([f"- **warning: {_md_escape(str(rec['warning']))}**"] if rec.get("warning") else [])


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
    L += ["## Latency (as measured by the search, before training)", ""] + _latency_lines(mj.get("latency"))
    if mj.get("latency_decision") == "close":
        L += ["- **the budget decision was close**: the budget lay inside the median's interval even after a second "
              "measurement"]
    L += [""]
    if mj.get("latency_eager"):
        e, b = mj["latency_eager"], mj.get("latency") or {}
        L += ["## PyTorch eager latency, beside it", ""] + _latency_lines(e)
        if e.get("median_ms") and b.get("median_ms"):
            L += [f"- {b.get('backend')} / eager: {b['median_ms'] / e['median_ms']:.2f}x"]
        L += [""]
    if mj.get("latency_remeasured"):
        r = mj["latency_remeasured"]
        L += ["## Latency re-measured at export (`--remeasure`)", ""] + _latency_lines(r)
        L += [f"- vs the study: {_fmt(r['median_ms'], '.3f')} ms / {_fmt(m.latency_ms, '.3f')} ms = "
              f"{r['median_ms'] / m.latency_ms:.2f}x", ""]
    fid = mj.get("fidelity") or {}
    pf = mj.get("proxy_fidelity")
    rank_line = (f"How well this proxy ranks architectures: rank agreement with {pf['top_rung'] / pf['steps']:.3g}x "
                 f"training: tau {_fmt(pf.get('tau'), '.2f')} [{_fmt(pf.get('tau_low'), '.2f')}, "
                 f"{_fmt(pf.get('tau_high'), '.2f')}], n = {pf.get('n')} (fidelity study `{pf.get('study')}`)."
                 if pf and pf.get("steps") and pf.get("top_rung") else
                 "How well this proxy ranks architectures: **unchecked** (no fidelity study of this space, dataset "
                 "and recipe; see `nasseg fidelity`).")
    L += ["## Proxy accuracy", "", rank_line, "",
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
    ox, failed = mj.get("onnx"), mj.get("onnx_failure")
    if ox:
        oh, ow = ox["input_shape"][2:]
        checked = " and ".join("x".join(map(str, r)) for r in ox.get("checked_resolutions") or [[oh, ow]])
        if ox.get("hw") == "dynamic":
            shape = f"N x 3 x H x W with **dynamic batch, height and width** (traced at {oh}x{ow})"
        else:
            shape = f"N x 3 x {oh} x {ow}: **static {oh}x{ow}**, dynamic batch"
            if ox.get("dynamic_hw_failure"):
                shape += f" (a dynamic H x W did not verify: {_md_escape(ox['dynamic_hw_failure'])})"
        L.append(f"- `model.onnx`: opset {ox['opset']}, input `image` {shape}, output `logits`; {ox['runtime']} vs "
                 f"PyTorch on random inputs at {checked} (batches {', '.join(map(str, ox['checked_batches']))} at "
                 f"{oh}x{ow}): max abs diff **{ox['max_abs_diff']:.3g}** (<= {ONNX_TOLERANCE:g})"
                 + (f", not counting {ox['argmax_flip_values']} output values moved by max-unpooling near-ties "
                    "(allowed for argmax networks: nasseg.export.onnx)" if ox.get("argmax_flip_values") else ""))
    elif failed:
        L.append(f"- `model.onnx`: **not written**: {_md_escape(failed['error'])}"
                 + (f"; the exporter's full output is in `{failed['log']}`" if failed.get("log") else ""))
    else:
        L.append("- `model.onnx`: **not written** (no usable weights to export)")
    L += ["", "## Use", ""]
    if w.get("kind") in ("copied", "retrained"):
        L += ["```python", "from nasseg.export import load",
              f"net = load('path/to/{path.parent.name}')  # nn.Module in eval mode, weights loaded",
              f"logits = net(x)  # x: N x 3 x H x W, {mj['input']['layout']}; logits N x {mj['num_classes']} x H x W",
              "```", ""]
    else:
        L += ["`nasseg.export.load()` needs `model.pt`, which this folder lacks: export again with "
              "`--retrain-steps N`.", ""]
    if ox:
        oh, ow = ox["input_shape"][2:]
        size = (f"N x 3 x H x W (dynamic; checked at {checked})" if ox.get("hw") == "dynamic"
                else f"N x 3 x {oh} x {ow} (static: the exported resolution)")
        L += [f"ONNX: `onnxruntime.InferenceSession('model.onnx').run(None, {{'image': x}})` with x of shape {size}, "
              "float32, normalised as above.", ""]
    else:
        L += ["No `model.onnx` in this folder (see Files above).", ""]
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
          budget: float | None, threads: Any = None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, without touching pyplot's global backend
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lat_spec = st.meta.get("latency") or {}
    res = lat_spec.get("resolution") or ["?", "?"]
    threads_text = _threads_text(threads if threads is not None else lat_spec.get("threads"), lat_spec.get("device"))
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
                        f"{res[0]}x{res[1]}, {lat_spec.get('device', '?')}, "
                        f"{threads_text}, "
                        f"{lat_spec.get('dtype', 'float32')})" + (", log scale" if logx else ""))
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


def _onnx_summary(s: Mapping[str, Any]) -> str:
    """report.md's ONNX line: the resolution, and how many graphs are dynamic, static or missing."""
    members = s.get("members") or []
    res = "x".join(map(str, s.get("onnx_resolution") or []))
    dynamic = sum(1 for i in members if (i.get("onnx") or {}).get("hw") == "dynamic")
    static = sum(1 for i in members if (i.get("onnx") or {}).get("hw") == "static")
    failed = sum(1 for i in members if i.get("onnx_failure"))
    parts = [f"{dynamic} with a dynamic H x W (also checked at a second resolution)"] if dynamic else []
    parts += [f"{static} with a static {res}"] if static else []
    parts += [f"{failed} failed (see Incomplete)"] if failed else []
    return f"traced and checked at {res} (`--onnx-resolution`); " + (", ".join(parts) or "none exported")


def _fidelity_text(pf: Mapping[str, Any] | None) -> str:
    """The search's one line on how well its proxy ranks (or that nobody checked)."""
    if not pf or not pf.get("line"):
        return "not recorded (a study from before nasseg measured it; see nasseg fidelity)"
    return str(pf["line"])


def _write_report(path: Path, s: Mapping[str, Any], front: Sequence[FrontMember],
                  chosen: Sequence[FrontMember]) -> None:
    lat = s.get("latency") or {}
    res = lat.get("resolution") or ["?", "?"]
    recipe = s.get("recipe") or {}
    L = [f"# Pareto front of study `{s['study']}`", "",
         f"- storage: `{s['storage']}`",
         f"- mode: {s.get('mode')}; latency budget: "
         + (f"{s['latency_budget_ms']:g} ms" if s.get("latency_budget_ms") is not None else "none"),
         f"- latency: {lat.get('batch', 1)}x3x{res[0]}x{res[1]} on `{lat.get('device')}`, "
         f"{_threads_text(s.get('latency_threads', lat.get('threads')), lat.get('device'))}, {lat.get('dtype')}, "
         f"median of at least {lat.get('runs')} runs, on **{lat.get('backend', 'torch')}**"
         + ("" if lat.get("backend", "torch") == "torch" else " (the eager PyTorch latency beside it in each card and "
            "in the table)"),
         f"- dataset: `{s.get('dataset')}` ({s.get('num_classes')} classes); proxy: {recipe.get('steps')} steps at "
         f"{'x'.join(map(str, recipe.get('resolution') or []))}, batch {recipe.get('batch_size')}",
         f"- trials: {s['trials']} (" + ", ".join(f"{k} {v}" for k, v in s["counts"].items()) + ")",
         f"- front: {len(front)} architecture(s) ({FRONT_RULE}; the trials `nasseg status` stars); exported "
         f"{len(chosen)}" + (f" (--top {s['top']})" if s.get("top") else ""),
         f"- proxy fidelity: {_md_escape(_fidelity_text(s.get('proxy_fidelity')))}",
         f"- ONNX: {_onnx_summary(s)}",
         f"- max ONNX |onnxruntime - PyTorch|: {_fmt(s.get('max_onnx_diff'), '.3g')} (tolerance {ONNX_TOLERANCE:g}); "
         f"export took {s.get('wall_seconds', 0):.1f} s", "",
         "![Pareto front](pareto.png)", "",
         "| rank | trial | mIoU | latency ms | eager ms | re-measured ms | params | GMACs | ONNX | folder | genome |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for i in s["members"]:
        ox = i.get("onnx")
        onnx_cell = (f"{_onnx_hw_text(ox)}, diff {_fmt(ox.get('max_abs_diff'), '.2g')}" if ox
                     else "**failed**" if i.get("onnx_failure") else "-")
        L.append(f"| {i['rank']} | {i['trial']} | {_fmt(i['miou'])} | {_fmt(i['latency_ms'], '.3f')} | "
                 f"{_fmt(i.get('latency_eager_ms'), '.3f')} | "
                 f"{_fmt(i.get('latency_remeasured_ms'), '.3f')} | "
                 f"{_fmt(i.get('params'), ',d')} | {_fmt((i.get('macs') or 0) / 1e9, '.4f')} | "
                 f"{onnx_cell} | [{i['folder']}]({i['folder']}/README.md) | "
                 f"`{_md_escape(i.get('genome') or '')}` |")
    if s.get("incomplete"):
        L += ["", "## Incomplete", ""]
        for i in s["incomplete"]:
            L += [f"- `{i['folder']}` (trial {i['trial']}): " + "; ".join(_md_escape(p) for p in i["problems"])]
    L += ["", "Every trial with its front status: [pareto.csv](pareto.csv). Load an architecture with "
          "`nasseg.export.load('<folder>')`.", ""]
    path.write_text("\n".join(L), encoding="utf-8")
