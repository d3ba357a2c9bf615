"""How fast candidates are screened before training: sample + build + MACs + latency.

Part 1, end to end (what the search did for every candidate before it had a cost table, and still does
for every candidate it may train): ``--candidates`` members of the space drawn as the driver draws them
(``study.ask()`` on a SQLite study, then ``space.sample(trial)``), each built, its MACs counted by fvcore
(a JIT trace: one real forward pass plus graph analysis) and its latency recorded (``measure_latency``:
warm-up + >= 30 timed runs on 1 CPU thread).  One plain forward pass is timed too, so the latency stage
can be read in forward passes.

Part 2, with the cost table (:mod:`nasseg.screen`, what ``nasseg search`` does by default): ``--screen``
candidates drawn the same way, each predicted by ``CostTable.predict`` (built on the meta device; units
the table has not seen are measured, on 1 thread, 2 + 7 calls each, and fvcore-counted).  The table
starts empty; candidates/s is reported per block of candidates, so the cold start and the steady state
are both visible.  Part 1's candidates are then predicted too and compared with their end-to-end
records: the calibration factor (median measured / table sum) and the worst error after calibration,
which is the slack the search gives a prediction before it may reject.

Part 3 runs the same constrained search (budget 0.7 x part 1's median latency) twice, side by side in this
process: ``--no-screen`` and screening (same sampler and seed, so the same candidates in the same order).
It reports each arm's wall time and the share spent on rejected candidates, and checks every candidate the
screening arm rejected on a prediction against its end-to-end measurement in the other arm (a wrong
rejection would be listed).

    python bench/prescreen.py                            # realtime.yaml at 256x512
    python bench/prescreen.py --screen 200 --trials 0    # a longer table fill, no search
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
from nasseg import study as St
from nasseg.build import build
from nasseg.cost import count_macs, measure_latency
from nasseg.screen import Calibration, CostTable
from nasseg.space import load_space
from nasseg.train import Recipe

NUM_CLASSES = 11  # the synthetic dataset's classes, as the search builds candidates for it


def _study(tmp: str, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=St.open_storage(f"sqlite:///{tmp}/prescreen.db"), study_name="p",
                               sampler=S.make_sampler("random", seed), direction="maximize")


def end_to_end(args: argparse.Namespace, dev: torch.device, shape: tuple) -> list[dict]:
    """Part 1: seconds of each stage per candidate, measured end to end."""
    space = load_space(args.space)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        study = _study(tmp, args.seed)
        for _ in range(args.candidates):
            r: dict = {}
            with Timer() as t:
                trial = study.ask()
                r["genome"] = space.sample(trial)
            r["sample"] = t.wall
            with Timer() as t:
                net = build(r["genome"], NUM_CLASSES)
            r["build"] = t.wall
            with Timer(dev) as t:
                r["gmacs"] = count_macs(net, shape, dev).macs / 1e9
            r["macs"] = t.wall
            r["forward"] = one_forward(net, shape, dev)
            with Timer(dev) as t:
                rec = measure_latency(net, shape, dev, warmup=args.warmup, runs=args.runs)
            r["latency"], r["median_ms"], r["cv"] = t.wall, rec.median_ms, rec.cv
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


def with_table(args: argparse.Namespace, dev: torch.device, shape: tuple) -> tuple[CostTable, list[dict]]:
    """Part 2: sample + predict per candidate, from an empty table."""
    space = load_space(args.space)
    tab = CostTable(dev)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        study = _study(tmp, args.seed + 100)
        for _ in range(args.screen):
            with Timer() as t:
                trial = study.ask()
                genome = space.sample(trial)
            sample = t.wall
            p = tab.predict(genome, NUM_CLASSES, shape)
            study.tell(trial, 0.0)
            rows.append({"sample": sample, "predict": p.seconds, "new": p.new_units, "units": p.units,
                         "total": sample + p.seconds})
    return tab, rows


def constrained_search(args: argparse.Namespace, budget_ms: float, h: int, w: int, screen: bool) -> dict:
    """Part 3, one arm: a real constrained search; where its wall time goes, and every trial's latency."""
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
                             progress=False, artifacts=f"{tmp}/artifacts", screen=S.ScreenSpec() if screen else None)
        summary = S.search(cfg, log=lambda s: None)
        study = St.load_study(url, "prescreen")
        res = {"wall": summary["wall_seconds"], "rejected": 0.0, "n_rejected": 0, "n_trained": 0,
               "screened": summary["screened"], "latency": {}, "predicted": {}, "calibration": Calibration()}
        for t in study.get_trials(deepcopy=False):
            span = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
            ua = t.user_attrs
            if ua.get(S.STATUS_KEY) == "rejected":
                res["rejected"] += span
                res["n_rejected"] += 1
            elif ua.get(S.STATUS_KEY) == "trained":
                res["n_trained"] += 1
            if "latency_ms" in ua:
                target = res["predicted"] if ua["latency"].get("method") == "predicted" else res["latency"]
                target[ua["genome_id"]] = ua["latency_ms"]
                if ua["latency"].get("method") == "measured" and "latency_table_ms" in ua and "reused_from" not in ua:
                    res["calibration"].add(ua["latency_table_ms"], ua["latency_ms"])
    return res


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    device_arg(ap)
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "realtime.yaml"))
    ap.add_argument("--size", default="256x512", help="latency and MAC resolution HxW (default 256x512)")
    ap.add_argument("--candidates", type=int, default=8, help="part 1: candidates measured end to end (default 8)")
    ap.add_argument("--screen", type=int, default=160, help="part 2: candidates predicted by the table (default 160)")
    ap.add_argument("--block", type=int, default=40, help="part 2: candidates per reported block (default 40)")
    ap.add_argument("--runs", type=int, default=30, help="timed latency runs (>= 30)")
    ap.add_argument("--warmup", type=int, default=10, help="latency warm-up passes (the search's default 10)")
    ap.add_argument("--trials", type=int, default=20, help="part 3: trials of each constrained search (0: skip)")
    ap.add_argument("--budget-ms", type=float, default=None, help="part 3 budget (default: 0.7 x part 1's median, "
                    "so that some candidates are far over it)")
    ap.add_argument("--proxy-size", default="64x128")
    ap.add_argument("--proxy-steps", type=int, default=10)
    ap.add_argument("--proxy-batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile part 2 and print the top functions")
    args = ap.parse_args(argv)
    dev = check_device(args.device)
    h, w = parse_hw(args.size)
    shape = (1, 3, h, w)
    print(machine(dev))
    load = CpuShare().start()
    print(f"space {Path(args.space).name}, {h}x{w}; end-to-end latency: {args.warmup} warm-up + {args.runs} runs; "
          f"{'1 thread' if dev.type == 'cpu' else args.device}")

    rows = end_to_end(args, dev, shape)
    stages = ("sample", "build", "macs", "latency")
    print("\npart 1: end to end, seconds per candidate and stage")
    body = [[i, r["gmacs"], r["median_ms"], 100 * r["cv"], *(r[s] for s in stages), r["forward"], r["total"]]
            for i, r in enumerate(rows)]
    total = sum(r["total"] for r in rows)
    sums = {s: sum(r[s] for r in rows) for s in stages}
    body.append(["share", "", "", "", *(f"{100 * sums[s] / total:.1f}%" for s in stages), "", "100%"])
    print(table(["#", "GMACs", "lat ms", "CV %", "sample s", "build s", "MACs s", "latency s", "1 fwd s", "total s"],
                body))
    full_rate = len(rows) / total
    print(f"end to end: {full_rate:.3f} candidates/s; the latency stage alone is (warm-up + runs) x forward = "
          f"{args.warmup + args.runs} x {1e3 * median(r['forward'] for r in rows):.0f} ms (median forward)")

    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    tab, srows = with_table(args, dev, shape)
    if prof:
        prof.disable()
    print(f"\npart 2: with the cost table (empty at the start), {args.screen} candidates; unit latency "
          f"{tab.warmup} warm-up + {tab.runs} calls on {tab.threads} thread(s)")
    body, warm_rate = [], float("nan")
    for b in range(0, len(srows), args.block):
        blk = srows[b:b + args.block]
        t = sum(r["total"] for r in blk)
        warm_rate = len(blk) / t
        body.append([f"{b + 1}-{b + len(blk)}", sum(r["new"] for r in blk), sum(r["units"] for r in blk),
                     1e3 * median(r["sample"] for r in blk), 1e3 * median(r["predict"] for r in blk), warm_rate])
    print(table(["candidates", "new units", "unit calls", "sample ms (med)", "predict ms (med)", "candidates/s"],
                body))
    print(f"table: {len(tab)} distinct units after {len(srows)} candidates "
          f"({tab.measure_seconds:.1f} s measuring them)")

    # part 1's candidates through the (now larger) table: how good is the prediction?
    cal = Calibration()
    preds = [tab.predict(r["genome"], NUM_CLASSES, shape) for r in rows]
    for r, p in zip(rows, preds):
        cal.add(p.table_ms, r["median_ms"])
    print(table(["#", "table ms", "measured ms", "measured / table", "after calibration"],
                [[i, p.table_ms, r["median_ms"], r["median_ms"] / p.table_ms,
                  r["median_ms"] / p.table_ms / cal.factor - 1] for i, (r, p) in enumerate(zip(rows, preds))]))
    print(f"calibration over part 1's {len(rows)} candidates: factor {cal.factor:.3f}, worst error "
          f"{100 * cal.error:.1f} % -> the search would reject on a prediction only above "
          f"{1 + max(cal.margin, cal.error):.2f} x budget")
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
        print("\ncProfile of part 2 (top 15 by own time):")
        print("\n".join(s.getvalue().splitlines()[6:26]))

    if args.trials > 0:
        budget = args.budget_ms or 0.7 * median(r["median_ms"] for r in rows)
        arms = {}
        for screen in (False, True):
            arms[screen] = constrained_search(args, budget, h, w, screen)
        print(f"\npart 3: the same constrained search with and without screening, {args.trials} trials, budget "
              f"{budget:.1f} ms at {h}x{w}, proxies {args.proxy_steps} steps x {args.proxy_batch} at {args.proxy_size}")
        body = []
        for screen, res in arms.items():
            body.append(["table screening" if screen else "--no-screen", res["n_trained"], res["n_rejected"],
                         res["screened"], res["wall"], res["rejected"], f"{100 * res['rejected'] / res['wall']:.1f}%"])
        print(table(["arm", "trained", "rejected", "on prediction", "wall s", "rejected s", "share of wall"], body,
                    fmt=".1f"))
        measured = arms[False]["latency"]
        checks = [(gid, lat, measured[gid]) for gid, lat in arms[True]["predicted"].items() if gid in measured]
        wrong = [c for c in checks if c[2] <= budget]
        print(f"rejections on a prediction checked against the other arm's end-to-end measurement: {len(checks)}, "
              f"wrong (measured within budget): {len(wrong)}"
              + "".join(f"\n  {gid}: predicted {p:.1f} ms, measured {m:.1f} ms" for gid, p, m in wrong))
        cal = arms[True]["calibration"]
        print(f"the screening arm's own calibration ({len(cal.pairs)} candidates predicted, then measured end to "
              f"end; units timed inside measured networks where known, alone otherwise): factor {cal.factor:.3f}, "
              f"worst error {100 * cal.error:.1f} %")
        print(f"search wall time with / without screening = {arms[True]['wall'] / arms[False]['wall']:.3f}")
    print(load.report())
    print(f"ratio: candidates/s with the cost table (last block) = {warm_rate:.2f} (target >= 5); end to end "
          f"{full_rate:.3f}; {warm_rate / full_rate:.0f}x")
    return warm_rate


if __name__ == "__main__":
    main()
