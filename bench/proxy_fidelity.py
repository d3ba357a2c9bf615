"""Proxy fidelity of candidate proxy recipes: does a short proxy rank genomes as 5x its training does?

For each candidate recipe given with ``--recipe`` every selected genome of the space is trained twice from
the same seed: at the recipe's ``steps`` (N, the proxy) and at ``factor`` x N (the reference; warm-up
scaled with it, everything else the same).  The proxy's mIoU ranking is compared with the reference's:
Kendall tau-b and Spearman with paired-bootstrap 95 % intervals over genomes (nasseg.fidelity_stats),
seconds per run (thread CPU time of the training process, which other load on a shared machine barely
moves, and wall time), and the classes whose IoU is 0 in every genome.

Genomes: ``--pool`` candidates are drawn from the space with Optuna's RandomSampler(seed=--sample-seed);
each is timed with nasseg.cost.measure_latency at ``--latency-resolution`` on 1 thread and kept when its
*fastest* run is within ``--budget-ms`` (the minimum, not the median: on a loaded machine the median
of a 25 ms network is inflated 1.5-2x by other processes, the minimum much less; ``--no-latency-filter``
skips this).  From the kept ones the genomes are picked greedily, in draw order, each time the one whose
block choices in the searched stages (and decoder fusion / context) have appeared least so far, so every
block type appears; the first G of a larger selection are the G of a smaller one, so screening results on
8 genomes are reused when 12 are asked for.

A recipe is ``key=value`` pairs separated by commas: any nasseg.train.Recipe field (``resolution=64x128``,
``lr=0.05``, ``optimizer=adamw``, ``schedule=cosine``, ``loss=ce`` ...), plus

* ``warmup=F``   warm-up as a fraction of the steps (default 0.05, as ``nasseg search`` does:
                 ``warmup_steps = steps // 20``); ``warmup_steps`` itself is not accepted (it would not scale)
* ``x_loss=wce`` (prototype, bench only) class-weighted cross-entropy: weight_c = (median f / f_c) ** p,
                 f_c the pixel frequency of class c in 256 training scenes at the recipe's resolution,
                 clipped to [floor, 10]; ``x_wce_power=p`` (default 0.5), ``x_wce_floor=floor`` (default 0.2;
                 1 up-weights the rare classes only)

Fields not given keep the values ``nasseg search`` gives the demo (Recipe defaults, amp off on CPU,
eval only at the end).  Every finished run is appended at once as one JSON line to ``--results``
(default runs/proxy_fidelity.jsonl), keyed by recipe, steps, genome and seed, and never recomputed: a
killed run loses only the trainings in flight, and later calls (more genomes, more recipes, more seeds)
add to the same file.  Latency records of the pool are cached there too.  ``--report`` prints the tables
from the file without training anything; ``--only proxy`` trains only the N-step runs (a quick look at
what a recipe learns: mean IoU per class, for recipes with fewer than 3 proxy/reference pairs).

    python bench/proxy_fidelity.py --genomes 8 --recipe "resolution=64x128,steps=100"   # today's demo proxy
    python bench/proxy_fidelity.py --genomes 12 --recipe "resolution=64x128,steps=100" \\
        --recipe "resolution=64x128,steps=100,lr=0.05"
    python bench/proxy_fidelity.py --report --genomes 12 --recipe "resolution=64x128,steps=100"
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime
import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import ROOT, CpuShare, load_average, machine, median, table

PROTO_KEYS = {"x_loss": ("wce",), "x_wce_power": None, "x_wce_floor": None}
DEMO = {"resolution": (64, 128), "steps": 100, "batch_size": 8, "eval_every": 0, "amp": False}


# ------------------------------------------------------------------------------------------------ recipes
def parse_recipe(text: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    """'k=v,...' -> (Recipe fields, prototype knobs, warm-up fraction); Recipe validates the fields."""
    from nasseg.train import Recipe

    names = {f.name: f for f in dataclasses.fields(Recipe)}
    fields: dict[str, Any] = dict(DEMO)
    proto: dict[str, Any] = {}
    warmup = 0.05
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            sys.exit(f"--recipe {text!r}: {part!r} is not key=value")
        k, v = (s.strip() for s in part.split("=", 1))
        if k == "warmup":
            warmup = float(v)
        elif k == "warmup_steps":
            sys.exit("--recipe: give warm-up as warmup=FRACTION of the steps (it scales with the reference)")
        elif k in PROTO_KEYS:
            choices = PROTO_KEYS[k]
            if choices is not None and v not in choices:
                sys.exit(f"--recipe: {k}={v!r}; valid: {', '.join(choices)}")
            proto[k] = v if choices is not None else float(v)
        elif k in names:
            fields[k] = _value(k, v, names[k].type)
        else:
            sys.exit(f"--recipe: unknown key {k!r}; valid: Recipe fields, warmup, {', '.join(PROTO_KEYS)}")
    return fields, proto, warmup


def _value(key: str, v: str, typ: Any) -> Any:
    typ = str(typ)
    if key in ("resolution", "scale"):
        parts = v.lower().replace("x", " ").replace(":", " ").split()
        return tuple(int(p) if key == "resolution" else float(p) for p in parts)
    if "bool" in typ:
        return v.lower() in ("1", "true", "yes", "on")
    if "int" in typ and "float" not in typ and key != "eval_batches":
        return int(v)
    if "float" in typ:
        return float(v)
    return v


def make_recipe(fields: dict[str, Any], warmup: float, factor: int = 1):
    from nasseg.train import Recipe

    steps = int(fields["steps"]) * factor
    return Recipe(**{**fields, "steps": steps, "warmup_steps": min(steps - 1, max(0, int(steps * warmup)))})


def recipe_key(recipe, proto: dict[str, Any]) -> str:
    """recipe_id, extended by the prototype knobs when there are any."""
    if not proto:
        return recipe.recipe_id
    text = recipe.to_json() + json.dumps(proto, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------------ storage
class Store:
    """Append-only JSON lines; one record per finished measurement (safe for one writer at a time)."""

    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.runs: dict[tuple, dict] = {}
        self.latency: dict[tuple, dict] = {}
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # a line cut short by a kill: end it, so appends stay whole
                with path.open("a", encoding="utf-8") as f:
                    f.write("\n")
            for n, line in enumerate(text.splitlines()):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: ignore it
                    print(f"{path}:{n + 1}: unreadable line ignored", file=sys.stderr)
                    continue
                self._index(rec)

    def _index(self, rec: dict) -> None:
        if rec.get("kind") == "run":
            self.runs[(rec["recipe_key"], rec["genome_id"], rec["seed"])] = rec
        elif rec.get("kind") == "latency":
            self.latency[(rec["genome_id"], tuple(rec["resolution"]))] = rec

    def add(self, rec: dict) -> None:
        line = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._index(rec)


# ------------------------------------------------------------------------------------------------ genomes
def _searched_choices(genome) -> list[tuple[str, str]]:
    out = [(f"stage{i}", s.block) for i, s in enumerate(genome.stages) if i >= 2]
    d = genome.decoder
    if d.kind == "chain":
        out += [("context", d.context.name), ("fusion", d.fusions[0].name if d.fusions else "-")]
    return out


def select_genomes(args, store: Store) -> list:
    import optuna
    import torch

    from nasseg.build import build
    from nasseg.cost import measure_latency
    from nasseg.genome import genome_id
    from nasseg.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.sample_seed))
    res = tuple(args.latency_resolution)
    pool, seen = [], set()
    for _ in range(args.pool):
        g = space.sample(study.ask())
        gid = genome_id(g)
        if gid in seen:
            continue
        seen.add(gid)
        if not args.no_latency_filter:
            if (gid, res) not in store.latency:
                torch.manual_seed(0)
                rec = measure_latency(build(g, 11), (1, 3, *res), warmup=3, runs=30, threads=1)
                store.add({"kind": "latency", "genome_id": gid, "resolution": list(res), "median_ms": rec.median_ms,
                           "min_ms": rec.min_ms, "load_average": load_average(),
                           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
            lat = store.latency[(gid, res)]
            if lat["min_ms"] > args.budget_ms:
                continue
        pool.append(g)
    picked: list = []
    counts: Counter = Counter()
    while pool and len(picked) < args.genomes:
        best = min(range(len(pool)), key=lambda i: (sum(counts[c] for c in _searched_choices(pool[i])), i))
        g = pool.pop(best)
        picked.append(g)
        counts.update(_searched_choices(g))
    if len(picked) < args.genomes:
        print(f"only {len(picked)} genomes of {args.pool} drawn are within the budget; raise --pool", file=sys.stderr)
    return picked


# ------------------------------------------------------------------------------------------------ training
_WEIGHTS: dict[tuple, Any] = {}


def _class_weights(resolution: tuple[int, int], power: float, floor: float = 0.2):
    import torch

    from nasseg.data.synthetic import NUM_CLASSES, render_synthetic

    key = (resolution, power, floor)
    if key not in _WEIGHTS:
        _, labels = render_synthetic(range(256), "train", resolution, seed=12345)
        freq = torch.bincount(labels.flatten(), minlength=NUM_CLASSES)[:NUM_CLASSES].double()
        freq = freq / freq.sum()
        w = (freq.median() / freq.clamp(min=1e-6)) ** power
        _WEIGHTS[key] = w.clamp(floor, 10.0).float()
    return _WEIGHTS[key]


def _train_one(task: dict) -> dict:
    """Worker: one proxy_train run; returns its record (the parent appends it)."""
    import torch
    import torch.nn.functional as F

    import nasseg.train as nt
    from nasseg.genome import from_json
    from nasseg.train import Recipe, proxy_train

    torch.set_num_threads(1)
    recipe = Recipe.from_dict(task["recipe"])
    proto = task["proto"]
    saved = nt._Criterion.segmentation
    if proto.get("x_loss") == "wce":
        weight = _class_weights(recipe.resolution, float(proto.get("x_wce_power", 0.5)),
                                float(proto.get("x_wce_floor", 0.2)))

        def segmentation(self, logits, labels):  # noqa: ANN001
            if logits.shape[-2:] != labels.shape[-2:]:
                logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            return F.cross_entropy(logits.float(), labels, weight=weight.to(logits.device),
                                   ignore_index=self.ignore_index)

        nt._Criterion.segmentation = segmentation
    load0 = load_average()
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    try:
        m = proxy_train(from_json(task["genome"]), recipe, "synthetic", task["seed"], device="cpu")
        error = None
    except Exception as e:  # noqa: BLE001 -- a diverged or failing proxy is a result too
        m, error = None, f"{type(e).__name__}: {e}"
    finally:
        nt._Criterion.segmentation = saved
    rec = {
        "kind": "run", "recipe_key": task["recipe_key"], "label": task["label"], "role": task["role"],
        "recipe": task["recipe"], "proto": proto, "genome_id": task["genome_id"], "genome": task["genome"],
        "seed": task["seed"], "steps": recipe.steps, "wall_seconds": time.perf_counter() - wall0,
        "cpu_seconds": time.thread_time() - cpu0, "load_average_start": load0, "load_average_end": load_average(),
        "host": platform.node(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "error": error,
    }
    if m is not None:
        d = m.to_dict()
        rec.update({k: d[k] for k in ("miou", "per_class_iou", "pixel_acc", "train_seconds", "loss_curve")})
    return rec


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------ report
def _load_triple(text: str) -> float:
    try:
        return float(text.split("/")[0])
    except (ValueError, IndexError):
        return math.nan


def summarise(label: str, fields, proto, warmup, genomes, seeds, factor, store: Store) -> dict | None:
    from nasseg.data.synthetic import CLASS_NAMES
    from nasseg.fidelity_stats import rank_agreement, seed_to_seed_tau
    from nasseg.genome import genome_id

    low_r, top_r = make_recipe(fields, warmup), make_recipe(fields, warmup, factor)
    low_k, top_k = recipe_key(low_r, proto), recipe_key(top_r, proto)
    low, top, low_runs, top_runs = {}, {}, [], []
    for g in genomes:
        gid = genome_id(g)
        a = [store.runs.get((low_k, gid, s)) for s in seeds]
        b = [store.runs.get((top_k, gid, s)) for s in seeds]
        if any(r is None or r.get("error") or r.get("miou") is None for r in a + b):
            continue
        low[gid], top[gid] = [r["miou"] for r in a], [r["miou"] for r in b]
        low_runs += a
        top_runs += b
    def zeros(runs: list[dict]) -> str:
        """Classes at IoU 0 in every run, and the mean number of classes at 0 per run."""
        z = [c for c in range(len(CLASS_NAMES)) if all((r["per_class_iou"][c] or 0.0) == 0.0 for r in runs)]
        per_run = statistics.fmean(sum((v or 0.0) == 0.0 for v in r["per_class_iou"]) for r in runs)
        return f"{','.join(CLASS_NAMES[c] for c in z) or 'none'} (per run {per_run:.1f} of {len(CLASS_NAMES)})"

    if len(low) < 3:  # too few pairs to rank: describe the proxies alone (e.g. after --only proxy)
        alone = [r for g in genomes for s in seeds
                 if (r := store.runs.get((low_k, genome_id(g), s))) is not None and r.get("miou") is not None]
        if not alone:
            return None
        return {"label": label, "proxies_only": True, "n": len(alone),
                "miou_low": statistics.fmean(r["miou"] for r in alone),
                "cpu_low": median(r["cpu_seconds"] for r in alone),
                "wall_low": median(r["wall_seconds"] for r in alone),
                "zeros_low": zeros(alone),
                "per_class": [statistics.fmean((r["per_class_iou"][c] or 0.0) for r in alone)
                              for c in range(len(CLASS_NAMES))]}
    ra = rank_agreement(low, top, n_boot=2000, seed=0)

    loads = [_load_triple(r[k]) for r in low_runs + top_runs for k in ("load_average_start", "load_average_end")]
    loads = [v for v in loads if v == v]
    out = {
        "label": label, "n": ra.n, "seeds": len(seeds), "tau": ra.tau, "tau_low": ra.tau_low, "tau_high": ra.tau_high,
        "rho": ra.spearman, "rho_low": ra.spearman_low, "rho_high": ra.spearman_high,
        "cpu_low": median(r["cpu_seconds"] for r in low_runs), "cpu_top": median(r["cpu_seconds"] for r in top_runs),
        "wall_low": median(r["wall_seconds"] for r in low_runs),
        "wall_top": median(r["wall_seconds"] for r in top_runs),
        "miou_low": statistics.fmean(statistics.fmean(v) for v in low.values()),
        "miou_top": statistics.fmean(statistics.fmean(v) for v in top.values()),
        "sd_low": statistics.stdev(statistics.fmean(v) for v in low.values()),
        "sd_top": statistics.stdev(statistics.fmean(v) for v in top.values()),
        "zeros_low": zeros(low_runs), "zeros_top": zeros(top_runs),
        "load": f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?",
        "s2s": seed_to_seed_tau(low) if len(seeds) > 1 else math.nan,
        "per_genome": [(gid, statistics.fmean(low[gid]), statistics.fmean(top[gid])) for gid in low],
        "low_key": low_k, "top_key": top_k,
    }
    return out


def print_report(summaries: list[dict], factor: int, verbose: bool) -> None:
    from nasseg.data.synthetic import CLASS_NAMES

    alone = [s for s in summaries if s.get("proxies_only")]
    summaries = [s for s in summaries if not s.get("proxies_only")]
    if alone:
        print("proxies without enough references to rank (fewer than 3 pairs): mean IoU per class at N")
        print(table(["recipe", "runs", "CPU s N", "wall s N", "mIoU N", *(n[:8] for n in CLASS_NAMES)],
                    [[s["label"], s["n"], s["cpu_low"], s["wall_low"], s["miou_low"], *s["per_class"]]
                     for s in alone], fmt=".2f"))
    if not summaries:
        return
    rows = []
    for s in summaries:
        rows.append([s["label"], s["n"], f"{s['tau']:.2f} [{s['tau_low']:.2f}, {s['tau_high']:.2f}]",
                     f"{s['rho']:.2f} [{s['rho_low']:.2f}, {s['rho_high']:.2f}]", s["cpu_low"], s["cpu_top"],
                     s["wall_low"], s["wall_top"], f"{s['miou_low']:.3f}±{s['sd_low']:.3f}",
                     f"{s['miou_top']:.3f}±{s['sd_top']:.3f}", s["load"]])
    print(table(["recipe", "n", "tau-b [95% CI]", "Spearman [95% CI]", "CPU s N", f"CPU s {factor}N",
                 "wall s N", f"wall s {factor}N", "mIoU N (mean±sd)", f"mIoU {factor}N", "load avg"], rows))
    for s in summaries:
        print(f"  {s['label']}: IoU 0 in every genome at N: {s['zeros_low']}; at {factor}N: {s['zeros_top']}"
              + ("" if s["s2s"] != s["s2s"] else f"; seed-to-seed tau at N {s['s2s']:.2f}"))
        if verbose:
            for gid, a, b in sorted(s["per_genome"], key=lambda t: -t[2]):
                print(f"    {gid}  N {a:.4f}  {factor}N {b:.4f}")


# ------------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", action="append", default=[], help="candidate recipe 'k=v,...' (repeatable; "
                    "default: today's demo proxy)")
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "realtime.yaml"))
    ap.add_argument("--genomes", type=int, default=12, help="genomes G (default 12)")
    ap.add_argument("--pool", type=int, default=64, help="genomes drawn to select from (default 64)")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--budget-ms", type=float, default=25.0, help="the demo's latency budget (default 25)")
    ap.add_argument("--latency-resolution", default="128x256")
    ap.add_argument("--no-latency-filter", action="store_true")
    ap.add_argument("--factor", type=int, default=5, help="reference steps = factor x N (default 5)")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    ap.add_argument("--jobs", type=int, default=2, help="training processes at once (default 2), 1 thread each")
    ap.add_argument("--results", default=str(ROOT / "runs" / "proxy_fidelity.jsonl"))
    ap.add_argument("--only", choices=("proxy", "reference"), default=None, help="train only the N-step proxies "
                    "(a quick look at a recipe's learning: mIoU, classes at 0) or only the references")
    ap.add_argument("--report", action="store_true", help="only print the tables from --results")
    ap.add_argument("--verbose", action="store_true", help="also print every genome's mIoU pair")
    args = ap.parse_args(argv)
    args.latency_resolution = tuple(int(v) for v in args.latency_resolution.lower().split("x"))
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipe or ["resolution=64x128,steps=100"]

    import torch

    torch.set_num_threads(1)
    from nasseg.genome import genome_id, to_json, to_string

    store = Store(Path(args.results))
    print(machine("cpu"))
    genomes = select_genomes(args, store)
    print(f"{len(genomes)} genomes from {Path(args.space).name} (pool {args.pool}, sample seed {args.sample_seed}"
          + ("" if args.no_latency_filter else f", fastest of 30 runs <= {args.budget_ms} ms at "
             f"{args.latency_resolution[0]}x{args.latency_resolution[1]}, 1 thread") + ")")
    for g in genomes:
        lat = store.latency.get((genome_id(g), args.latency_resolution))
        ms = f"{lat['min_ms']:.1f}/{lat['median_ms']:.1f} ms" if lat else "-"
        print(f"  {genome_id(g)}  {ms:>13}  {to_string(g)[:150]}")

    parsed = [(text, *parse_recipe(text)) for text in recipes]
    tasks = []
    for text, fields, proto, warmup in parsed:
        for g in genomes:
            for s in seeds:
                for role, f in (("reference", args.factor), ("proxy", 1)):
                    if args.only not in (None, role):
                        continue
                    r = make_recipe(fields, warmup, f)
                    key = recipe_key(r, proto)
                    if (key, genome_id(g), s) in store.runs:
                        continue
                    tasks.append({"recipe": r.to_dict(), "proto": proto, "recipe_key": key, "label": text,
                                  "role": role, "genome": to_json(g), "genome_id": genome_id(g), "seed": s})
    if tasks and not args.report:
        print(f"{len(tasks)} trainings to run, {args.jobs} at a time (results appended to {args.results})",
              flush=True)
        share = CpuShare().start()
        started = time.perf_counter()
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(_train_one, t): t for t in tasks}
            for i, fut in enumerate(cf.as_completed(futures), 1):
                rec = fut.result()
                store.add(rec)
                miou = "error: " + rec["error"] if rec["error"] else f"mIoU {rec['miou']:.4f}"
                print(f"[{i}/{len(tasks)} {time.perf_counter() - started:6.0f} s] {rec['label']} {rec['role']} "
                      f"{rec['steps']} steps {rec['genome_id']}: {miou}, CPU {rec['cpu_seconds']:.1f} s, wall "
                      f"{rec['wall_seconds']:.1f} s, load {rec['load_average_end']}", flush=True)
        print(share.report())
    summaries = [s for text, fields, proto, warmup in parsed
                 if (s := summarise(text, fields, proto, warmup, genomes, seeds, args.factor, store)) is not None]
    if summaries:
        print(f"\nrank agreement of each proxy (N steps) with {args.factor}N steps of the same recipe, same seed; "
              f"seconds are medians per run (CPU: the training process's thread time)")
        print_report(summaries, args.factor, args.verbose)
    return summaries


if __name__ == "__main__":
    main()
