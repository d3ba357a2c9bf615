"""Interlaced sparse self-attention (ISA) vs dense self-attention: MACs, peak memory, latency.

The registry's ``isa`` (ISANet, down factor ``--down-factor``) and ``nonlocal`` (dense attention with
exactly ISA's projections) context modules, built with ``--channels`` in and out (key width in/2, as
ISANet), on feature maps of each ``--sizes`` entry, batch 1, eval mode:

* MACs: ``nasseg.cost.count_macs`` (fvcore: convs + matmuls).  Where dense attention is too large to run
  (its (HW)^2 attention matrix over ``--max-attention-gb``), its MACs come from the exact form
  a*HW + b*(HW)^2 fitted to fvcore's counts at two smaller sizes (checked on a third), marked "fit";
* peak memory: bytes allocated during one forward pass beyond the input (CPU: the torch profiler's
  allocation events; CUDA: ``torch.cuda.max_memory_allocated``);
* latency: ``nasseg.cost.measure_latency`` (``--warmup`` + ``--runs``, 1 CPU thread), median and CV;
  a module whose first pass takes over ``--max-pass-s`` is timed by the median of 3 more passes
  (marked "3 runs"; too slow for 30 runs on a CPU).

    python bench/isa_vs_dense.py                       # 256 channels, 32x64, 64x128, 128x256 on CPU
    python bench/isa_vs_dense.py --device cuda --max-attention-gb 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
from _common import CpuShare, check_device, cv, device_arg, machine, parse_hw, sync, table

from nasseg import registry
from nasseg.cost import count_macs, measure_latency


def peak_bytes(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes allocated during one forward pass, at its peak, beyond what existed before it."""
    dev = x.device
    with torch.inference_mode():
        if dev.type == "cuda":
            sync(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            module(x)
            sync(dev)
            return torch.cuda.max_memory_allocated(dev) - before
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            module(x)
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals, default=0)


def single_pass_s(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Seconds of one forward pass (the first, so an over-estimate), on 1 thread on CPU as the latency."""
    threads = torch.get_num_threads()
    if x.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            sync(x.device)
            t0 = time.perf_counter()
            module(x)
            sync(x.device)
            return time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)


def attention_gb(name: str, h: int, w: int, down: tuple[int, int]) -> float:
    """Size of one attention matrix (float32): dense (HW)^2; ISA the larger of its two stages."""
    if name == "nonlocal":
        return (h * w) ** 2 * 4 / 1e9
    ph, pw = -(-h // down[0]) * down[0], -(-w // down[1]) * down[1]
    groups_long, n_long = down[0] * down[1], (ph // down[0]) * (pw // down[1])
    groups_short, n_short = n_long, down[0] * down[1]
    return max(groups_long * n_long**2, groups_short * n_short**2) * 4 / 1e9


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    device_arg(ap)
    ap.add_argument("--sizes", default="32x64,64x128,128x256", help="feature map sizes HxW, comma-separated")
    ap.add_argument("--channels", type=int, default=256, help="in and out channels (key: half)")
    ap.add_argument("--down-factor", default="8x8", help="ISA block size (default 8x8, as ISANet)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-attention-gb", type=float, default=2.0,
                    help="skip running a module whose attention matrix is larger (default 2 GB)")
    ap.add_argument("--max-pass-s", type=float, default=2.0, help="time a slower module once, not runs times")
    args = ap.parse_args(argv)
    dev = check_device(args.device)
    sizes = [parse_hw(s, "--sizes") for s in args.sizes.split(",")]
    down = parse_hw(args.down_factor, "--down-factor")
    c = args.channels
    print(machine(dev))
    load = CpuShare().start()
    print(f"{c} channels in and out, key {c // 2}, ISA down factor {down[0]}x{down[1]}, batch 1, "
          f"latency {args.warmup} warm-up + {args.runs} runs (1 CPU thread)")
    torch.manual_seed(0)
    modules = {"isa": registry.get("isa").create(c, c, down_factor=down),
               "nonlocal": registry.get("nonlocal").create(c, c)}
    for m in modules.values():
        m.eval().to(dev)

    results: dict[tuple[str, tuple[int, int]], dict] = {}
    for name, m in modules.items():
        for h, w in sizes:
            r: dict = {"attention_gb": attention_gb(name, h, w, down)}
            results[name, (h, w)] = r
            if r["attention_gb"] > args.max_attention_gb:
                r["skipped"] = True
                continue
            x = torch.randn(1, c, h, w, device=dev)
            r["macs"], r["macs_how"] = count_macs(m, (1, c, h, w), dev).macs, "fvcore"
            r["peak_mb"] = peak_bytes(m, x) / 2**20
            one = single_pass_s(m, x)
            if one > args.max_pass_s:  # too slow for warm-up + 30 runs: the median of 3 passes after this one
                times = [single_pass_s(m, x) for _ in range(3)]
                r["latency_ms"], r["cv"], r["timing"] = 1e3 * statistics.median(times), cv(times), "3 runs"
            else:
                rec = measure_latency(m, (1, c, h, w), dev, warmup=args.warmup, runs=args.runs)
                r["latency_ms"], r["cv"], r["timing"] = rec.median_ms, rec.cv, f"{rec.runs} runs"
        _fill_macs(name, sizes, results, c, dev, modules[name])

    rows = []
    for h, w in sizes:
        for name in modules:
            r = results[name, (h, w)]
            if r.get("skipped"):
                rows.append([f"{h}x{w}", name, r["macs"] / 1e9 if "macs" in r else float("nan"), r.get("macs_how", ""),
                             1e3 * r["attention_gb"], f"skipped: attention {r['attention_gb']:.1f} GB", "", "", ""])
            else:
                rows.append([f"{h}x{w}", name, r["macs"] / 1e9, r["macs_how"], 1e3 * r["attention_gb"], r["peak_mb"],
                             r["latency_ms"], 100 * r["cv"], r["timing"]])
    print(table(["features", "module", "GMACs", "MACs by", "attention MB", "peak MB", "latency ms", "CV %",
                 "timed"], rows))
    last = None
    for h, w in sizes:
        a, b = results["isa", (h, w)], results["nonlocal", (h, w)]
        parts = []
        if "macs" in a and "macs" in b:
            parts.append(f"MACs {b['macs'] / a['macs']:.1f}x")
        if "peak_mb" in a and "peak_mb" in b:
            parts.append(f"peak memory {b['peak_mb'] / a['peak_mb']:.1f}x")
        if "latency_ms" in a and "latency_ms" in b:
            last = b["latency_ms"] / a["latency_ms"]
            parts.append(f"latency {last:.1f}x")
        print(f"{h}x{w}: dense / ISA = " + (", ".join(parts) if parts else "-"))
    print(load.report())
    if last is None:
        print("ratio: no size where both ran")
        return float("nan")
    print(f"ratio: dense / ISA latency at the largest size both ran = {last:.2f}")
    return last


def _fill_macs(name: str, sizes: list[tuple[int, int]], results: dict, c: int, dev: torch.device,
               module: torch.nn.Module) -> None:
    """MACs of skipped sizes from a*N + b*N^2 (N = H*W), fitted to two fvcore counts, checked on a third."""
    missing = [s for s in sizes if "macs" not in results[name, s]]
    if not missing:
        return
    small = [(8, 16), (16, 32), (24, 48)]
    counts = [count_macs(module, (1, c, h, w), dev).macs for h, w in small]
    (n1, n2, n3) = [h * w for h, w in small]
    b = (counts[1] / n2 - counts[0] / n1) / (n2 - n1)
    a = counts[0] / n1 - b * n1
    check = a * n3 + b * n3 * n3
    if abs(check - counts[2]) > 1e-6 * counts[2]:
        return  # not of that form (e.g. padding): leave the MACs unknown
    for h, w in missing:
        n = h * w
        results[name, (h, w)]["macs"] = round(a * n + b * n * n)
        results[name, (h, w)]["macs_how"] = "fit"


if __name__ == "__main__":
    main()
