"""nasseg's proxy-training loop against a minimal hand-written PyTorch loop: images per second.

Both loops train the same network (same initial weights) on the same pre-generated tensors, in the same
batch order, for the same number of steps, with the same loss (CE on the main output, 0.4 x CE on each
auxiliary output, STDC's detail loss when the network has a detail head), SGD with momentum, weight
decay on weights only and a poly schedule.  The data are synthetic scenes rendered once before timing
and kept on the device, so the comparison is of the loops alone.  nasseg's figure is
``Metrics.images_per_second`` (training steps only; its final evaluation is not timed); the hand-written
loop is timed from its first step to the synchronised end of its last.  After one short untimed warm-up
run of each arm, the arms alternate (the order reversed every other repeat); figures are medians over
the repeats and a ratio is the median of the per-repeat ratios.

On CPU (1 thread by default) every arm is also timed on the thread's CPU clock, which other processes
on a shared machine barely move (for nasseg: ``nasseg.train.time.perf_counter`` is wrapped to read
both clocks at the same calls that make ``train_seconds``).  A third arm, ``nasseg-nofill``, runs
nasseg's loop with ``torch.utils.deterministic.fill_uninitialized_memory = False``: nasseg turns on
``torch.use_deterministic_algorithms`` while training on CPU, which by default also fills every new
``torch.empty`` tensor with NaN -- a cost the hand-written loop does not pay (see bench/README.md).

On CUDA the loops run in three precisions side by side: fp32, float16 autocast + gradient scaling
(``amp``), and amp + channels-last (``amp+cl``); the table gives each loop's images/s in each, the ratio
per precision, and nasseg's speed-up of amp+cl over fp32.

    python bench/proxy_loop.py                    # CPU (1 thread), stdc1_seg, 4 x 128x256, 10 steps, 5 repeats
    python bench/proxy_loop.py --device cuda --batch 16 --size 512x1024 --steps 50
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from _common import CpuShare, check_device, interleaved, machine, median, parse_hw, table

import nasseg.train
from nasseg import presets
from nasseg.build import build
from nasseg.data import SyntheticDataset
from nasseg.heads.detail import DetailAggregate, detail_loss
from nasseg.train import Recipe, train_model

AUX_WEIGHT = 0.4


class Pregenerated:
    """In-memory dataset of normalised images and labels on the device; ``batch`` slices it."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int):
        self.images, self.labels, self.num_classes = images, labels, num_classes
        self.ignore_index = 255
        self.size = tuple(images.shape[-2:])

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, device=self.images.device)
        return self.images[idx], self.labels[idx]


def handwritten(model: torch.nn.Module, data: Pregenerated, recipe: Recipe, seed: int, device: torch.device
                ) -> tuple[float, float]:
    """A minimal training loop doing the same work as nasseg's; returns (images/s wall, images/s CPU)."""
    cuda = device.type == "cuda"
    amp = recipe.amp and cuda
    memory_format = torch.channels_last if recipe.channels_last and cuda else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, momentum=recipe.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    aggregate = DetailAggregate(255).to(device)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    b = recipe.batch_size
    start, start_cpu = time.perf_counter(), time.thread_time()
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = recipe.lr * (1 - step / recipe.steps) ** recipe.poly_power
        x, y = data.batch(order[step * b:(step + 1) * b], device)
        x = x.contiguous(memory_format=memory_format)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = model(x)
            loss = F.cross_entropy(out["out"].float(), y, ignore_index=255)
            for aux in out["aux"]:
                loss = loss + AUX_WEIGHT * F.cross_entropy(aux.float(), y, ignore_index=255)
            if out["detail"] is not None:
                loss = loss + detail_loss(out["detail"].float(), aggregate(y), y != 255)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if cuda:
        torch.cuda.synchronize(device)
    images = recipe.steps * b
    return images / (time.perf_counter() - start), images / (time.thread_time() - start_cpu)


class _TwoClocks:
    """Stands in for the ``time`` module inside nasseg.train: ``perf_counter`` also notes the thread's CPU clock."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def perf_counter(self) -> float:
        wall = time.perf_counter()
        self.calls.append((wall, time.thread_time()))
        return wall


def nasseg_loop(model: torch.nn.Module, data: Pregenerated, val: Pregenerated, recipe: Recipe, seed: int,
                device: torch.device, fill: bool = True) -> tuple[float, float]:
    """nasseg's train_model; returns (Metrics.images_per_second, images/s on the CPU clock or NaN)."""
    clocks = _TwoClocks()
    saved_time, saved_fill = nasseg.train.time, torch.utils.deterministic.fill_uninitialized_memory
    nasseg.train.time = clocks  # type: ignore[assignment]
    torch.utils.deterministic.fill_uninitialized_memory = fill
    try:
        m = train_model(model, recipe, data, val, seed, device)
    finally:
        nasseg.train.time, torch.utils.deterministic.fill_uninitialized_memory = saved_time, saved_fill
    # train_seconds is the first two readings' difference when eval_every = 0 (start, end of training)
    cpu = float("nan")
    if len(clocks.calls) >= 2 and abs(clocks.calls[1][0] - clocks.calls[0][0] - m.train_seconds) < 1e-6:
        cpu = m.steps_done * recipe.batch_size / (clocks.calls[1][1] - clocks.calls[0][1])
    return m.images_per_second, cpu


def main(argv: Sequence[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu (default) or cuda")
    ap.add_argument("--preset", default="stdc1_seg", help=f"network (one of {', '.join(presets.names())})")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", default="128x256", help="HxW (default 128x256)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads on CPU (default 1: on a shared machine more threads make the "
                         "figures swing by several times; 0 keeps torch's default)")
    args = ap.parse_args(argv)

    device = check_device(args.device)
    cuda = device.type == "cuda"
    if args.threads and not cuda:
        torch.set_num_threads(args.threads)
    h, w = parse_hw(args.size)
    recipe = Recipe(resolution=(h, w), batch_size=args.batch, steps=args.steps, loss="ce", flip=False,
                    aux_weight=AUX_WEIGHT, eval_every=0, log_every=10, num_workers=0, amp=True)
    n_images = args.batch * args.steps
    synthetic = SyntheticDataset("train", (h, w), n_images)
    images, labels = synthetic.batch(range(n_images), device)
    data = Pregenerated(images, labels, synthetic.num_classes)
    val = Pregenerated(images[: args.batch], labels[: args.batch], synthetic.num_classes)

    torch.manual_seed(0)
    initial = build(presets.get(args.preset).genome, synthetic.num_classes)
    seed = 0

    if cuda:
        variants = {"fp32": dict(amp=False, channels_last=False), "amp": dict(amp=True, channels_last=False),
                    "amp+cl": dict(amp=True, channels_last=True)}
    else:
        variants = {"cpu": dict(amp=False, channels_last=False)}
    arms: dict[str, Callable[[], tuple[float, float]]] = {}
    warm: list[Callable[[], object]] = []
    for v, kw in variants.items():
        r = dataclasses.replace(recipe, **kw)
        short = dataclasses.replace(r, steps=min(2, r.steps))
        arms[f"nasseg {v}"] = lambda r=r: nasseg_loop(copy.deepcopy(initial), data, val, r, seed, device)
        arms[f"handwritten {v}"] = lambda r=r: handwritten(copy.deepcopy(initial), data, r, seed, device)
        warm += [lambda r=short: nasseg_loop(copy.deepcopy(initial), data, val, r, seed, device),
                 lambda r=short: handwritten(copy.deepcopy(initial), data, r, seed, device)]
    if not cuda:
        arms["nasseg-nofill cpu"] = lambda: nasseg_loop(copy.deepcopy(initial), data, val, recipe, seed, device,
                                                        fill=False)

    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(machine(device))
    load = CpuShare().start()
    print(f"{args.preset}, batch {args.batch} x {h}x{w}, {args.steps} steps, {args.repeats} repeats on {name}")
    for f in warm:  # allocator, cuDNN autotuning, lazy imports
        f()
    res = interleaved(arms, args.repeats)

    rows, ratios = [], {}
    for v in variants:
        ours, theirs = res[f"nasseg {v}"], res[f"handwritten {v}"]
        wall = [a[0] / b[0] for a, b in zip(ours, theirs)]
        cpu = [a[1] / b[1] for a, b in zip(ours, theirs)]
        ratios[v] = median(wall)
        for r, (a, b) in enumerate(zip(ours, theirs)):
            rows.append([v, r + 1, a[0], b[0], wall[r], *([a[1], b[1], cpu[r]] if not cuda else [])])
        rows.append([v, "median", median(a[0] for a in ours), median(b[0] for b in theirs), ratios[v],
                     *([median(a[1] for a in ours), median(b[1] for b in theirs), median(cpu)] if not cuda else [])])
    header = ["precision", "repeat", "nasseg img/s", "handwritten img/s", "ratio"]
    if not cuda:
        header += ["nasseg img/CPU-s", "handwritten img/CPU-s", "CPU ratio"]
    print(table(header, rows))
    if cuda:
        ours = {v: median(a[0] for a in res[f"nasseg {v}"]) for v in variants}
        print(f"nasseg amp+channels_last vs fp32: {ours['amp+cl'] / ours['fp32']:.2f}x images/s "
              f"(amp alone {ours['amp'] / ours['fp32']:.2f}x)")
        ratio = ratios["amp+cl"]
    else:
        nofill, theirs = res["nasseg-nofill cpu"], res["handwritten cpu"]
        print(f"nasseg with fill_uninitialized_memory=False set by hand (train_model now sets it too): ratio "
              f"{median(a[0] / b[0] for a, b in zip(nofill, theirs)):.3f} wall, "
              f"{median(a[1] / b[1] for a, b in zip(nofill, theirs)):.3f} CPU clock")
        ratio = ratios["cpu"]
        print(f"CPU-clock ratio nasseg/handwritten = "
              f"{median(a[1] / b[1] for a, b in zip(res['nasseg cpu'], theirs)):.3f}")
    print(load.report())
    print(f"ratio nasseg/handwritten = {ratio:.3f} (target >= 0.95)")
    return ratio


if __name__ == "__main__":
    main()
