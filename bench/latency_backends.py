"""Eager PyTorch vs onnxruntime (and, on a GPU, TensorRT fp16): latency per model, ratio, rank agreement; and how
narrow the stopping rule gets the median's interval compared with a fixed 30 runs, quiet and under load.

Part 1: every preset and ``--samples`` members of ``search_spaces/realtime.yaml`` (``space.random(i)``, i = 0 ..),
19 classes, batch 1 at ``--resolution``, each timed on PyTorch eager and on onnxruntime (the export's ONNX graph,
``ORT_ENABLE_ALL``, 1 intra-op thread) with :func:`nasseg.latency.measure_backend`: warm-up, then the stopping rule
(at least 30 runs, until the median's 95 % interval is within +-``--tolerance`` or ``--max-runs`` / ``--max-seconds``),
on a pinned core.  The two arms of a model run back to back, their order alternating from model to model (a
drift in the machine's load favours neither).  It prints each median with its interval, the ratio onnxruntime /
eager, and Kendall's tau-b between the two rankings with its paired-bootstrap 95 % interval
(:func:`nasseg.fidelity_stats.kendall_tau_b`, :func:`~nasseg.fidelity_stats.bootstrap_ci`): does a search that
ranks by eager latency rank like the runtime it deploys with?  With ``--device cuda``, a TensorRT fp16 column
(engine build seconds apart).

Part 2: ``--width-models`` presets at ``--width-resolution`` (small enough that the rule can take more than 30
passes within its time bound), each timed ``--width-repeats`` times by four arms -- a fixed 30 runs and the
stopping rule, each pinned and not pinned, in rotating order -- on the machine as it is, then (``--load N``)
again while N busy processes of this script's own spin (each ends by itself after ``--load-seconds``, and all
are terminated when the part ends, whatever happens).  It reports the median relative half-width of the
median's interval per arm and condition, the runs and seconds each took, and the ratios rule / fixed (same
pinning) and pinned / not pinned (same count rule).

    python bench/latency_backends.py --quick --load 2          # 128x256 (part 2 64x128), short rule; ~15 min
    python bench/latency_backends.py --load 2                  # 512x1024 (slow on one CPU core)
    python bench/latency_backends.py --device cuda             # + TensorRT fp16 (needs the tensorrt package)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterator

import torch
from _common import ROOT, CpuShare, check_device, device_arg, load_average, machine, parse_hw, table

from nasseg import presets
from nasseg.build import build
from nasseg.cost import count_params
from nasseg.errors import NassegError
from nasseg.fidelity_stats import bootstrap_ci, kendall_tau_b
from nasseg.latency import StoppingRule, measure_backend
from nasseg.latency.stats import relative_half_width
from nasseg.space import load_space

NUM_CLASSES = 19


# ------------------------------------------------------------------------------------------------- load
def _spin(deadline: float) -> None:
    x = 0
    while time.time() < deadline:  # bounded: ends by itself even if its parent is killed
        x += 1


@contextlib.contextmanager
def busy(n: int, seconds: float) -> Iterator[list]:
    """``n`` processes spinning on the CPU until ``seconds`` have passed or the block ends, whichever is first
    (yields them)."""
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_spin, args=(time.time() + seconds,), daemon=True) for _ in range(n)]
    try:
        for p in procs:
            p.start()
        time.sleep(0.5)  # let the scheduler spread them
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


# --------------------------------------------------------------------------------------------- models
def models(samples: int, names: list[str] | None = None) -> list[tuple[str, object]]:
    out = [(name, presets.get(name).genome) for name in (names or presets.names())]
    space = load_space(ROOT / "search_spaces" / "realtime.yaml")
    out += [(f"realtime#{i}", space.random(i)) for i in range(samples)]
    return out


def _ci(rec) -> str:
    lo, hi = rec.median_ci_ms
    return f"[{lo:.2f}, {hi:.2f}]"


def part1(args: argparse.Namespace, dev: torch.device, rule: StoppingRule) -> None:
    h, w = args.resolution
    backends = ["torch", "onnxruntime"] + (["tensorrt"] if dev.type == "cuda" else [])
    print(f"\npart 1: eager vs {' vs '.join(backends[1:])} at 1x3x{h}x{w}, {NUM_CLASSES} classes, "
          f"{args.threads} thread(s), warm-up {args.warmup}, rule: >= 30 runs until the median's 95 % interval is "
          f"within +-{100 * rule.tolerance:g} % (at most {rule.max_runs} runs / {rule.max_seconds:g} s), pinned")
    rows, medians = [], {b: [] for b in backends}
    for i, (name, genome) in enumerate(models(args.samples, args.presets)):
        net = build(genome, NUM_CLASSES).eval().to(dev)
        order = backends if i % 2 == 0 else backends[::-1]
        recs, errors = {}, {}
        for b in order:
            dtype = "float16" if b == "tensorrt" else "float32"
            try:
                recs[b] = measure_backend(net, (1, 3, h, w), str(dev), backend=b, warmup=args.warmup, runs=30,
                                          threads=args.threads, dtype=dtype, stopping=rule, pin=True)
            except (NassegError, RuntimeError) as e:
                errors[b] = str(e).splitlines()[0][:60]
        row = [name, count_params(net) / 1e6]
        for b in backends:
            r = recs.get(b)
            row += [r.median_ms, _ci(r), r.runs] if r else [float("nan"), f"failed: {errors.get(b, '?')[:24]}", 0]
        eager = recs.get("torch")
        for b in backends[1:]:
            row.append(recs[b].median_ms / eager.median_ms if eager and b in recs else float("nan"))
        if "tensorrt" in recs:
            row.append(recs["tensorrt"].backend_options["build_seconds"])
        rows.append(row)
        if all(b in recs for b in backends):
            for b in backends:
                medians[b].append(recs[b].median_ms)
        print(f"  {name}: " + ", ".join(f"{b} {recs[b].median_ms:.2f} ms ({recs[b].runs} runs)" if b in recs else
                                        f"{b} failed" for b in backends), flush=True)
    header = ["model", "params M"]
    for b in backends:
        short = {"torch": "eager", "onnxruntime": "ort", "tensorrt": "trt fp16"}[b]
        header += [f"{short} ms", f"{short} 95% CI", f"{short} runs"]
    header += [f"{'ort' if b == 'onnxruntime' else 'trt'}/eager" for b in backends[1:]]
    header += ["trt build s"] if "tensorrt" in backends else []
    print(table(header, rows))
    n = len(medians["torch"])
    for b in backends[1:]:
        ratios = [o / e for o, e in zip(medians[b], medians["torch"])]
        if n >= 3:
            tau, lo, hi = bootstrap_ci(medians["torch"], medians[b], kendall_tau_b, n_boot=2000, seed=0)
            print(f"{b} / eager over {n} models: ratio median {statistics.median(ratios):.3f} (range "
                  f"{min(ratios):.3f}-{max(ratios):.3f}); Kendall tau-b of the two rankings {tau:.3f} "
                  f"[{lo:.3f}, {hi:.3f}] (paired bootstrap, 2000 resamples)")
        else:
            print(f"{b}: fewer than 3 models measured on both backends: no tau")


# ------------------------------------------------------------------------------------------- part 2
ARMS = ("fixed 30, pinned", "rule, pinned", "fixed 30, not pinned", "rule, not pinned")


def _arm(net: torch.nn.Module, shape: tuple[int, ...], arm: str, rule: StoppingRule, args: argparse.Namespace,
         dev: torch.device):
    t0 = time.perf_counter()
    rec = measure_backend(net, shape, str(dev), backend="torch", warmup=args.warmup, runs=30, threads=args.threads,
                          stopping=None if arm.startswith("fixed") else rule, pin=arm.endswith(", pinned"))
    return relative_half_width(rec.samples_ms), rec.runs, time.perf_counter() - t0, rec.cv


def part2(args: argparse.Namespace, dev: torch.device, rule: StoppingRule) -> None:
    h, w = args.width_resolution
    names = [n.strip() for n in args.width_models.split(",") if n.strip()]
    conditions = ["as is"] + ([f"loaded: {args.load} busy process(es)"] if args.load else [])
    print(f"\npart 2: the median's 95 % interval, fixed 30 runs vs the stopping rule; {', '.join(names)} at "
          f"1x3x{h}x{w}, eager, {args.width_repeats} repeat(s) per arm, arms in rotating order")
    nets = {n: build(presets.get(n).genome, NUM_CLASSES).eval().to(dev) for n in names}
    rows = []
    for cond in conditions:
        before = load_average()
        ctx = busy(args.load, args.load_seconds) if cond.startswith("loaded") else contextlib.nullcontext()
        results: dict[tuple[str, str], list[tuple[float, int, float, float]]] = {}
        with ctx:
            for r in range(args.width_repeats):
                for name, net in nets.items():
                    arms = ARMS[r % len(ARMS):] + ARMS[:r % len(ARMS)]
                    for arm in arms:
                        results.setdefault((name, arm), []).append(_arm(net, (1, 3, h, w), arm, rule, args, dev))
        after = load_average()
        for name in names:
            for arm in ARMS:
                res = results[name, arm]
                widths = [x[0] for x in res if math.isfinite(x[0])]
                rows.append([cond, name, arm, 100 * statistics.median(widths) if widths else float("nan"),
                             100 * max(widths) if widths else float("nan"), statistics.median(x[1] for x in res),
                             statistics.median(x[2] for x in res), statistics.median(x[3] for x in res)])
        print(f"  {cond}: load average {before} -> {after}", flush=True)
    print(table(["condition", "model", "arm", "+-% median", "+-% worst", "runs", "seconds", "CV"], rows))
    for cond in conditions:
        for num, den in (("rule, pinned", "fixed 30, pinned"), ("rule, not pinned", "fixed 30, not pinned"),
                         ("fixed 30, pinned", "fixed 30, not pinned"), ("rule, pinned", "rule, not pinned")):
            a = [r[3] for r in rows if r[0] == cond and r[2] == num]
            b = [r[3] for r in rows if r[0] == cond and r[2] == den]
            ratios = [x / y for x, y in zip(a, b) if y > 0 and math.isfinite(x)]
            ratio = statistics.median(ratios) if ratios else float("nan")
            print(f"{cond}: interval half-width ({num}) / ({den}) = {ratio:.2f} (median over models)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    device_arg(ap)
    ap.add_argument("--resolution", default=None, help="HxW (default 512x1024; --quick: 128x256)")
    ap.add_argument("--samples", type=int, default=20, help="members of realtime.yaml besides the presets")
    ap.add_argument("--quick", action="store_true", help="128x256 (part 2: 64x128), rule bounded at 100 runs / 3 s")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--tolerance", type=float, default=0.02, help="the rule's relative half-width")
    ap.add_argument("--max-runs", type=int, default=None, help="the rule's count bound (default 200; --quick 100)")
    ap.add_argument("--max-seconds", type=float, default=None, help="the rule's time bound (default 10; --quick 3)")
    ap.add_argument("--presets", default=None, help="comma-separated presets of part 1 (default: every preset)")
    ap.add_argument("--width-models", default="stdc1_seg,regseg,lednet", help="presets of part 2")
    ap.add_argument("--width-resolution", default=None, help="HxW of part 2 (default: --resolution; --quick 64x128)")
    ap.add_argument("--width-repeats", type=int, default=None, help="repeats per arm in part 2 (default 5)")
    ap.add_argument("--load", type=int, default=0, metavar="N", help="part 2 again beside N busy processes")
    ap.add_argument("--load-seconds", type=float, default=900.0, help="the busy processes end by themselves after this")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: 1, 2")
    args = ap.parse_args(argv)
    dev = check_device(args.device)
    args.resolution = parse_hw(args.resolution or ("128x256" if args.quick else "512x1024"), "--resolution")
    args.width_resolution = parse_hw(args.width_resolution or ("64x128" if args.quick else
                                                               f"{args.resolution[0]}x{args.resolution[1]}"),
                                     "--width-resolution")
    args.width_repeats = args.width_repeats or 5
    if args.presets:
        args.presets = [n.strip() for n in args.presets.split(",") if n.strip()]
        unknown = sorted(set(args.presets) - set(presets.names()))
        if unknown:
            ap.error(f"--presets: unknown preset(s) {unknown}; valid: {', '.join(presets.names())}")
    rule = StoppingRule(tolerance=args.tolerance, max_runs=args.max_runs or (100 if args.quick else 200),
                        max_seconds=args.max_seconds or (3.0 if args.quick else 10.0)).check(30)
    torch.set_num_threads(args.threads)
    print(machine(dev))
    share = CpuShare().start()
    t0 = time.perf_counter()
    skip = set(args.skip.split(","))
    if "1" not in skip:
        part1(args, dev, rule)
    if "2" not in skip:
        part2(args, dev, rule)
    print(f"load average at the end {load_average()}; {time.perf_counter() - t0:.0f} s")
    print(share.report())


if __name__ == "__main__":
    main()
