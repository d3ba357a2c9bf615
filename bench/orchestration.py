"""What the search engine costs on top of the proxies it runs: per-trial overhead, side by side.

The proxy is replaced by a stand-in of fixed cost: ``nasseg.search.jobs.run_job`` is patched (in this
process, and in Ray workers through ``worker_process_setup_hook``) with a function that sleeps for
``--trial-seconds``, calls the driver's ``report`` ``--reports`` times on the way (as intermediate
evaluations would) and returns a well-formed result (``Metrics.to_dict()``).  Everything else is the
real engine: SQLite study, sampling, build, params + fvcore MACs + latency of every candidate (at a
small ``--latency-size``, so it is cheap but present), user attributes, tell.

Part 1 (local executor): a search of ``--trials`` trials vs the same stand-ins run back to back in one
process.  Per-trial overhead = (search wall - back-to-back wall) / trials, also without the latency
measurement (the driver's ``measure_seconds``).  Its share of wall time at 20-s trials is extrapolated
from the measured per-trial overhead: share = overhead / (20 s + overhead).

Part 2 (Ray Tune executor, trivial trials of ``--ray-trial-seconds``): nasseg's search vs plain Ray Tune
with ``ray.tune.search.optuna.OptunaSearch`` sampling the same space (define-by-run, in-memory
storage), running the same stand-in (which imports torch in each new worker, as any PyTorch trainable
does) with the same number of trials and reports, the same concurrency and ``reuse_actors``, on the
same Ray instance (started once; its start-up is reported but not counted).  Per-trial overhead =
(wall - trials x trial seconds) / trials; for nasseg, wall is the search's own clock (the driver's
loop, after the space is loaded), for Tune the creation of the searcher and Tuner plus ``fit()``.

The space is generated (written to a temporary YAML): small conv / MBConv stages and a seg head with
enough choices that no genome repeats (a repeat would be reused, not run).

    python bench/orchestration.py                    # 8 x 1 s trials local, 8 trivial trials on Ray, 3 repeats
    python bench/orchestration.py --trials 20 --trial-seconds 2 --skip-ray
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from _common import CpuShare, Timer, check_device, device_arg, interleaved, machine, median, table

from nasseg import search as S
from nasseg.train import Recipe

SPACE_YAML = """\
name: bench_orchestration
stages:
  - {block: conv, width: 8, depth: 1, stride: 2}
  - stride: 2
    width: [8, 12, 16, 24, 32]
    depth: [1, 2, 3, 4]
    block:
      conv: {}
      mbconv: {expansion: [2, 3, 4, 6]}
  - stride: 2
    width: [16, 24, 32, 48]
    depth: [1, 2]
    block:
      conv: {}
      mbconv: {expansion: [2, 4]}
decoder:
  taps: [1, 2]
  kind:
    chain:
      context: {none: {}}
      fusion: {add: {}}
      widths: [[8, 8], [16, 16]]
heads:
  main: {seg_head: {mid_channels: [4, 8, 12, 16, 20, 24, 28, 32]}}
"""


# ------------------------------------------------------------------------------------- the stand-in
def fake_run_job(payload: dict, report=None) -> dict:
    """A proxy of fixed cost: NASSEG_BENCH_TRIAL_S seconds, NASSEG_BENCH_REPORTS intermediate reports."""
    import hashlib as _hashlib
    import os as _os
    import time as _time

    from nasseg.train import Metrics

    seconds = float(_os.environ.get("NASSEG_BENCH_TRIAL_S", "0"))
    reports = int(_os.environ.get("NASSEG_BENCH_REPORTS", "4"))
    steps = int(payload["recipe"]["steps"])
    miou = int(_hashlib.sha256(payload["genome"].encode()).hexdigest()[:8], 16) / 2**32
    t0 = _time.perf_counter()
    for k in range(1, reports + 1):
        left = t0 + seconds * k / reports - _time.perf_counter()
        if left > 0:
            _time.sleep(left)
        if report is not None:
            report(steps * k // reports, miou)
    left = t0 + seconds - _time.perf_counter()
    if left > 0:
        _time.sleep(left)
    wall = _time.perf_counter() - t0
    m = Metrics(miou=miou, per_class_iou=(miou,), pixel_acc=miou, loss_curve=((steps, 1.0),),
                eval_history=((steps, miou),), train_seconds=wall, images_per_second=1.0, steps_done=steps,
                device="cpu", seed=int(payload["seed"]), status="completed")
    return {"ok": True, "metrics": m.to_dict(), "wall_s": wall}


def _patch_worker() -> None:
    """Ray worker_process_setup_hook: the stand-in replaces the proxy in every worker."""
    import nasseg.search

    nasseg.search.jobs.run_job = fake_run_job


# ------------------------------------------------------------------------------------------- arms
def _config(args: argparse.Namespace, tmp: str, name: str, executor: str, trials: int) -> S.SearchConfig:
    lh, lw = (int(v) for v in args.latency_size.split("x"))
    recipe = Recipe(resolution=(32, 64), steps=8, batch_size=2, eval_every=2, amp=False, train_length=8,
                    val_length=2, num_workers=0)
    return S.SearchConfig(space=str(Path(tmp) / "space.yaml"), storage=f"sqlite:///{tmp}/{name}.db", study=name,
                          trials=trials, latency_budget_ms=1e6,
                          latency=S.LatencySpec(device=args.device, resolution=(lh, lw), runs=30, warmup=2),
                          sampler="random", seed=hash_seed(name), recipe=recipe, executor=executor,
                          concurrency=args.concurrency, progress=False, artifacts=f"{tmp}/artifacts")


def hash_seed(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)


def run_search(cfg: S.SearchConfig) -> dict:
    with Timer() as t:
        summary = S.search(cfg, log=lambda s: None)
    counts = summary["counts"]
    if counts["trained"] != cfg.trials:
        raise SystemExit(f"expected {cfg.trials} trained trials, got {counts}; the generated space repeated a genome")
    return {"outer": t.wall, "wall": summary["wall_seconds"], "measure": summary["measure_seconds"]}


def back_to_back(trials: int) -> float:
    payload = {"recipe": {"steps": 8}, "genome": "x", "seed": 0}
    with Timer() as t:
        for i in range(trials):
            fake_run_job({**payload, "genome": str(i)}, lambda s, m: True)
    return t.wall


class DefineByRun:
    """OptunaSearch's define-by-run space: nasseg's own sampler.  Picklable (Tune pickles its searcher)."""

    def __init__(self, path: str):
        from nasseg.space import load_space

        self.path, self.space = path, load_space(path)

    def __getstate__(self) -> dict:
        return {"path": self.path, "space": None}

    def __call__(self, trial) -> None:
        if self.space is None:
            from nasseg.space import load_space

            self.space = load_space(self.path)
        self.space.sample(trial)


def tune_optuna(args: argparse.Namespace, space_path: str, trials: int, tmp: str, run: int) -> float:
    """Plain Ray Tune + OptunaSearch over the same space; returns wall seconds of Tuner() + fit()."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    reports = int(os.environ["NASSEG_BENCH_REPORTS"])

    def trainable(config: dict) -> None:  # the same stand-in as nasseg's workers run (it imports torch too)
        res = fake_run_job({"recipe": {"steps": reports}, "genome": json.dumps(config, sort_keys=True), "seed": 0},
                           lambda step, miou: tune.report({"miou": miou, "step": step}))
        tune.report({"miou": res["metrics"]["miou"], "step": reports, "final": True})

    define = DefineByRun(space_path)  # loaded before timing, as nasseg's search loads its space before its clock
    with Timer() as t:
        searcher = OptunaSearch(space=define, metric="miou", mode="max", seed=run)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials,
                                        max_concurrent_trials=args.concurrency, reuse_actors=True),
            run_config=tune.RunConfig(name=f"tune-optuna-{run}", storage_path=f"{tmp}/ray_results", verbose=0),
        )
        tuner.fit()
    return t.wall


# ------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    device_arg(ap)
    ap.add_argument("--trials", type=int, default=8, help="trials per search (default 8)")
    ap.add_argument("--trial-seconds", type=float, default=1.0, help="part 1: cost of each stand-in proxy")
    ap.add_argument("--reports", type=int, default=4, help="intermediate reports per proxy (default 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-size", default="32x64", help="HxW of each candidate's latency measurement")
    ap.add_argument("--ray-trial-seconds", type=float, default=0.0, help="part 2: cost of each trivial trial")
    ap.add_argument("--ray-repeats", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=1, help="part 2: trials at once, both arms (default 1)")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--at-seconds", type=float, default=20.0, help="trial length of the extrapolated share")
    args = ap.parse_args(argv)
    check_device(args.device)
    print(machine(args.device))
    load = CpuShare().start()
    os.environ["NASSEG_BENCH_REPORTS"] = str(args.reports)
    S.jobs.run_job = fake_run_job  # the executors call nasseg.search.jobs.run_job
    n = args.trials

    with tempfile.TemporaryDirectory() as tmp:
        space_path = Path(tmp) / "space.yaml"
        space_path.write_text(SPACE_YAML, encoding="utf-8")

        # ---------------------------------------------------------------------------------- part 1
        os.environ["NASSEG_BENCH_TRIAL_S"] = str(args.trial_seconds)
        runs = iter(range(10**6))
        res = interleaved({
            "search": lambda: run_search(_config(args, tmp, f"local{next(runs)}", "local", n)),
            "back_to_back": lambda: back_to_back(n),
        }, args.repeats)
        rows, per_trial, per_trial_no_measure = [], [], []
        for r, (s, b) in enumerate(zip(res["search"], res["back_to_back"])):
            o = (s["wall"] - b) / n
            om = (s["wall"] - s["measure"] - b) / n
            per_trial.append(o)
            per_trial_no_measure.append(om)
            rows.append([r + 1, b, s["wall"], s["outer"] - s["wall"], s["measure"], 1e3 * o, 1e3 * om])
        rows.append(["median", median(res["back_to_back"]), median(s["wall"] for s in res["search"]),
                     median(s["outer"] - s["wall"] for s in res["search"]),
                     median(s["measure"] for s in res["search"]), 1e3 * median(per_trial),
                     1e3 * median(per_trial_no_measure)])
        print(f"\npart 1: local executor, {n} trials x {args.trial_seconds:g} s stand-in proxies, {args.reports} "
              f"reports each; candidates measured at {args.latency_size} (30 runs)")
        print(table(["repeat", "back-to-back s", "search s", "start-up s", "measure s", "overhead ms/trial",
                     "w/o measure ms/trial"], rows))
        o, om = median(per_trial), median(per_trial_no_measure)
        share = o / (args.at_seconds + o)
        share_om = om / (args.at_seconds + om)
        print(f"share of wall time at {args.at_seconds:g}-s trials (extrapolated from the per-trial overhead): "
              f"{100 * share:.2f} % with the latency measurement, {100 * share_om:.2f} % without (target <= 3 %)")

        # ---------------------------------------------------------------------------------- part 2
        if not args.skip_ray:
            ray_part(args, tmp, str(space_path), n)
    print(load.report())
    print(f"ratio: overhead share at {args.at_seconds:g}-s trials = {share:.4f} (target <= 0.03)")
    return share


def ray_part(args: argparse.Namespace, tmp: str, space_path: str, n: int) -> None:
    import ray
    from ray import cloudpickle

    if __name__ != "__main__":  # imported: ship the stand-in by value, workers cannot import this file
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    os.environ["NASSEG_BENCH_TRIAL_S"] = str(args.ray_trial_seconds)
    env = {"NASSEG_BENCH_TRIAL_S": str(args.ray_trial_seconds), "NASSEG_BENCH_REPORTS": str(args.reports)}
    with Timer() as t:
        ray.init(num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True,
                 runtime_env={"worker_process_setup_hook": _patch_worker, "env_vars": env})
    ray_start = t.wall
    try:
        runs = iter(range(10**6))
        res = interleaved({
            "nasseg": lambda: run_search(_config(args, tmp, f"ray{next(runs)}", "ray", n)),
            "tune_optuna": lambda: tune_optuna(args, space_path, n, tmp, next(runs)),
        }, args.ray_repeats)
    finally:
        ray.shutdown()
    base = n * args.ray_trial_seconds
    rows = []
    for r, (s, b) in enumerate(zip(res["nasseg"], res["tune_optuna"])):
        rows.append([r + 1, b, 1e3 * (b - base) / n, s["wall"], s["measure"], 1e3 * (s["wall"] - base) / n,
                     1e3 * (s["wall"] - s["measure"] - base) / n])
    ours = median((s["wall"] - base) / n for s in res["nasseg"])
    ours_nm = median((s["wall"] - s["measure"] - base) / n for s in res["nasseg"])
    theirs = median((b - base) / n for b in res["tune_optuna"])
    rows.append(["median", median(res["tune_optuna"]), 1e3 * theirs, median(s["wall"] for s in res["nasseg"]),
                 median(s["measure"] for s in res["nasseg"]), 1e3 * ours, 1e3 * ours_nm])
    print(f"\npart 2: Ray Tune executor, {n} trials x {args.ray_trial_seconds:g} s, {args.reports} reports each, "
          f"concurrency {args.concurrency}; ray.init took {ray_start:.1f} s (not counted)")
    print(table(["repeat", "Tune+Optuna s", "Tune+Optuna ms/trial", "nasseg s", "measure s", "nasseg ms/trial",
                 "w/o measure ms/trial"], rows))
    print(f"per-trial overhead nasseg / (Ray Tune + OptunaSearch) = {ours / theirs:.2f} "
          f"({ours_nm / theirs:.2f} without the latency measurement)")


if __name__ == "__main__":
    main()
