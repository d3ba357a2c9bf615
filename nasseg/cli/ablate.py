"""``nasseg ablate STUDY.yaml``: parse the arguments, run :func:`nasseg.ablation.runner.ablate`, print the
report on the console."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nasseg.ablation.render import COLUMNS, scaling_rows, stated_rows, table_rows
from nasseg.ablation.runner import DEFAULT_STORAGE, AblationConfig, ablate
from nasseg.ablation.schema import FIDELITIES, Fidelity, Study, load_study
from nasseg.ablation.stats import Row
from nasseg.cli.common import check_output_path
from nasseg.latency import BACKENDS, PRECISIONS

HELP = "replay a paper's ablation table (studies/*.yaml)"


def print_report(study: Study, fid: Fidelity, rows: list[Row], info: Mapping[str, Any], con: Any) -> None:
    from rich.table import Table

    t = Table(title=f"{study.spec.title} — replay ({fid.name}) vs paper; * = reference")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("variant", "paper row", "verdict") else "right", overflow="fold")
    plan = info.get("plan")
    if plan:
        con.print(f"plan (--fidelity auto, {plan['max_hours']:g} h): {plan['seeds']} seeds x {plan['steps']} steps of "
                  f"the {plan.get('base_fidelity')} recipe to resolve {plan['effect_variant']} {plan['effect']:+.2f} "
                  f"pp (MDD {plan['mdd']:.3f} pp at the pilot's seed sd {plan['sd']:.3f} pp, measured at "
                  f"{plan['pilot']['steps']} steps and assumed at {plan['steps']})")
    style = {"agrees": "green", "contradicts": "red", "inconclusive": "yellow"}
    for r, cells in zip(rows, table_rows(rows)):
        kind = r.verdict_kind
        cells[-1] = f"[{style[kind]}]{cells[-1]}[/]" if kind in style else cells[-1]
        t.add_row(*cells)
    con.print(t)
    header, body = stated_rows(rows, study.spec.cost.macs)
    if len(header) > 1:
        t2 = Table(title="stated costs vs ours (exact)")
        for c in header:
            t2.add_column(c, justify="right" if c != "variant" else "left")
        for line in body:
            t2.add_row(*line)
        con.print(t2)
    sh, sb = scaling_rows(rows)
    if sb:
        t3 = Table(title="scaling with resolution")
        for c in sh:
            t3.add_column(c, justify="right" if c != "variant" else "left")
        for line in sb:
            t3.add_row(*line)
        con.print(t3)
    for c in info.get("claims") or []:
        if c.check:
            colour = {"holds": "green", "fails": "red"}.get(c.result, "yellow")
            con.print(f"claim check {c.check}: [{colour}]{c.result}[/] {c.detail}".rstrip())


def add_arguments(p: Any) -> None:
    from nasseg.search import EXECUTORS

    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="sqlite:///path.db or postgresql://... "
                   f"(default {DEFAULT_STORAGE})")
    p.add_argument("--fidelity", choices=(*FIDELITIES, "auto"), default="proxy", help="which recipe of the study "
                   "file; auto: plan seeds and steps of the study's replay recipe (proxy) that resolve the paper's "
                   "largest effect within --max-hours, after a short pilot (or say up front, exit 2, that none can)")
    p.add_argument("--max-hours", type=float, default=None, metavar="H",
                   help="--fidelity auto: the time budget in hours (> 0)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the fidelity's own)")
    p.add_argument("--executor", choices=EXECUTORS, default="ray", help="ray (default) or local (no Ray)")
    p.add_argument("--out", default=None, help="folder for the CSV, Markdown and PNG (default "
                   "runs/ablations/<name>-<fidelity>)")
    p.add_argument("--dataset", default=None, help="override the fidelity's dataset (synthetic or LAYOUT:PATH)")
    p.add_argument("--report-only", action="store_true", help="train and measure nothing: report what the "
                   "study holds")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (else RAY_ADDRESS or "
                   "local)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each proxy uses")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs each proxy uses (fractions allowed)")
    p.add_argument("--concurrency", type=int, default=None, help="proxies training at once (default: as "
                   "resources allow)")
    p.add_argument("--keep-weights", action="store_true", help="write every proxy's weights to disk (default: "
                   "none are written; an ablation reads only the mIoU)")
    p.add_argument("--artifacts", default=None, help="folder for proxy weights with --keep-weights (default: beside "
                   "the SQLite file)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG plot")
    p.add_argument("--latency-backend", choices=BACKENDS, default=None, help="time the variants on this runtime "
                   "(default: the study file's, torch); with another than torch, eager latency is recorded too")
    p.add_argument("--latency-precision", choices=tuple(PRECISIONS), default=None, help="precision of the timed "
                   "passes (default: the study file's, fp32)")


def run(a: Any) -> int:
    from rich.console import Console

    for value, option in ((a.out, "--out"), (a.artifacts, "--artifacts")):
        if value:
            check_output_path(value, option, folder=True)
    con = Console(stderr=True, highlight=False)
    cfg = AblationConfig(study=a.study, storage=a.storage, fidelity=a.fidelity, seeds=a.seeds, executor=a.executor,
                         out=a.out, dataset=a.dataset, report_only=a.report_only, ray_address=a.ray_address,
                         cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial,
                         concurrency=a.concurrency, artifacts=a.artifacts, plot=not a.no_plot,
                         max_hours=a.max_hours, keep_weights=a.keep_weights, latency_backend=a.latency_backend,
                         latency_dtype=PRECISIONS[a.latency_precision] if a.latency_precision else None)
    res = ablate(cfg, log=lambda s: con.print(s))
    study = load_study(cfg.study, build_check=False)
    fid = res["fidelity_spec"]
    out = Console(highlight=False)
    out = out if out.is_terminal else Console(highlight=False, width=200)
    print_report(study, fid, res["rows"], res, out)
    c = res["counts"]
    con.print(f"wall {res['wall_seconds']:.1f} s: {c['measured']} variant cost(s) measured "
              f"({res['measure_seconds']:.1f} s), {c['trained']} run(s) trained ({res['train_seconds']:.1f} "
              f"worker-seconds), {c['reused_runs']} already finished, {c['failed']} failed")
    con.print("wrote " + ", ".join(res["paths"].values()))
    return 0
