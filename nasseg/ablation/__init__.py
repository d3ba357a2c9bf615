"""Ablation replay: a paper's ablation table rebuilt as fixed genomes, run through the search's own
measure + proxy path, and printed beside the paper's own numbers.

A study file (``studies/*.yaml``) holds a base genome, a list of named variants each written as a
*change* to the base, the recipe per fidelity (``smoke`` | ``proxy`` | ``full``), the resolution the
paper states its costs at, the latency measurement, and the paper's table as data (mIoU, params, MACs,
field-of-view per row, with the source), plus the paper's claims in words where numbers do not exist.
:func:`load_study` validates the whole file (pydantic for the structure, unknown keys are errors; the
registry and :func:`nasseg.genome.from_dict` for every variant; every variant is built) and errors
name the file, the key path, the bad value and what is valid.

The change language
-------------------
A change is a mapping with up to four operations, applied to the base genome's dict form
(:func:`nasseg.genome.to_dict`) in this order:

``set: {PATH: VALUE}``
    Replace the value at ``PATH``.  A path is dot-separated keys and list indices into the genome
    dict, e.g. ``decoder.kind``, ``stages.2.args.num_blocks``, ``stages.4.width``, ``heads.extra``,
    ``decoder`` (a whole sub-tree; missing fields take their defaults).  Indices may be negative
    (``stages.-1``).  Every segment must exist.  Setting a module's name (a stage's ``block``, the
    decoder's ``kind``, a ``name``) to a different one clears that module's ``args`` (and a stage's
    ``block_args``) unless the same ``set`` gives them: the new module starts from its own defaults.
``per_block: {STAGE_PATH: {ARG: VALUES}}``
    Per-block arguments of one stage (its ``block_args``), ``VALUES`` one per block, either a YAML
    list or the genome string's per-block notation, e.g. ``"[1]*2,[1,2],[1,4]*4,[1,14]*6"``.  The
    stage's ``depth`` becomes the number of values.
``remove: [PATH, ...]``
    Delete list elements or keys (a removed key takes its default, e.g. ``decoder.context`` -> no
    context).  All paths refer to the genome before the removal; list elements go from the end first.
``append: {LIST_PATH: [ITEM, ...]}``
    Append items to a list, e.g. an extra head to ``heads.extra``.

The result must be a valid genome: it is resolved with :func:`nasseg.genome.from_dict`, so a wrong
path, name or value errors at load, naming the variant and the key.

Running
-------
:func:`ablate` runs every variant x seed through :class:`nasseg.search.Driver` (subclassed:
:class:`AblationDriver` proposes the planned runs instead of sampling a space) and the search's
executors (:func:`nasseg.search.run_local` / :func:`nasseg.search.run_ray`, both calling
:func:`nasseg.search.run_job`).  Results live in an Optuna study named ``ablation-<name>-<fidelity>``
in the given storage (default ``sqlite:///runs/ablations.db``); a run is identified by
(genome_id, seed, recipe, dataset), so running the command again trains only what is missing and
re-reports.  Costs (params and MACs at the paper's resolution and class count, latency at the stated
device / resolution, the field-of-view, optional scaling over several resolutions with peak memory)
are measured once per variant, before any proxy trains, and kept in the study's user attributes.

The verdict rule
----------------
See :data:`VERDICT_RULE`: Delta = variant mean - reference mean of the per-seed proxy mIoU;
SE = sqrt(s_v^2/n_v + s_r^2/n_r) with s the sample standard deviation over seeds.  ``|Delta| < 2 SE``
or fewer than two seeds on either side is *inconclusive* (never agreement); otherwise the sign of
Delta *agrees* with the paper's direction (the sign of the paper's own Delta, or the direction its
text states) or *contradicts* it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nasseg.ablation.render import (
    COLUMNS,
    plot_report,
    render_markdown,
    scaling_rows,
    stated_rows,
    table_rows,
    write_report,
)
from nasseg.ablation.runner import (
    DEFAULT_STORAGE,
    AblationConfig,
    AblationDriver,
    ablate,
    field_of_view,
    measure_variant,
    peak_memory_bytes,
)
from nasseg.ablation.schema import (
    FIDELITIES,
    ChangeSpec,
    Fidelity,
    Study,
    StudyFile,
    Variant,
    apply_change,
    load_study,
    parse_paper_number,
    parse_per_block,
    parse_study,
    stated_match,
    study_files,
)
from nasseg.ablation.stats import VERDICT_RULE, VERDICTS, ClaimResult, Row, check_claims, summarize, verdict

__all__ = [
    "FIDELITIES", "VERDICTS", "VERDICT_RULE", "AblationConfig", "AblationDriver", "ChangeSpec", "ClaimResult",
    "Fidelity", "Row", "Study", "StudyFile", "Variant", "ablate", "apply_change", "check_claims",
    "field_of_view", "load_study", "measure_variant", "parse_paper_number", "parse_per_block", "parse_study",
    "peak_memory_bytes", "plot_report", "render_markdown", "stated_match", "study_files", "summarize",
    "verdict", "write_report",
]


# =========================================================================================== report




def print_report(study: Study, fid: Fidelity, rows: list[Row], info: Mapping[str, Any], con: Any) -> None:
    from rich.table import Table

    t = Table(title=f"{study.spec.title} — replay ({fid.name}) vs paper; * = reference")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("variant", "paper row", "verdict") else "right", overflow="fold")
    style = {"agrees": "green", "contradicts": "red", "inconclusive": "yellow"}
    for r, cells in zip(rows, table_rows(rows)):
        cells[-1] = f"[{style[r.verdict]}]{cells[-1]}[/]" if r.verdict in style else cells[-1]
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


# ============================================================================================== CLI
def _add_args(p: Any) -> None:
    from nasseg.search import EXECUTORS

    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="sqlite:///path.db or postgresql://... "
                   f"(default {DEFAULT_STORAGE})")
    p.add_argument("--fidelity", choices=FIDELITIES, default="proxy", help="which recipe of the study file")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the fidelity's own)")
    p.add_argument("--executor", choices=EXECUTORS, default="ray", help="ray (default) or local (no Ray)")
    p.add_argument("--out", default=None, help="folder for the CSV, Markdown and PNG (default "
                   "runs/ablations/<name>-<fidelity>)")
    p.add_argument("--dataset", default=None, help="override the fidelity's dataset (synthetic or LAYOUT:PATH)")
    p.add_argument("--report-only", action="store_true", help="train and measure nothing: report what the "
                   "study holds")
    p.add_argument("--ray-address", default=None)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--artifacts", default=None, help="folder for proxy weights (default: beside the SQLite file)")
    p.add_argument("--no-plot", action="store_true")


def _run(a: Any) -> int:
    from rich.console import Console

    con = Console(stderr=True, highlight=False)
    cfg = AblationConfig(study=a.study, storage=a.storage, fidelity=a.fidelity, seeds=a.seeds, executor=a.executor,
                         out=a.out, dataset=a.dataset, report_only=a.report_only, ray_address=a.ray_address,
                         cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial,
                         concurrency=a.concurrency, artifacts=a.artifacts, plot=not a.no_plot)
    res = ablate(cfg, log=lambda s: con.print(s))
    study = load_study(cfg.study, build_check=False)
    fid = study.fidelity(cfg.fidelity, cfg.seeds, cfg.dataset)
    out = Console(highlight=False)
    out = out if out.is_terminal else Console(highlight=False, width=200)
    print_report(study, fid, res["rows"], res, out)
    c = res["counts"]
    con.print(f"wall {res['wall_seconds']:.1f} s: {c['measured']} variant cost(s) measured "
              f"({res['measure_seconds']:.1f} s), {c['trained']} run(s) trained ({res['train_seconds']:.1f} "
              f"worker-seconds), {c['reused_runs']} already finished, {c['failed']} failed")
    con.print("wrote " + ", ".join(res["paths"].values()))
    return 0


def _register_cli() -> None:
    from nasseg.cli import COMMANDS

    COMMANDS["ablate"] = (_add_args, _run, "replay a paper's ablation table (studies/*.yaml)")


_register_cli()
