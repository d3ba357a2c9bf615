"""The report of a fidelity study, written to files: ``fidelity.csv`` (a row per rung and per zero-cost proxy),
``fidelity.json`` (what defines the study, the result, every run), ``report.md`` and ``fidelity.png`` (rank
against rank per rung, and tau with its interval against cost).  :data:`COLUMNS` and :func:`table_rows` are
shared with the console table of ``nasseg fidelity``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nasseg import __version__

COLUMNS = ("score", "worker-s", "n", "Kendall tau-b [95 % CI]", "Spearman [95 % CI]", "seed tau",
           "seed sd / genome sd", "classes at IoU 0", "meets target")
CSV_FIELDS = ("kind", "name", "steps", "cost_ratio", "genomes", "runs", "failed", "worker_seconds", "mean_miou", "n",
              "tau", "tau_low", "tau_high", "spearman", "spearman_low", "spearman_high", "seed_tau", "within_sd",
              "between_sd", "noise_ratio", "zero_iou_classes", "meets_target", "note")


def _f(v: Any, fmt: str, none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _interval(row: Mapping[str, Any], name: str) -> str:
    if row.get(name) is None:
        return "ref" if row.get("reference") else "-"
    return f"{row[name]:.2f} [{_f(row[name + '_low'], '.2f')}, {_f(row[name + '_high'], '.2f')}]"


def meets(row: Mapping[str, Any], target: float) -> bool | None:
    """Whether a row's whole tau interval clears ``target`` (None for the reference, or an undefined interval)."""
    if row.get("reference") or row.get("tau_low") is None:
        return None
    return row["tau_low"] >= target


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """One line of :data:`COLUMNS` per rung and per proxy."""
    out = []
    target = result["target_tau"]
    for r in result["rows"]:
        noise = "-" if r["within_sd"] is None else f"{r['within_sd']:.3f} / {r['between_sd']:.3f}"
        m = meets(r, target)
        name = r["name"] + (" (top)" if r.get("reference") else "") if r["kind"] == "rung" else f"zero-cost {r['name']}"
        out.append([name, _f(r["worker_seconds"], ".1f"), str(r["n"]), _interval(r, "tau"), _interval(r, "spearman"),
                    _f(r["seed_tau"], ".2f"), noise, ", ".join(r["zero_iou_classes"]) or "-",
                    "-" if m is None else ("yes" if m else "no")])
    return out


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_markdown(meta: Mapping[str, Any], result: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    rc = meta["recipe"]
    res = "x".join(map(str, rc["resolution"]))
    c = info["counts"]
    lines = [
        f"# Fidelity study `{info['study']}`", "",
        f"How well a short proxy (each rung of {', '.join(map(str, meta['rungs']))} steps) and each zero-cost proxy "
        f"rank {len(meta['genome_ids'])} genomes the way the top rung ({result['top_rung']} steps) does.", "",
        f"Space `{meta['space']}` (sha {meta['space_sha']}); dataset `{meta['dataset']}` ({meta['num_classes']} "
        f"classes); seeds {meta['seeds']}; recipe {res}, batch {rc['batch_size']}, lr {rc['lr']:g} ({rc['optimizer']}, "
        f"{rc['schedule']}), loss {rc['loss']}; per rung: steps, warm-up min(steps - 1, steps // 20), one evaluation "
        f"at the end.  Zero-cost proxies at {'x'.join(map(str, meta['proxy_settings']['resolution']))} on a "
        f"synthetic batch of {meta['proxy_settings']['batch_size']} images (seed {meta['proxy_settings']['seed']})."
        + (f"  Genomes feasible under {meta['latency_budget_ms']:g} ms on {meta['latency']['device']} at "
           f"{'x'.join(map(str, meta['latency']['resolution']))}." if meta.get("latency_budget_ms") else ""), "",
        f"**Recommendation** (target: the whole tau interval >= {result['target_tau']:g}): {result['recommendation']}.",
    ]
    if result.get("proxies_meeting_target"):
        lines.append(f"Zero-cost proxies that clear it too: {', '.join(result['proxies_meeting_target'])}.")
    lines += ["", _md_table(COLUMNS, table_rows(result)), "",
              "Kendall tau-b and Spearman's rho of each score's ranking of the genomes against the top rung's (each "
              "genome's mIoU averaged over its seeds first), with 95 % paired-bootstrap intervals over genomes; "
              "*seed tau* is the mean tau-b between the rankings of two seeds of the same rung (the ceiling of its "
              "agreement with anything); *seed sd / genome sd* is the mean standard deviation over seeds against the "
              "standard deviation of the genomes' means (a ratio near 1 or above: seed noise is as large as what is "
              "ranked); *classes at IoU 0* are the classes no run of the rung segmented at all; *worker-s* is the "
              "training (or scoring) time summed over every run.  nasseg.fidelity_stats holds the definitions.", ""]
    notes = [f"* {r['name']}: {r['note']}" for r in result["rows"] if r.get("note") and not r.get("reference")]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    rungs = [str(r) for r in result["rungs"]]
    proxies = list(result["genomes"][0]["proxies"]) if result["genomes"] else []
    header = ["genome id", *[f"mIoU @{r}" for r in rungs], *proxies, "genome"]
    body = [[g["genome_id"], *[_f(g["miou"].get(r), ".4f") for r in rungs],
             *[_f(g["proxies"].get(p), ".4g") for p in proxies], f"`{g['genome']}`"] for g in result["genomes"]]
    lines += ["## Genomes", "", _md_table(header, body), "",
              "## Provenance", "",
              f"Optuna study `{info['study']}` in `{info['storage']}`; executor {info['executor']}; this run: wall "
              f"{info['wall_seconds']:.1f} s, {c['trained']} run(s) trained ({info['train_seconds']:.1f} "
              f"worker-seconds), {c['already']} already finished, {c['failed']} failed, {info['missing_runs']} of "
              f"{c['planned']} without a result; "
              f"{c['zero_cost_computed']} zero-cost score(s) computed ({info['zero_cost_seconds']:.1f} s).  "
              f"Result computed {result.get('computed_utc', '-')} (UTC); nasseg {__version__}.", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, meta: Mapping[str, Any], result: Mapping[str, Any],
                 runs: Sequence[Mapping[str, Any]], info: Mapping[str, Any], plot: bool = True) -> dict[str, str]:
    out_dir.mkdir(exist_ok=True)
    paths = {"csv": str(out_dir / "fidelity.csv"), "json": str(out_dir / "fidelity.json"),
             "markdown": str(out_dir / "report.md")}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            m = meets(r, result["target_tau"])
            w.writerow({**{k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS},
                        "zero_iou_classes": ";".join(r["zero_iou_classes"]), "meets_target": "" if m is None else m})
    doc = {"meta": meta, "result": result, "runs": list(runs), "info": dict(info)}
    Path(paths["json"]).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    Path(paths["markdown"]).write_text(render_markdown(meta, result, info), encoding="utf-8")
    if plot:
        paths["plot"] = str(out_dir / "fidelity.png")
        plot_report(result, Path(paths["plot"]))
    return paths


def _ranks(values: Sequence[float]) -> list[float]:
    """Rank 1 = the highest value; ties share their mean rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def plot_report(result: Mapping[str, Any], path: Path) -> None:
    """One panel per lower rung: each genome's rank at that rung against its rank at the top rung; and a last
    panel: every score's tau-b with its 95 % interval against its cost, with the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, NullFormatter

    top = str(result["top_rung"])
    rung_rows = {str(r["steps"]): r for r in result["rows"] if r["kind"] == "rung"}
    lower = [str(r) for r in result["rungs"] if str(r) != top]
    n = len(lower) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.6 * len(lower) + 6.0, 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * len(lower) + [1.7]})
    for ax, r in zip(axes[0], lower):
        pairs = [(g["miou"][r], g["miou"][top]) for g in result["genomes"] if r in g["miou"] and top in g["miou"]]
        if pairs:
            x, y = _ranks([p[0] for p in pairs]), _ranks([p[1] for p in pairs])
            ax.plot([1, len(pairs)], [1, len(pairs)], color="grey", lw=0.8, ls="--")
            ax.scatter(x, y, color="#e6550d", zorder=3)
            ax.invert_xaxis()
            ax.invert_yaxis()
        row = rung_rows[r]
        tau = "tau-b -" if row["tau"] is None else f"tau-b {row['tau']:.2f} [{_f(row['tau_low'], '.2f')}, " \
                                                    f"{_f(row['tau_high'], '.2f')}]"
        ax.set_title(f"{r} vs {top} steps\n{tau}, n = {row['n']}", fontsize=9)
        ax.set_xlabel(f"rank at {r} steps (1 = best)")
        ax.set_ylabel(f"rank at {top} steps")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax = axes[0][-1]
    for row in result["rows"]:
        if row["reference"] or row["tau"] is None:
            continue
        cost = max(float(row["worker_seconds"] or 0.0), 1e-3)
        lo, hi = row["tau_low"], row["tau_high"]
        err = None if lo is None or hi is None else [[row["tau"] - lo], [hi - row["tau"]]]
        style = ("o", "#e6550d") if row["kind"] == "rung" else ("s", "#3182bd")
        ax.errorbar([cost], [row["tau"]], yerr=err, fmt=style[0], color=style[1], capsize=3)
        ax.annotate(row["name"], (cost, row["tau"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.axhline(result["target_tau"], color="black", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("cost (worker-seconds over all genomes and seeds)")
    ax.set_ylabel(f"Kendall tau-b with {top} steps (95 % CI)")
    ax.set_title("agreement against cost", fontsize=9)
    handles = [Line2D([], [], marker="o", color="#e6550d", ls="", label="rung (training)"),
               Line2D([], [], marker="s", color="#3182bd", ls="", label="zero-cost proxy"),
               Line2D([], [], color="black", lw=0.8, ls=":", label=f"target {result['target_tau']:g}")]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
