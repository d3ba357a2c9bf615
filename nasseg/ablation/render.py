"""The report written to files: a CSV row per variant, a Markdown page (the replay beside the paper's
table, the stated costs compared exactly, scaling, the claims, the verdicts and their rule, provenance) and a
PNG plot.  The table helpers (:data:`COLUMNS`, :func:`table_rows`, :func:`stated_rows`, :func:`scaling_rows`)
are shared with the console rendering of ``nasseg ablate``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasseg import __version__
from nasseg.ablation.plan import ASSUMPTIONS, hours
from nasseg.ablation.schema import Fidelity, Study
from nasseg.ablation.stats import POWER_RULE, VERDICT_RULE, ClaimResult, Row, cfg_res


def _f(v: Any, fmt: str, none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _mean_n(r: Row) -> str:
    return "-" if r.mean is None else f"{r.mean:.2f} (n={len(r.mious)})"


def _sd_text(r: Row) -> str:
    if r.std is not None:
        return f"{r.std:.2f}"
    return "unknown (1 seed)" if len(r.mious) == 1 else "-"


def _mdd_text(r: Row) -> str:
    if r.is_reference:
        return "ref"
    if r.mdd is not None:
        return f"{r.mdd:.2f}"
    return "unknown (< 2 seeds)" if r.mious else "-"


def _seeds_text(r: Row) -> str:
    if r.is_reference:
        return "ref"
    return r.seeds_needed_text or "-"


def _diff_text(r: Row) -> str:
    if r.is_reference:
        return "ref"
    if r.diff is None:
        return "-"
    return f"{r.diff:+.2f} ± {2 * r.se:.2f}" if r.se is not None else f"{r.diff:+.2f}"


def _paper_diff_text(r: Row) -> str:
    if r.is_reference:
        return "ref"
    if r.paper_diff is not None:
        return f"{r.paper_diff:+.2f}"
    return f"({r.paper_direction})" if r.paper_direction else "-"


def _stated_text(stated: Any, match: bool | None) -> str:
    if stated is None:
        return "-"
    text = f"{stated:,}" if isinstance(stated, int) else str(stated)
    return f"{text} ({'match' if match else 'differs'})" if match is not None else text


COLUMNS = ("variant", "paper row", "params M", "GMACs", "latency ms", "fov", "replay mIoU % (mean)", "seed sd pp",
            "Δ replay pp (± 2SE)", "MDD pp", "paper mIoU", "Δ paper", "seeds for paper Δ", "verdict")


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        out.append([r.variant + (" *" if r.is_reference else ""), r.label or "-",
                    _f(r.params and r.params / 1e6, ".3f"), _f(r.macs and r.macs / 1e9, ".2f"),
                    _f(r.latency_ms, ".2f"), _f(r.fov, "d"), _mean_n(r), _sd_text(r),
                    _diff_text(r), _mdd_text(r), _f(r.paper_miou, ".2f"), _paper_diff_text(r), _seeds_text(r),
                    r.verdict])
    return out


def stated_rows(rows: list[Row], macs_kind: str) -> tuple[list[str], list[list[str]]]:
    quantities = [q for q in ("params", "macs", "fov") if any(q in r.stated for r in rows)]
    fmts = {"params": lambda v: f"{v:,}", "macs": lambda v: f"{v / 1e9:.3f} G", "fov": lambda v: str(v)}
    header = ["variant"]
    for q in quantities:
        name = f"MACs ({macs_kind})" if q == "macs" else q
        header += [f"{name}: ours", f"{name}: paper", f"{name}: official code"]
    body = []
    for r in rows:
        line = [r.variant]
        for q in quantities:
            s = r.stated.get(q)
            if s is None:
                ours = {"params": r.params, "macs": r.macs, "fov": r.fov}[q]
                line += [fmts[q](ours) if ours is not None else "-", "-", "-"]
                continue
            line += [fmts[q](s["ours"]) if s["ours"] is not None else "-",
                     _stated_text(s["paper"], s["paper_match"]), _stated_text(s["official"], s["official_match"])]
        body.append(line)
    return header, body


def scaling_rows(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "resolution", "GMACs", "latency ms", "peak memory MiB"]
    body = []
    for r in rows:
        for s in r.scaling:
            body.append([r.variant, cfg_res(s["resolution"]), _f(s["macs"] / 1e9, ".2f"),
                         _f(s.get("latency_ms"), ".2f"),
                         _f(s.get("peak_memory_bytes") and s["peak_memory_bytes"] / 2 ** 20, ".1f")])
    return header, body


def _md_table(header: list[str], body: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _claim_line(c: ClaimResult) -> str:
    line = f"{c.text} ({c.source})" + (f" [rows: {', '.join(c.variants)}]" if c.variants else "")
    if c.check:
        line += f" -- check {c.check}: **{c.result}**" + (f" ({c.detail})" if c.detail else "")
    return line


def render_markdown(study: Study, fid: Fidelity, rows: list[Row], claims: list[ClaimResult],
                    info: Mapping[str, Any]) -> str:
    spec = study.spec
    lat = fid.latency
    rc = fid.recipe
    lines = [f"# Ablation replay: {spec.title}", "",
             f"Paper: {spec.paper.citation}.  Paper table: {spec.paper.source}."
             + (f"  Paper metric: {spec.paper.metric}." if spec.paper.metric else ""), "",
             f"Replay: fidelity **{fid.name}** ({fid.description or 'no description'}); dataset `{fid.dataset}`; "
             f"seeds {list(fid.seeds)}; recipe {cfg_res(rc.resolution)}, {rc.steps} steps, batch {rc.batch_size}, "
             f"lr {rc.lr:g} ({rc.optimizer}, {rc.schedule}), loss {rc.loss}.  Replay mIoU is the proxy's mIoU on "
             f"the dataset's validation split, in percent; it is compared with the paper by direction only.", "",
             f"Costs: params and MACs (fvcore, conv + linear, one multiply-add = 1; 'all' adds fvcore's other "
             f"handlers) at {cfg_res(spec.cost.resolution)} with {spec.cost.num_classes} classes; latency = median "
             f"of at least {lat.runs} runs after {lat.warmup} warm-up on {lat.device} with "
             f"{getattr(lat, 'backend', 'torch')}, {lat.threads or 'default'} thread(s), "
             f"batch {lat.batch}, {cfg_res(lat.resolution)}, {lat.dtype}."
             + (f"  Paper's speed setting: {spec.latency.note}." if spec.latency.note else ""), "",
             f"Reference row (*): `{study.reference}`.  Δ replay = variant − reference in percentage points, ± 2 SE.  "
             "Seed sd = the sample sd of a variant's per-seed mIoU; MDD = the smallest true Δ to the reference "
             "these seeds detect (two-sided 5 %, power 80 %); seeds for paper Δ = seeds per arm the paper's own Δ "
             "needs at the pooled seed sd of the variant and the reference (see the power rule below).",
             "", _md_table(list(COLUMNS), table_rows(rows)), ""]
    plan = info.get("plan")
    if plan:
        lines += ["## Plan (--fidelity auto)", "", _plan_text(plan), ""]
    header, body = stated_rows(rows, spec.cost.macs)
    if len(header) > 1:
        lines += ["## Costs the paper (or the official code) states, compared exactly", "",
                  "A count printed with a unit (e.g. `3.34 M`) matches when ours rounds to it at the printed "
                  "precision; an integer must be equal."
                  + (f"  Official-code counts: {spec.official.source}." if spec.official else ""), "",
                  _md_table(header, body), ""]
    sh, sb = scaling_rows(rows)
    if sb:
        lines += ["## Scaling with resolution", "", _md_table(sh, sb), ""]
    if claims:
        lines += ["## The paper's claims", "", "A claim with a check compares our measured costs exactly (at the cost "
                  "resolution and at every scaling resolution).", ""]
        lines += [f"* {_claim_line(c)}" for c in claims]
        lines.append("")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict_kind] = counts.get(r.verdict_kind, 0) + 1
    lines += ["## Verdicts", "", ", ".join(f"{k}: {v}" for k, v in counts.items()), "", f"Rule: {VERDICT_RULE}", "",
              f"Power rule: {POWER_RULE}", "",
              "## Provenance", "",
              f"Optuna study `{info['study']}` in `{info['storage']}`; executor {info['executor']}; wall "
              f"{info['wall_seconds']:.1f} s (costs {info['measure_seconds']:.1f} s, proxy training "
              f"{info['train_seconds']:.1f} worker-seconds); runs trained now {info['counts']['trained']}, already "
              f"finished {info['counts']['reused_runs']}, failed {info['counts']['failed']}; costs measured now "
              f"{info['counts']['measured']}.  Study file `{study.path}` (sha {study.sha}); nasseg {__version__}.", ""]
    h = info.get("history") or {}
    if h.get("runs"):
        lines += [f"All {h['runs']} finished run(s) in the table: {h['train_seconds']:.1f} worker-seconds of proxy "
                  f"training, from {h['first_start']} to {h['last_complete']} (local time of the driver).", ""]
    lines += ["Genomes:", ""] + [f"* `{r.variant}` ({r.genome_id}): `{r.genome}`" for r in rows] + [""]
    return "\n".join(lines)


def _plan_text(plan: Mapping[str, Any]) -> str:
    p = plan["pilot"]
    sd = f"{plan['sd']:.3f} pp" if plan.get("sd") is not None else "unknown"
    rungs = ", ".join(f"{s} steps: {hours(c)}" for s, c in plan.get("fits") or ())
    return (f"Target: the paper's largest effect, `{plan['effect_variant']}` {plan['effect']:+.2f} pp to the "
            f"reference.  Pilot: {p['runs']} run(s) of the reference and `{plan['effect_variant']}` at {p['steps']} "
            f"steps of the `{plan.get('base_fidelity', '?')}` recipe ({p['trained_now']} trained by this command, "
            f"the rest stored earlier): {p['seconds_per_step']:.4g} s per step, {p['overhead_s']:.3g} s per run "
            f"outside the steps, pooled seed sd {sd}.  Chosen: **{plan['seeds']} seeds x {plan['steps']} steps** "
            f"per variant (ladder {list(plan['ladder'])}), MDD {plan['mdd']:.3f} pp <= {abs(plan['effect']):.2f} pp; "
            f"{plan['runs']} run(s) to train, estimated {hours(plan['estimate_s'])} of the "
            f"{hours(plan['budget_s'])} left of the {plan['max_hours']:g} h budget when planning (cost of the runs "
            f"to train per rung: {rungs}).  Assumptions: {ASSUMPTIONS}.")


def write_report(study: Study, fid: Fidelity, rows: list[Row], claims: list[ClaimResult], info: Mapping[str, Any],
                 out_dir: Path, plot: bool = True) -> dict[str, str]:
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{study.name}-{fid.name}"
    paths = {"csv": str(out_dir / f"{stem}.csv"), "markdown": str(out_dir / f"{stem}.md")}
    records = [r.as_csv() for r in rows]
    keys: list[str] = []
    for rec in records:
        keys += [k for k in rec if k not in keys]
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(records)
    Path(paths["markdown"]).write_text(render_markdown(study, fid, rows, claims, info), encoding="utf-8")
    if plot:
        paths["plot"] = str(out_dir / f"{stem}.png")
        plot_report(study, fid, rows, Path(paths["plot"]))
    return paths


def plot_report(study: Study, fid: Fidelity, rows: list[Row], path: Path) -> None:
    """Two panels: Δ to the reference per variant, paper vs replay (± 2 SE), with each verdict; and the
    absolute replay mIoU (± sd over seeds) with the paper's absolute mIoU on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    y = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.5 * len(rows) + 2.6), sharey=True)
    h = 0.38
    pd_ = [r.paper_diff if r.paper_diff is not None else np.nan for r in rows]
    rd = [r.diff if r.diff is not None else np.nan for r in rows]
    err = [2 * r.se if r.se is not None else 0.0 for r in rows]
    ax1.barh(y - h / 2, pd_, h, color="#9ecae1", edgecolor="#3182bd", hatch="//", label="paper Δ")
    ax1.barh(y + h / 2, rd, h, xerr=err, color="#fdae6b", edgecolor="#e6550d", capsize=3,
             error_kw={"ecolor": "#7f2704"}, label="replay Δ (± 2 SE)")
    for i, r in enumerate(rows):
        if r.paper_diff is None and r.paper_direction and not r.is_reference:
            ax1.annotate(f"paper (in words): {r.paper_direction}", (0, i - h / 2), fontsize=7, va="center",
                         color="#3182bd", xytext=(3, 0), textcoords="offset points")
    ax1.axvline(0, color="black", lw=0.8)
    ax1.set_xlabel("Δ mIoU to the reference (percentage points)")
    ax1.set_title(f"Δ to the reference {study.reference} (*): paper vs replay", fontsize=10)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax1.set_yticks(y, [f"{r.variant}{' *' if r.is_reference else ''}\n{r.verdict}" for r in rows], fontsize=8)
    ax1.invert_yaxis()
    ax1.grid(axis="x", alpha=0.3)
    means = [r.mean if r.mean is not None else np.nan for r in rows]
    sds = [r.std if r.std is not None else 0.0 for r in rows]
    ax2.errorbar(means, y, xerr=sds, fmt="o", color="#e6550d", capsize=3, label="replay mIoU (± sd over seeds)")
    ax2.set_xlabel(f"replay proxy mIoU % ({fid.name}, {fid.dataset})")
    handles, labels = ax2.get_legend_handles_labels()
    pm = [r.paper_miou if r.paper_miou is not None else np.nan for r in rows]
    if any(not math.isnan(v) for v in pm):
        ax3 = ax2.twiny()
        ax3.plot(pm, y, "s", color="#3182bd", label="paper mIoU (top axis)")
        ax3.set_xlabel("paper mIoU %", color="#3182bd")
        ax3.tick_params(axis="x", colors="#3182bd")
        h3, l3 = ax3.get_legend_handles_labels()
        handles, labels = handles + h3, labels + l3
    ax2.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{study.spec.title}\nreplay ({fid.name}, seeds {list(fid.seeds)}) vs paper", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
