"""How stable nasseg's latency records are, idle and beside a training proxy, with and without isolation.

Each record is ``nasseg.cost.measure_latency`` (``--warmup`` + ``--runs`` timed forward passes, 1 CPU
thread); the CV of a record is over its timed runs, the CV between records is of their medians.

A proxy trains in a separate process throughout (``--train-preset``, SGD on synthetic data, its own
``--train-threads``), and each preset is measured under three conditions, in rotating order within
every repeat (so a drift in the machine's load hits all three alike):

* ``idle``: the proxy is paused (blocked on an event, using no CPU) and has been for ``--settle-s``
  seconds: nothing trains, as on an idle device;
* ``isolated``: the measurement asks the proxy to pause, waits until it has finished its current
  batch, measures at once, and lets it go on -- measurement between batches, which is what the search
  driver does (it measures only while no proxy trains);
* ``concurrent``: the proxy keeps training during the measurement (no isolation).

Targets: CV <= 2 % idle; isolated median within 5 % of idle.

    python bench/latency_stability.py                            # stdc1_seg, regseg, lednet at 128x256, 4 repeats
    python bench/latency_stability.py --size 256x512 --repeats 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import torch
from _common import CpuShare, check_device, cv, device_arg, load_average, machine, median, parse_hw, table

from nasseg import presets
from nasseg.build import build
from nasseg.cost import measure_latency

CONDITIONS = ("idle", "isolated", "concurrent")


# ------------------------------------------------------------------------------------------- the proxy
def _train(preset: str, size: tuple[int, int], batch: int, threads: int, device: str, pause: mp.Event,
           paused: mp.Event, resume: mp.Event, started: mp.Event, stop: mp.Event, steps: mp.Value) -> None:
    """A proxy training loop in its own process; between two batches it honours ``pause``."""
    import torch.nn.functional as F

    from nasseg.data import SyntheticDataset

    torch.set_num_threads(threads)
    dev = torch.device(device)
    ds = SyntheticDataset("train", size, batch * 4)
    x_all, y_all = ds.batch(range(batch * 4), dev)
    torch.manual_seed(0)
    model = build(presets.get(preset).genome, ds.num_classes).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    i = 0
    while not stop.is_set():
        if pause.is_set():  # between batches: let the driver measure on a quiet device
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            paused.set()
            resume.wait()  # blocked, not spinning, while the driver measures
            continue
        k = (i % 4) * batch
        x, y = x_all[k:k + batch], y_all[k:k + batch]
        out = model(x)
        loss = F.cross_entropy(out["out"], y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        i += 1
        steps.value = i
        started.set()


class Proxy:
    """A training proxy in a spawned process, with a pause/resume handshake."""

    def __init__(self, args: argparse.Namespace):
        ctx = mp.get_context("spawn")
        self.pause, self.paused, self.resume = ctx.Event(), ctx.Event(), ctx.Event()
        self.started, self.stop = ctx.Event(), ctx.Event()
        self.steps = ctx.Value("i", 0)
        self.proc = ctx.Process(target=_train, daemon=True, args=(
            args.train_preset, parse_hw(args.train_size, "--train-size"), args.train_batch, args.train_threads,
            args.device, self.pause, self.paused, self.resume, self.started, self.stop, self.steps))

    def __enter__(self) -> Proxy:
        self.proc.start()
        if not self.started.wait(600):
            raise SystemExit("the training proxy did not finish a step in 600 s")
        return self

    def hold(self) -> None:
        self.resume.clear()
        self.pause.set()
        if not self.paused.wait(600):
            raise SystemExit("the training proxy did not pause within 600 s")

    def release(self) -> None:
        self.paused.clear()
        self.pause.clear()
        self.resume.set()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.resume.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    device_arg(ap)
    ap.add_argument("--presets", default="stdc1_seg,regseg,lednet", help="comma-separated preset names")
    ap.add_argument("--size", default="128x256", help="latency resolution HxW (default 128x256)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="measurement threads (default: nasseg's, 1 on CPU)")
    ap.add_argument("--repeats", type=int, default=4, help="records per preset and condition (default 4)")
    ap.add_argument("--settle-s", type=float, default=1.0, help="idle: seconds the proxy has been paused before")
    ap.add_argument("--train-preset", default="stdc1_seg")
    ap.add_argument("--train-size", default="128x256")
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--train-threads", type=int, default=1)
    args = ap.parse_args(argv)
    dev = check_device(args.device)
    h, w = parse_hw(args.size)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    nets = {n: build(presets.get(n).genome, 19) for n in names}
    print(machine(dev))
    load = CpuShare().start()
    print(f"presets {', '.join(names)} at {h}x{w}, {args.warmup} warm-up + {args.runs} runs per record, "
          f"{args.repeats} records per condition; proxy: {args.train_preset} batch {args.train_batch} x "
          f"{args.train_size}, {args.train_threads} thread(s)")

    def record(name: str):
        return measure_latency(nets[name], (1, 3, h, w), dev, warmup=args.warmup, runs=args.runs,
                               threads=args.threads)

    recs: dict[tuple[str, str], list] = {(n, c): [] for n in names for c in CONDITIONS}
    steps_during = 0
    with Proxy(args) as proxy:
        def idle(n: str) -> None:
            proxy.hold()
            try:
                time.sleep(args.settle_s)  # nothing has trained for a while: an idle device
                recs[n, "idle"].append(record(n))
            finally:
                proxy.release()

        def isolated(n: str) -> None:
            proxy.hold()  # returns once the proxy has finished its current batch
            try:
                recs[n, "isolated"].append(record(n))
            finally:
                proxy.release()

        def concurrent(n: str) -> None:
            nonlocal steps_during
            before = proxy.steps.value
            recs[n, "concurrent"].append(record(n))
            steps_during += proxy.steps.value - before

        arms = [idle, isolated, concurrent]
        for r in range(args.repeats):
            for n in names:
                for arm in arms[r % 3:] + arms[:r % 3]:  # rotate the order: a drift in load favours none
                    arm(n)
        trained = proxy.steps.value
    print(f"the proxy trained {trained} steps, {steps_during} of them during concurrent measurements; "
          f"load average now {load_average()}")

    rows = []
    worst_cv = worst_iso = 0.0
    for n in names:
        idle = median(r.median_ms for r in recs[n, "idle"])
        for c in CONDITIONS:
            rs = recs[n, c]
            meds = [r.median_ms for r in rs]
            within = median(r.cv for r in rs)
            between = cv(meds)
            rows.append([n, c, len(rs), statistics.median(meds), 100 * within, 100 * between,
                         statistics.median(meds) / idle])
            if c == "idle":
                worst_cv = max(worst_cv, within, between)
            if c == "isolated":
                worst_iso = max(worst_iso, abs(statistics.median(meds) / idle - 1))
    print(table(["preset", "condition", "records", "median ms", "CV in record %", "CV between records %",
                 "vs idle"], rows))
    print(f"worst idle CV {100 * worst_cv:.2f} % (target <= 2 %); worst isolated deviation from idle "
          f"{100 * worst_iso:.2f} % (target <= 5 %)")
    print(load.report())
    print(f"ratio: worst |isolated / idle - 1| = {worst_iso:.4f} (target <= 0.05)")
    return worst_iso


if __name__ == "__main__":
    main()
