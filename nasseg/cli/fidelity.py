"""``nasseg fidelity``: parse the arguments into a :class:`~nasseg.fidelity.FidelityConfig`, run
:func:`nasseg.fidelity.run_fidelity` with a line per finished run, and print the table per rung and per zero-cost
proxy with the recommendation."""

from __future__ import annotations

import json
from typing import Any

from nasseg.cli.common import parse_resolution, wide_console
from nasseg.errors import ConfigError

HELP = "rank agreement of short proxies and zero-cost proxies with longer training"
#: the names of nasseg.zero_cost.PROXIES, for the help text without importing torch (a test keeps them equal)
PROXY_NAMES = ("synflow", "naswot", "grad_norm", "snip", "zen_score", "params", "macs")


def add_arguments(p: Any) -> None:
    from nasseg.search import EXECUTORS

    p.add_argument("--space", required=True, help="search space YAML the genomes are sampled from (and whose "
                   "searches the result is for)")
    p.add_argument("--genomes", type=int, default=None, help="K genomes sampled from the space, stratified over each "
                   "stage's block choices (default 12; at least 4)")
    p.add_argument("--genomes-from", default=None, help="a file with one genome string or preset name per line "
                   "(at least 3 distinct), instead of --genomes (default: none)")
    p.add_argument("--rungs", default="100,300,500", help="strictly increasing training step counts; the last is the "
                   "reference (default 100,300,500)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per genome and rung (default 2)")
    p.add_argument("--proxy-resolution", default="128x256", help="HxW of proxy training and of the zero-cost proxies "
                   "(default 128x256)")
    p.add_argument("--proxy-batch", type=int, default=8, help="images per training step; the zero-cost proxies score "
                   "a synthetic batch of this many (default 8)")
    p.add_argument("--proxy-lr", type=float, default=None, help="peak learning rate (default: the recipe's, 0.01)")
    p.add_argument("--recipe", default=None, help="other recipe fields as JSON, e.g. '{\"loss\": \"ce\"}' (default: "
                   "none); steps, warm-up and evaluation are set per rung")
    p.add_argument("--dataset", default="synthetic", help="synthetic or LAYOUT:PATH (cityscapes, camvid, ade20k, voc, "
                   "folder) (default synthetic)")
    p.add_argument("--latency-budget-ms", type=float, default=None, help="sample only genomes this fast on the latency "
                   "device (default: no budget)")
    p.add_argument("--latency-resolution", default="512x1024", help="HxW of the latency measurement (default 512x1024)")
    p.add_argument("--latency-device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--proxies", default=None, help="zero-cost proxies, comma-separated, or none (default: all of "
                   f"nasseg.zero_cost.PROXIES, {','.join(PROXY_NAMES)})")
    p.add_argument("--target-tau", type=float, default=0.6, help="a rung is recommended when its whole 95 %% tau-b "
                   "interval is at or above this (default 0.6)")
    p.add_argument("--bootstrap", type=int, default=2000, help="resamples of each bootstrap interval (default 2000; "
                   "at least 100)")
    p.add_argument("--executor", choices=EXECUTORS, default="ray", help="ray or local (no Ray) (default ray)")
    p.add_argument("--seed", type=int, default=0, help="seed of the genome sample, the zero-cost proxies and the "
                   "bootstrap (default 0)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: RAY_ADDRESS, or local)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per training run (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per training run (default 0)")
    p.add_argument("--concurrency", type=int, default=None, help="runs training at once (default: as resources allow)")
    p.add_argument("--storage", required=True, help="study database: sqlite:///path.db or postgresql://...")
    p.add_argument("--study", required=True, help="study name (an existing fidelity study is resumed)")
    p.add_argument("--out", required=True, help="folder for fidelity.csv, fidelity.json, report.md and fidelity.png "
                   "(created; its parent must exist)")


def config_from_args(a: Any) -> Any:
    from nasseg.fidelity import FidelityConfig, parse_proxies, parse_rungs
    from nasseg.search import LatencySpec
    from nasseg.train import Recipe

    fields: dict[str, Any] = {"amp": a.gpus_per_trial > 0}
    if a.recipe is not None:
        try:
            extra = json.loads(a.recipe)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--recipe = {a.recipe!r} is not JSON ({e.msg}); valid: an object of recipe fields, "
                              "e.g. '{\"loss\": \"ce\"}'") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"--recipe = {a.recipe!r} is not a JSON object; valid: e.g. '{{\"loss\": \"ce\"}}'")
        taken = {"resolution": "--proxy-resolution", "batch_size": "--proxy-batch", "steps": "--rungs",
                 "warmup_steps": "--rungs", "eval_every": "--rungs"}
        for k in extra:
            if k in taken:
                raise ConfigError(f"--recipe: field {k!r} is set by {taken[k]}; valid: other recipe fields")
        fields.update(extra)
    if a.proxy_lr is not None:
        fields["lr"] = a.proxy_lr
    recipe = Recipe.from_dict(fields)
    return FidelityConfig(
        space=a.space, storage=a.storage, study=a.study, out=a.out, genomes=a.genomes, genomes_from=a.genomes_from,
        rungs=parse_rungs(a.rungs), seeds=a.seeds,
        proxy_resolution=parse_resolution(a.proxy_resolution, "--proxy-resolution"), proxy_batch=a.proxy_batch,
        recipe=recipe, dataset=a.dataset, latency_budget_ms=a.latency_budget_ms,
        latency=LatencySpec(device=a.latency_device,
                            resolution=parse_resolution(a.latency_resolution, "--latency-resolution")),
        target_tau=a.target_tau, proxies=None if a.proxies is None else parse_proxies(a.proxies),
        executor=a.executor, seed=a.seed,
        ray_address=a.ray_address, cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial,
        concurrency=a.concurrency, n_boot=a.bootstrap)


def print_result(result: Any, con: Any, title: str) -> None:
    from rich.table import Table

    from nasseg.fidelity.render import COLUMNS, table_rows

    t = Table(title=title)
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("score", "classes at IoU 0") else "right", overflow="fold")
    colour = {"yes": "green", "no": "red"}
    for cells in table_rows(result):
        cells[-1] = f"[{colour[cells[-1]]}]{cells[-1]}[/]" if cells[-1] in colour else cells[-1]
        t.add_row(*cells)
    con.print(t)
    con.print(f"recommendation (target tau-b interval >= {result['target_tau']:g}): {result['recommendation']}")
    if result.get("proxies_meeting_target"):
        con.print("zero-cost proxies that clear it too: " + ", ".join(result["proxies_meeting_target"]))


def run(a: Any) -> int:
    from rich.console import Console

    from nasseg.fidelity import run_fidelity, run_line

    cfg = config_from_args(a)
    con = Console(stderr=True, highlight=False)
    res = run_fidelity(cfg, log=lambda s: con.print(s, markup=False),
                       progress=lambda e: con.print(run_line(e), markup=False))
    r = res["result"]
    print_result(r, wide_console(), f"fidelity study {cfg.study!r}: {len(res['meta']['genome_ids'])} genomes, "
                                    f"{len(r['seeds'])} seed(s), ranked against {r['top_rung']} steps")
    c = res["counts"]
    con.print(f"wall {res['wall_seconds']:.1f} s: {c['trained']} run(s) trained ({res['train_seconds']:.1f} "
              f"worker-seconds), {c['already']} already finished, {c['failed']} failed; {c['zero_cost_computed']} "
              f"zero-cost score(s) computed ({res['zero_cost_seconds']:.1f} s)", markup=False)
    if res["missing_runs"]:
        con.print(f"{res['missing_runs']} of {c['planned']} run(s) have no result (failed); run the same command to "
                  "retry them", markup=False)
    con.print("wrote " + ", ".join(res["paths"].values()), markup=False)
    return 0
