"""GPU readiness (issue #22): every CUDA path of nasseg, run for real in one prepared command.

A GPU is lent only now and then, for minutes, so this runs everything in one go (at most ~8 minutes on
one GPU, ``--budget-s``) and ends with one table.  Five sections, one row each; a section that raises is
reported (traceback on stderr, the reason in its row) and the others still run:

``synthetic``  ``synthetic_batch`` painted on the device against the same items painted on the CPU:
               labels bit-identical, images within one grey level; ms per painted batch on each.
``latency``    ``measure_latency`` with ``timer="cuda_event"`` (CUDA events on the stream) against the
               default ``perf_counter`` + synchronize, records alternating, on stdc1_seg, regseg and lednet:
               CV within a record, between records, events / host-clock median.  Target: CV <= 1 %.
``amp``        ``train_model`` fp32 against float16 autocast + gradient scaling + channels_last, each at
               the same seeds (same initial weights and data per seed): images/s ratio, and the mIoU
               difference at seed 0 against the seed noise (pooled std over the seeds); pass when it is
               within 2 x the noise.
``ray``        ``nasseg search`` through Ray Tune at ``--gpus-per-trial 0.25`` with ``--concurrency 1``
               then ``4`` (same space, sampler seed and recipe): trials per hour, from the study's first
               trial start to its last completion (and from the process wall, Ray start-up included).
               Target: >= 1000 proxy trials per GPU-hour at 128x256, 300 steps, batch 16 (concurrency 4).
``search``     the 4-concurrent arm above is a 20-trial search end to end on the device (proxies and
               latency records on the GPU); then ``nasseg export --remeasure`` of its study.

Status per row: ``pass`` (checks and target met), ``ran`` (the code ran and its checks held; the target
is not judged: CPU or ``--quick`` sizes), ``WARN`` (the export left front members without ONNX for a
reason that has nothing to do with the device), ``FAIL``, ``ERROR`` (raised) or ``skip`` (the time budget
was spent).  The exit status is 1 when any row is FAIL, ERROR or skip, else 0.

Without a CUDA device (and no ``--device``) it says so in one line and runs the CPU dry path
(``--device cpu --quick``: tiny sizes, a few trials, ~2 minutes on a 2-core CPU) so that CI keeps it
working.  The searches run as ``python -m nasseg ...`` subprocesses with this checkout on PYTHONPATH.

    python bench/gpu_check.py                          # the GPU check (or the CPU dry path without CUDA)
    python bench/gpu_check.py --out runs/gpu-check     # also writes gpu_check.md and gpu_check.json there
    python bench/gpu_check.py --device cpu --quick     # the dry path, explicitly
    python bench/gpu_check.py --only latency,amp       # a subset (e.g. to rerun what failed)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from _common import ROOT, CpuShare, cpu_model, cv, load_average, median, table

from nasseg import presets
from nasseg.build import build
from nasseg.cost import measure_latency
from nasseg.data import SyntheticDataset, synthetic_batch
from nasseg.train import Recipe, train_model

SECTIONS = ("synthetic", "latency", "amp", "ray", "search")
NO_CUDA_LINE = "no CUDA device: running the CPU dry path (--device cpu --quick)"
STUDY = "gpu-check"
FAILING = ("FAIL", "ERROR", "skip")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of every section: the GPU plan (the mission's proxy recipe) or the --quick one."""

    syn_size: tuple[int, int]
    syn_batch: int
    syn_compare: int
    lat_presets: tuple[str, ...]
    lat_size: tuple[int, int]
    lat_warmup: int
    lat_runs: int
    lat_records: int
    train_preset: str
    proxy_size: tuple[int, int]
    proxy_batch: int
    proxy_steps: int
    seeds: tuple[int, ...]
    train_length: int
    val_length: int
    c1_trials: int
    search_trials: int
    concurrency: int
    search_latency_size: tuple[int, int]
    export_top: int | None


FULL = Plan(syn_size=(128, 256), syn_batch=16, syn_compare=64,
            lat_presets=("stdc1_seg", "regseg", "lednet"), lat_size=(512, 1024), lat_warmup=20, lat_runs=100,
            lat_records=3, train_preset="stdc1_seg", proxy_size=(128, 256), proxy_batch=16, proxy_steps=300,
            seeds=(0, 1, 2), train_length=512, val_length=64, c1_trials=5, search_trials=20, concurrency=4,
            search_latency_size=(512, 1024), export_top=None)
# The dry path only proves that every section runs (CI runs it on 2 cores): two presets, two trials at
# concurrency 2.
QUICK = Plan(syn_size=(32, 64), syn_batch=4, syn_compare=8,
             lat_presets=("regseg", "lednet"), lat_size=(64, 128), lat_warmup=3, lat_runs=30,
             lat_records=2, train_preset="stdc1_seg", proxy_size=(32, 64), proxy_batch=2, proxy_steps=6,
             seeds=(0, 1), train_length=16, val_length=4, c1_trials=2, search_trials=2, concurrency=2,
             search_latency_size=(32, 64), export_top=1)


class Skipped(Exception):
    """The time budget is spent."""


@dataclasses.dataclass
class Result:
    figure: str
    target: str
    ok: bool
    warn: bool = False
    details: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Row:
    section: str
    figure: str
    target: str
    status: str
    seconds: float
    details: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SearchRun:
    trials: int
    concurrency: int
    storage: str
    rc: int
    wall_s: float
    log: Path
    records: list[dict]
    breakdown: str  # the search's own "wall ... = proxies in flight ... + latency measurement ... + ..." line


class Context:
    def __init__(self, device: torch.device, plan: Plan, quick: bool, budget_s: float, tmp: Path):
        self.device, self.plan, self.quick, self.tmp = device, plan, quick, tmp
        self.cuda = device.type == "cuda"
        self.judge = self.cuda and not quick  # targets are judged only on the GPU at the mission's sizes
        self.deadline = time.monotonic() + budget_s
        self.budget_s = budget_s
        self.searches: dict[tuple[int, int], SearchRun] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise Skipped(f"time budget of {self.budget_s:g} s spent before {what}")


def _hw(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def _pct(v: float) -> str:
    return "-" if v != v else f"{100 * v:.2f} %"


# ------------------------------------------------------------------------------------------ synthetic
def sec_synthetic(ctx: Context) -> Result:
    """Painting on the device vs the CPU: identical labels, images within rounding; ms per batch."""
    p, dev = ctx.plan, ctx.device
    idx = list(range(p.syn_compare))
    images_dev, labels_dev = synthetic_batch(idx, "val", p.syn_size, 0, dev, normalize=False)
    reference = [SyntheticDataset("val", p.syn_size, len(idx))[i] for i in idx]  # item by item, on the CPU
    images_cpu = torch.stack([im for im, _ in reference]).float()
    labels_cpu = torch.stack([lb for _, lb in reference])
    same_labels = torch.equal(labels_dev.cpu(), labels_cpu)
    max_diff = float((images_dev.cpu() - images_cpu).abs().max())
    ctx.check("timing the painter")

    def paint_ms(device: torch.device, repeats: int) -> float:
        times = []
        for r in range(repeats + 1):  # the first call is a warm-up
            batch = range(r * p.syn_batch, (r + 1) * p.syn_batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            synthetic_batch(batch, "train", p.syn_size, 0, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r:
                times.append(1e3 * (time.perf_counter() - t0))
        return median(times)

    cpu_ms = paint_ms(torch.device("cpu"), 3 if ctx.quick else 5)
    dev_ms = paint_ms(dev, 3 if ctx.quick else 20) if ctx.cuda else cpu_ms
    where = f"{dev.type} vs CPU items" if ctx.cuda else "CPU batch vs CPU items"
    figure = (f"{where}: labels {'identical' if same_labels else 'DIFFER'}, images max |diff| {max_diff:g}; "
              f"batch of {p.syn_batch} at {_hw(p.syn_size)}: " +
              (f"{dev_ms:.2f} ms on {dev.type}, {cpu_ms:.1f} ms on CPU ({cpu_ms / dev_ms:.1f}x)" if ctx.cuda
               else f"{cpu_ms:.1f} ms on CPU"))
    return Result(figure, "labels identical, images within 1 grey level", same_labels and max_diff <= 1.0,
                  details={"labels_identical": same_labels, "max_image_diff": max_diff, "paint_ms_device": dev_ms,
                           "paint_ms_cpu": cpu_ms, "items": len(idx), "size": list(p.syn_size)})


# -------------------------------------------------------------------------------------------- latency
def sec_latency(ctx: Context) -> Result:
    """CUDA events vs perf_counter + synchronize, records alternating, the plan's presets (three on the GPU)."""
    p = ctx.plan
    timers = ("cuda_event", "perf_counter") if ctx.cuda else ("perf_counter",)
    rows, per_preset = [], {}
    for name in p.lat_presets:
        ctx.check(f"timing {name}")
        net = build(presets.get(name).genome, 19).to(ctx.device)
        recs: dict[str, list] = {t: [] for t in timers}
        for r in range(p.lat_records):
            for t in timers if r % 2 == 0 else timers[::-1]:
                recs[t].append(measure_latency(net, (1, 3, *p.lat_size), ctx.device, warmup=p.lat_warmup,
                                               runs=p.lat_runs, timer=t))
        host = median(x.median_ms for x in recs["perf_counter"])
        per_preset[name] = {}
        for t in timers:
            med = median(x.median_ms for x in recs[t])
            in_record = median(x.cv for x in recs[t])
            between = cv([x.median_ms for x in recs[t]])
            per_preset[name][t] = {"median_ms": med, "cv_in_record": in_record, "cv_between_records": between,
                                   "vs_perf_counter": med / host, "records": [x.to_dict() for x in recs[t]]}
            rows.append([name, t, len(recs[t]), med, 100 * in_record, 100 * between, med / host])
        del net
    print(table(["preset", "timer", "records", "median ms", "CV in record %", "CV between records %",
                 "vs perf_counter"], rows))

    def worst(t: str, key: str) -> float:
        return max(per_preset[n][t][key] for n in per_preset)

    judged = "cuda_event" if ctx.cuda else "perf_counter"
    worst_cv = worst(judged, "cv_in_record")
    figure = f"{_hw(p.lat_size)}, worst preset's median CV in record: " + ", ".join(
        f"{t} {_pct(worst(t, 'cv_in_record'))}" for t in timers)
    if ctx.cuda:
        ratios = [per_preset[n]["cuda_event"]["vs_perf_counter"] for n in per_preset]
        figure += f"; events / perf_counter {min(ratios):.3f}-{max(ratios):.3f}"
    sane = all(0 < per_preset[n][t]["median_ms"] < math.inf for n in per_preset for t in timers)
    met = worst_cv <= 0.01
    return Result(figure, "CV <= 1 % (cuda_event, GPU)", sane and (met or not ctx.judge),
                  details={"timers": list(timers), "presets": per_preset, "worst_cv_in_record": worst_cv})


# ------------------------------------------------------------------------------------------------ amp
def sec_amp(ctx: Context) -> Result:
    """Proxy training fp32 vs AMP + channels_last: images/s and mIoU at the same seeds."""
    p = ctx.plan
    genome = presets.get(p.train_preset).genome
    base = Recipe(resolution=p.proxy_size, batch_size=p.proxy_batch, steps=p.proxy_steps, eval_every=0,
                  warmup_steps=min(p.proxy_steps - 1, max(0, p.proxy_steps // 20)),  # as `nasseg search` sets it
                  train_length=p.train_length, val_length=p.val_length, num_workers=0)
    arms = {"fp32": dataclasses.replace(base, amp=False, channels_last=False),
            "amp+cl": dataclasses.replace(base, amp=True, channels_last=True)}
    val = SyntheticDataset("val", p.proxy_size, p.val_length)

    def run(recipe: Recipe, seed: int) -> dict:
        train = SyntheticDataset("train", p.proxy_size, p.train_length, seed=seed)
        torch.manual_seed(seed)  # as proxy_train: the same initial weights for both arms at a seed
        model = build(genome, train.num_classes)
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        m = train_model(model, recipe, train, val, seed, ctx.device)
        conv = next(w for w in model.parameters() if w.ndim == 4)
        return {"miou": m.miou, "images_per_second": m.images_per_second, "train_seconds": m.train_seconds,
                "device": m.device, "channels_last": conv.is_contiguous(memory_format=torch.channels_last),
                "peak_mb": torch.cuda.max_memory_allocated(ctx.device) / 2**20 if ctx.cuda else float("nan")}

    for name, r in arms.items():  # untimed: cuDNN autotuning, the allocator, lazy initialisation
        ctx.check(f"warming up {name}")
        run(dataclasses.replace(r, steps=min(10, r.steps), warmup_steps=0), 0)
    res: dict[str, list[dict]] = {a: [] for a in arms}
    for i, seed in enumerate(p.seeds):  # arms alternate, the order reversed every other seed
        for a in list(arms) if i % 2 == 0 else list(arms)[::-1]:
            ctx.check(f"training {a} seed {seed}")
            res[a].append(run(arms[a], seed))
    rows = [[a, seed, x["miou"], x["images_per_second"], x["peak_mb"], x["channels_last"]]
            for a in arms for seed, x in zip(p.seeds, res[a])]
    print(table(["arm", "seed", "mIoU", "images/s", "peak MB", "weights channels_last"], rows))

    speed = {a: median(x["images_per_second"] for x in res[a]) for a in arms}
    ratio = speed["amp+cl"] / speed["fp32"]
    delta = res["amp+cl"][0]["miou"] - res["fp32"][0]["miou"]
    noise = math.sqrt(statistics.fmean(statistics.variance([x["miou"] for x in res[a]]) for a in arms))
    parity = abs(delta) <= 2 * noise
    cl_ok = not ctx.cuda or all(x["channels_last"] for x in res["amp+cl"])
    sane = all(math.isfinite(x["miou"]) and x["device"].startswith(ctx.device.type) for a in arms for x in res[a])
    note = "" if ctx.cuda else " (CPU: amp and channels_last are CUDA-only in train_model, both arms run fp32)"
    figure = (f"{p.train_preset} {_hw(p.proxy_size)} x{p.proxy_batch}, {p.proxy_steps} steps: images/s "
              f"{speed['amp+cl']:.0f} vs {speed['fp32']:.0f} ({ratio:.2f}x); mIoU at seed 0 "
              f"{res['amp+cl'][0]['miou']:.4f} vs {res['fp32'][0]['miou']:.4f} (diff {delta:+.4f}, seed noise "
              f"{noise:.4f}){note}")
    return Result(figure, "|mIoU diff| <= 2 x seed noise", sane and cl_ok and (parity or not ctx.judge),
                  details={"runs": res, "images_per_second_ratio": ratio, "miou_diff_seed0": delta,
                           "seed_noise": noise, "seeds": list(p.seeds)})


# --------------------------------------------------------------------------------------- ray / search
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    env["COLUMNS"] = "250"  # rich wraps its summary lines at the console width
    return env


def _run(cmd: list[str], log: Path, ctx: Context, what: str) -> tuple[int, float]:
    """Run ``cmd`` (its own process group) with output to ``log``; killed when the time budget is spent."""
    ctx.check(what)
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, ctx.left()))
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=grace)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
            raise Skipped(f"time budget of {ctx.budget_s:g} s spent during {what} "
                          f"(killed after {time.monotonic() - t0:.0f} s)") from None
    return rc, time.monotonic() - t0


def _tail(log: Path, n: int = 1) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:200]


def _study_records(storage: str) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    out = []
    for t in study.trials:
        ua = t.user_attrs
        metrics, lat = ua.get("metrics") or {}, ua.get("latency") or {}
        out.append({"number": t.number, "state": t.state.name, "status": ua.get("nasseg_status"),
                    "start": t.datetime_start.timestamp() if t.datetime_start else None,
                    "end": t.datetime_complete.timestamp() if t.datetime_complete else None,
                    "train_seconds": metrics.get("train_seconds"),
                    "images_per_second": metrics.get("images_per_second"),
                    "miou": metrics.get("miou"), "proxy_device": metrics.get("device"),
                    "latency_device": lat.get("device"), "latency_ms": lat.get("median_ms"),
                    "latency_cv": lat.get("cv"), "reason": ua.get("reason")})
    return out


def run_search(ctx: Context, trials: int, concurrency: int) -> SearchRun:
    """``nasseg search`` in a subprocess (cached per (trials, concurrency)): the mission's proxy recipe on the
    device at ``--gpus-per-trial 0.25`` (CPU: ``--cpus-per-trial 0.5``), pareto mode, random sampler, seed 0."""
    key = (trials, concurrency)
    if key in ctx.searches:
        return ctx.searches[key]
    p = ctx.plan
    folder = ctx.tmp / f"search_t{trials}_c{concurrency}"
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    share = ["--gpus-per-trial", "0.25", "--cpus-per-trial", "1"] if ctx.cuda else \
        ["--gpus-per-trial", "0", "--cpus-per-trial", "0.5"]
    cmd = [sys.executable, "-m", "nasseg", "search", "--space", str(ROOT / "search_spaces" / "realtime.yaml"),
           "--mode", "pareto", "--sampler", "random", "--seed", "0", "--trials", str(trials),
           "--storage", storage, "--study", STUDY, "--dataset", "synthetic",
           "--proxy-resolution", _hw(p.proxy_size), "--proxy-steps", str(p.proxy_steps),
           "--proxy-batch", str(p.proxy_batch), "--latency-device", ctx.device.type,
           "--latency-resolution", _hw(p.search_latency_size), "--executor", "ray",
           "--concurrency", str(concurrency), *share, "--no-progress"]
    log = folder / "search.log"
    print(f"  nasseg search: {trials} trials, concurrency {concurrency} (log {log})", flush=True)
    rc, wall = _run(cmd, log, ctx, f"the search ({trials} trials, concurrency {concurrency})")
    records = _study_records(storage) if (folder / "study.db").exists() else []
    breakdown = next((ln.strip() for ln in log.read_text(errors="replace").splitlines()
                      if ln.startswith("wall ") and "proxies in flight" in ln), "")
    run = SearchRun(trials, concurrency, storage, rc, wall, log, records, breakdown)
    ctx.searches[key] = run
    return run


def _rate(run: SearchRun) -> dict:
    trained = [r for r in run.records if r["status"] == "trained"]
    span = (max(r["end"] for r in trained) - min(r["start"] for r in trained)) if trained else float("nan")
    return {"trained": len(trained), "finished": sum(r["state"] != "RUNNING" for r in run.records),
            "wall_s": run.wall_s, "span_s": span,
            "per_hour_span": 3600 * len(trained) / span if trained and span > 0 else float("nan"),
            "per_hour_wall": 3600 * len(trained) / run.wall_s if trained else float("nan"),
            "train_s_mean": statistics.fmean(r["train_seconds"] for r in trained) if trained else float("nan")}


def _search_problems(ctx: Context, run: SearchRun) -> list[str]:
    problems = []
    if run.rc != 0:
        problems.append(f"search c{run.concurrency} exited {run.rc}: {_tail(run.log)}")
    trained = [r for r in run.records if r["status"] == "trained"]
    if len(trained) < run.trials:
        other = {r["status"] for r in run.records if r["status"] != "trained"}
        reasons = [r["reason"] for r in run.records if r["reason"]][:1]
        problems.append(f"c{run.concurrency}: {len(trained)} of {run.trials} trained (also: {sorted(map(str, other))}"
                        + (f"; {reasons[0][:80]}" if reasons else "") + ")")
    dev = ctx.device.type
    off = [r["number"] for r in trained if not str(r["proxy_device"]).startswith(dev)
           or not str(r["latency_device"]).startswith(dev)]
    if off:
        problems.append(f"c{run.concurrency}: trials {off} did not train or measure on {dev}")
    return problems


def sec_ray(ctx: Context) -> Result:
    """1 vs 4 concurrent trials through Ray Tune: trials per hour."""
    p = ctx.plan
    runs = {1: run_search(ctx, p.c1_trials, 1), p.concurrency: run_search(ctx, p.search_trials, p.concurrency)}
    rates = {c: _rate(r) for c, r in runs.items()}
    rows = [[c, r.trials, rates[c]["trained"], r.wall_s, rates[c]["span_s"], rates[c]["per_hour_span"],
             rates[c]["per_hour_wall"], rates[c]["train_s_mean"]] for c, r in runs.items()]
    print(table(["concurrency", "trials", "trained", "wall s", "span s", "trials/h (span)", "trials/h (wall)",
                 "proxy train s (mean)"], rows))
    for c, r in runs.items():
        print(f"  concurrency {c}: {r.breakdown or '(no wall breakdown in the search log)'}")
    problems = [q for r in runs.values() for q in _search_problems(ctx, r)]
    one, many = rates[1]["per_hour_span"], rates[p.concurrency]["per_hour_span"]
    share = "--gpus-per-trial 0.25" if ctx.cuda else "--cpus-per-trial 0.5"
    figure = (f"{share}: trials/h {one:.0f} at concurrency 1, {many:.0f} at {p.concurrency} "
              f"({many / one:.2f}x; process wall incl. Ray start: {rates[1]['per_hour_wall']:.0f} / "
              f"{rates[p.concurrency]['per_hour_wall']:.0f})")
    if problems:
        figure += "; " + "; ".join(problems)
    met = many >= 1000
    return Result(figure, ">= 1000 trials/GPU-h at concurrency 4 (128x256, 300 steps, x16)",
                  not problems and (met or not ctx.judge),
                  details={"rates": {str(c): v for c, v in rates.items()}, "problems": problems,
                           "breakdown": {str(c): r.breakdown for c, r in runs.items()}})


def sec_search(ctx: Context) -> Result:
    """The 20-trial search end to end on the device (the ray section's concurrent arm), then its export."""
    p = ctx.plan
    run = run_search(ctx, p.search_trials, p.concurrency)
    problems = _search_problems(ctx, run)
    out = ctx.tmp / "export"
    cmd = [sys.executable, "-m", "nasseg", "export", "--storage", run.storage, "--study", STUDY, "--out", str(out),
           "--remeasure", "--no-progress", *(["--top", str(p.export_top)] if p.export_top else [])]
    log = ctx.tmp / "export.log"
    print(f"  nasseg export --remeasure (log {log})", flush=True)
    rc, wall = _run(cmd, log, ctx, "the export")
    summary = json.loads((out / "export.json").read_text()) if (out / "export.json").exists() else {}
    incomplete = summary.get("incomplete") or []
    exported = summary.get("exported", 0)
    warn = False
    if rc != 0:
        device_free = bool(summary) and incomplete and all(
            str(pr).startswith("ONNX export") for i in incomplete for pr in i["problems"])
        if device_free:  # the ONNX exporter's limits are the same on every device: not a GPU-readiness failure
            warn = True
        else:
            problems.append(f"export exited {rc}: {_tail(log)}")
    rate = _rate(run)
    figure = (f"{rate['trained']}/{run.trials} trained on {ctx.device.type} in {run.wall_s:.0f} s; export "
              f"(--remeasure) {exported - len(incomplete)}/{exported} complete in {wall:.0f} s, max ONNX diff "
              f"{summary.get('max_onnx_diff', float('nan')):.2g}")
    if incomplete:
        figure += f"; incomplete: {incomplete[0]['folder']}: {incomplete[0]['problems'][0][:90]}"
    if problems:
        figure += "; " + "; ".join(problems)
    return Result(figure, "every trial trained + measured on the device; export complete", not problems,
                  warn=warn and not problems,
                  details={"search": dataclasses.asdict(run) | {"log": str(run.log)}, "export": summary,
                           "export_rc": rc, "export_wall_s": wall, "problems": problems})


RUNNERS: dict[str, Callable[[Context], Result]] = {
    "synthetic": sec_synthetic, "latency": sec_latency, "amp": sec_amp, "ray": sec_ray, "search": sec_search,
}


# ----------------------------------------------------------------------------------------------- main
def run_section(name: str, ctx: Context) -> Row:
    t0 = time.monotonic()
    print(f"[{name}] {RUNNERS[name].__doc__.splitlines()[0]}", flush=True)
    try:
        ctx.check(f"section {name}")
        r = RUNNERS[name](ctx)
        status = "FAIL" if not r.ok else "WARN" if r.warn else "pass" if ctx.judge else "ran"
        row = Row(name, r.figure, r.target, status, time.monotonic() - t0, r.details)
    except Skipped as e:
        row = Row(name, f"skipped: {e}", "", "skip", time.monotonic() - t0)
    except Exception as e:  # one failing section must not stop the others
        print(f"[{name}] raised:", file=sys.stderr)
        traceback.print_exc()
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        row = Row(name, f"{type(e).__name__}: {reason}"[:200], "", "ERROR", time.monotonic() - t0)
    finally:
        if ctx.cuda:
            torch.cuda.empty_cache()
    print(f"[{name}] {row.status} in {row.seconds:.1f} s", flush=True)
    return row


def machine_info(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    info = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({cpu_model()})",
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda
            else None, "python": platform.python_version(), "nproc": os.cpu_count(), "cpu": cpu_model(),
            "host": platform.node(), "load_average_start": load_average()}
    if cuda:
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["capability"] = f"{props.major}.{props.minor}"
    return info


def render(info: dict, rows: Sequence[Row], mode: str, wall: float) -> tuple[str, str]:
    """(text, markdown) of the final table with the machine line above it; the long figure column is last."""
    head = (f"gpu_check ({mode}) on {info['device']}; torch {info['torch']}, CUDA {info['cuda'] or '-'}, "
            f"cuDNN {info['cudnn'] or '-'}; python {info['python']}; nproc {info['nproc']}; load average "
            f"{info['load_average_start']} -> {info['load_average_end']}; {info['date_utc']}; {wall:.0f} s")
    header = ["section", "status", "s", "target", "figure"]
    cells = [[r.section, r.status, f"{r.seconds:.1f}", r.target, r.figure] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header[:-1])]

    def line(c: Sequence[str]) -> str:
        return "  ".join([*(v.ljust(w) for v, w in zip(c, widths)), c[-1]]).rstrip()

    text = "\n".join([head, line(header), line(["-" * w for w in widths] + ["-" * 6]), *map(line, cells)])
    md = [head, "", "| " + " | ".join(header) + " |", "|---|---|---:|---|---|"]
    md += ["| " + " | ".join(v.replace("|", "/") for v in c) + " |" for c in cells]
    return text, "\n".join(md) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None,
                    help="cuda (default when available) or cpu; without CUDA the default is the CPU dry path")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few trials (the dry path's sizes)")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="time budget in seconds (default 480); sections left when it is spent are skipped")
    ap.add_argument("--out", default=None, help="folder for gpu_check.md and gpu_check.json")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (studies, logs, export)")
    args = ap.parse_args(argv)

    if args.device is None:
        if torch.cuda.is_available():
            args.device = "cuda"
        else:
            print(NO_CUDA_LINE, flush=True)
            args.device, args.quick = "cpu", True
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch.cuda.is_available() is False on this machine", file=sys.stderr)
        return 2
    only = SECTIONS if args.only is None else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"--only: unknown section(s) {unknown}; valid: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the search's CPU trials and latency records: one thread, shared machines
    plan = QUICK if args.quick else FULL
    mode = f"{device.type}{', --quick' if args.quick else ''}"
    tmp = Path(tempfile.mkdtemp(prefix="nasseg-gpu-check-"))
    ctx = Context(device, plan, args.quick, args.budget_s, tmp)
    info = machine_info(device)
    print(f"gpu_check ({mode}): {info['device']}; torch {info['torch']}, CUDA {info['cuda'] or '-'}; "
          f"budget {args.budget_s:g} s; work folder {tmp}", flush=True)
    load = CpuShare().start()
    t0 = time.monotonic()
    try:
        rows = [run_section(name, ctx) for name in only]
    finally:
        if args.out:  # the subprocesses' logs go with the table
            for log in tmp.rglob("*.log"):
                dest = Path(args.out) / "logs" / log.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, dest)
        if args.keep:
            print(f"work folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - t0
    info["load_average_end"] = load_average()
    info["cores"] = load.report()
    text, md = render(info, rows, mode, wall)
    print()
    print(text)
    print(info["cores"])
    failed = [r.section for r in rows if r.status in FAILING]
    print(f"gpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'all sections ' + mode + ' ok'}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.md").write_text(md + "\n" + info["cores"] + "\n")
        payload = {"mode": mode, "plan": dataclasses.asdict(plan), "machine": info, "wall_s": wall,
                   "rows": [dataclasses.asdict(r) for r in rows]}
        (out / "gpu_check.json").write_text(json.dumps(payload, indent=1, default=str, allow_nan=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
