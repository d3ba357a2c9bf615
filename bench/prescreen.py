"""How fast candidates are screened before training: sample + build + MACs + latency, per stage.

Part 1 draws ``--candidates`` members of the space the way the search driver does (``study.ask()`` on a
SQLite study, then ``space.sample(trial)``) and times each stage on its own: sample (Optuna's suggest
calls, each a write to the study DB), ``build``, fvcore MACs (``count_macs``: a JIT trace, i.e. one
real forward pass plus graph analysis) and latency (``measure_latency``: warm-up + timed runs on 1 CPU
thread).  One plain forward pass (1 thread, as both) is timed too, so the MAC count can be read in
forward passes, and the MAC count is repeated beside it with torch's default thread count (one per
core), which is what ``count_macs`` used before it fixed its count to 1 on CPU.  Candidates per
second = candidates / summed time of the four stages.
With ``--compare-warmup N`` each candidate's latency is also measured with N warm-up passes, side by
side (alternating order), to show whether the default 10 change the median.

Part 2 runs a real constrained search (local executor, short proxies on synthetic data) whose budget
is the median latency of part 1's candidates (so about half are rejected), and reports the share of
its wall time spent on rejected candidates (each rejected trial from start to end: sampling, building,
measuring, DB writes), on measuring the trained ones, and on training.

    python bench/prescreen.py                          # realtime.yaml at 256x512, 6 candidates, 6-trial search
    python bench/prescreen.py --candidates 12 --compare-warmup 2 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
from pathlib import Path

import torch
from _common import ROOT, CpuShare, Timer, check_device, device_arg, machine, median, parse_hw, table

from nasseg import search as S
from nasseg.build import build
from nasseg.cost import count_macs, measure_latency
from nasseg.space import load_space
from nasseg.train import Recipe

NUM_CLASSES = 11  # the synthetic dataset's classes, as the search builds candidates for it


def screen(args: argparse.Namespace, dev: torch.device, h: int, w: int) -> list[dict]:
    """Part 1: seconds of each stage, per candidate."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    shape = (1, 3, h, w)
    default_threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(storage=S.open_storage(f"sqlite:///{tmp}/prescreen.db"), study_name="p",
                                    sampler=S.make_sampler("random", args.seed), direction="maximize")
        for i in range(args.candidates):
            r: dict = {}
            with Timer() as t:
                trial = study.ask()
                genome = space.sample(trial)
            r["sample"] = t.wall
            with Timer() as t:
                net = build(genome, NUM_CLASSES)
            r["build"] = t.wall
            for threads in (None, default_threads) if i % 2 == 0 else (default_threads, None):
                with Timer(dev) as t:  # nasseg's default (1 thread on CPU), and torch's default beside it
                    mac = count_macs(net, shape, dev, threads=threads)
                r["macs" if threads is None else "macs_default_threads"], r["gmacs"] = t.wall, mac.macs / 1e9
            r["forward"] = one_forward(net, shape, dev)

            _latency_arms(args, net, shape, dev, r, reverse=i % 2 == 1)
            r["total"] = r["sample"] + r["build"] + r["macs"] + r["latency"]
            study.tell(trial, 0.0)
            rows.append(r)
    return rows


def one_forward(net: torch.nn.Module, shape: tuple, dev: torch.device) -> float:
    """Seconds of one plain forward pass (the second one), with the latency's thread count (1 on CPU)."""
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        ref = net.eval().to(dev)
        x = torch.zeros(shape, device=dev)
        with torch.inference_mode():
            ref(x)  # first pass: lazy initialisation, oneDNN primitive creation
            with Timer(dev) as t:
                ref(x)
        return t.wall
    finally:
        torch.set_num_threads(threads)


def _latency_arms(args: argparse.Namespace, net: torch.nn.Module, shape: tuple, dev: torch.device, r: dict,
                  reverse: bool) -> None:
    """The latency stage (timed), and with --compare-warmup the same with fewer warm-up passes beside it."""

    def full() -> None:
        with Timer(dev) as t:
            rec = measure_latency(net, shape, dev, warmup=args.warmup, runs=args.runs)
        r["latency"], r["median_ms"], r["cv"] = t.wall, rec.median_ms, rec.cv

    def short() -> None:
        r["short_median_ms"] = measure_latency(net, shape, dev, warmup=args.compare_warmup, runs=args.runs).median_ms

    arms = (full, short) if args.compare_warmup is not None else (full,)
    for arm in arms[::-1] if reverse else arms:
        arm()


def constrained_search(args: argparse.Namespace, budget_ms: float, h: int, w: int) -> dict:
    """Part 2: a real constrained search; where its wall time goes."""
    import optuna

    ph, pw = parse_hw(args.proxy_size, "--proxy-size")
    recipe = Recipe(resolution=(ph, pw), steps=args.proxy_steps, batch_size=args.proxy_batch, eval_every=0,
                    amp=False, train_length=max(args.proxy_batch * 4, 16), val_length=args.proxy_batch,
                    num_workers=0, loss="ce")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/search.db"
        cfg = S.SearchConfig(space=args.space, storage=url, study="prescreen", trials=args.trials,
                             latency_budget_ms=budget_ms,
                             latency=S.LatencySpec(device=args.device, resolution=(h, w), runs=args.runs,
                                                   warmup=args.warmup),
                             sampler="random", seed=args.seed + 1, recipe=recipe, executor="local",
                             progress=False, artifacts=f"{tmp}/artifacts")
        summary = S.search(cfg, log=lambda s: None)
        study = S.load_study(url, "prescreen")
        rejected_s = trained_s = measure_trained_s = 0.0
        counts = {"rejected": 0, "trained": 0, "other": 0}
        for t in study.get_trials(deepcopy=False):
            span = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
            status = t.user_attrs.get(S.STATUS_KEY)
            if status == "rejected":
                rejected_s += span
                counts["rejected"] += 1
            elif status == "trained":
                trained_s += t.user_attrs.get("wall_seconds", 0.0)
                measure_trained_s += span - t.user_attrs.get("wall_seconds", 0.0)
                counts["trained"] += 1
            else:
                counts["other"] += 1
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {"wall": summary["wall_seconds"], "rejected": rejected_s, "trained": trained_s,
            "measure_trained": measure_trained_s, "counts": counts}


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    device_arg(ap)
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "realtime.yaml"))
    ap.add_argument("--size", default="256x512", help="latency and MAC resolution HxW (default 256x512)")
    ap.add_argument("--candidates", type=int, default=6, help="part 1: candidates to screen (default 6)")
    ap.add_argument("--runs", type=int, default=30, help="timed latency runs (>= 30)")
    ap.add_argument("--warmup", type=int, default=10, help="latency warm-up passes (the search's default 10)")
    ap.add_argument("--compare-warmup", type=int, default=None, metavar="N",
                    help="also measure each candidate with N warm-up passes, side by side")
    ap.add_argument("--trials", type=int, default=6, help="part 2: trials of the constrained search (0: skip)")
    ap.add_argument("--budget-ms", type=float, default=None, help="part 2 budget (default: part 1's median)")
    ap.add_argument("--proxy-size", default="64x128")
    ap.add_argument("--proxy-steps", type=int, default=10)
    ap.add_argument("--proxy-batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile part 1 and print the top functions")
    args = ap.parse_args(argv)
    dev = check_device(args.device)
    h, w = parse_hw(args.size)
    print(machine(dev))
    load = CpuShare().start()
    print(f"space {Path(args.space).name}, {h}x{w}, latency: {args.warmup} warm-up + {args.runs} runs; "
          f"MACs, forward and latency on {'1 thread' if dev.type == 'cpu' else args.device}; 'MACs s @"
          f"{torch.get_num_threads()}': the same MAC count with torch's default {torch.get_num_threads()} threads")

    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    rows = screen(args, dev, h, w)
    if prof:
        prof.disable()
    stages = ("sample", "build", "macs", "latency")
    print("\npart 1: seconds per candidate and stage")
    header = ["#", "GMACs", "lat ms", "CV %", "sample s", "build s", "MACs s", "latency s", "1 fwd s",
              "MACs/fwd", "total s", f"MACs s @{torch.get_num_threads()}"]
    if args.compare_warmup is not None:
        header.append(f"wu{args.compare_warmup}/wu{args.warmup}")
    body = []
    for i, r in enumerate(rows):
        row = [i, r["gmacs"], r["median_ms"], 100 * r["cv"], *(r[s] for s in stages), r["forward"],
               r["macs"] / r["forward"], r["total"], r["macs_default_threads"]]
        if args.compare_warmup is not None:
            row.append(r["short_median_ms"] / r["median_ms"])
        body.append(row)
    total = sum(r["total"] for r in rows)
    sums = {s: sum(r[s] for r in rows) for s in stages}
    body.append(["share", "", "", "", *(f"{100 * sums[s] / total:.1f}%" for s in stages), "", "", "100%",
                 f"{median(r['macs_default_threads'] / r['macs'] for r in rows):.2f}x"])
    print(table(header, body))
    rate = len(rows) / total
    print(f"candidates/s = {rate:.3f} (target >= 5); without latency {len(rows) / (total - sums['latency']):.2f}/s; "
          f"latency alone is (warm-up + runs) x forward >= {args.warmup + args.runs} x "
          f"{1e3 * median(r['forward'] for r in rows):.0f} ms (median forward)")
    if args.compare_warmup is not None:
        ratios = [r["short_median_ms"] / r["median_ms"] for r in rows]
        print(f"median latency with {args.compare_warmup} vs {args.warmup} warm-up passes: ratio "
              f"{median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
        print("\ncProfile of part 1 (top 15 by own time):")
        print("\n".join(s.getvalue().splitlines()[6:26]))

    if args.trials > 0:
        budget = args.budget_ms or median(r["median_ms"] for r in rows)
        res = constrained_search(args, budget, h, w)
        wall = res["wall"]
        c = res["counts"]
        print(f"\npart 2: constrained search, {args.trials} trials, budget {budget:.1f} ms at {h}x{w}, proxies "
              f"{args.proxy_steps} steps x {args.proxy_batch} at {args.proxy_size}: {c['trained']} trained, "
              f"{c['rejected']} rejected, {c['other']} other")
        other = wall - res["rejected"] - res["trained"] - res["measure_trained"]
        print(table(["part", "seconds", "share of wall"], [
            ["rejected candidates (sample, build, measure, DB)", res["rejected"],
             f"{100 * res['rejected'] / wall:.1f}%"],
            ["measuring the trained ones", res["measure_trained"], f"{100 * res['measure_trained'] / wall:.1f}%"],
            ["training proxies", res["trained"], f"{100 * res['trained'] / wall:.1f}%"],
            ["rest (start-up, orchestration)", other, f"{100 * other / wall:.1f}%"],
            ["wall", wall, "100%"],
        ], fmt=".1f"))
        print(f"fraction of the search's wall time on rejected candidates = {res['rejected'] / wall:.3f}")
    print(load.report())
    print(f"ratio: candidates/s = {rate:.3f} (target >= 5)")
    return rate


if __name__ == "__main__":
    main()
