"""nasseg's proxy-training loop against a minimal hand-written PyTorch loop: images per second.

Both loops train the same network (same initial weights) on the same pre-generated tensors, in the same
batch order, for the same number of steps, with the same loss (CE on the main output, 0.4 x CE on each
auxiliary output, STDC's detail loss when the network has a detail head), SGD with momentum, weight
decay on weights only and a poly schedule; on CUDA both use float16 autocast with gradient scaling.  The
data are synthetic scenes rendered once before timing and kept on the device, so the comparison is of
the loops alone.  nasseg's figure is ``Metrics.images_per_second`` (training steps only; its final
evaluation is not timed); the hand-written loop is timed from its first step to the synchronised end
of its last.  The loops alternate, taking turns to go first, after one untimed warm-up run of each;
the figures are medians over the repeats and the ratio is the median of the per-repeat ratios.

    python bench/proxy_loop.py      # CPU (1 thread), stdc1_seg, 4 x 128x256, 20 steps, 5 repeats
    python bench/proxy_loop.py --device cuda --batch 16 --size 512x1024 --steps 50
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

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
                ) -> float:
    """A minimal training loop doing the same work as nasseg's; returns images per second."""
    cuda = device.type == "cuda"
    model.to(device).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, momentum=recipe.momentum)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    aggregate = DetailAggregate(255).to(device)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    b = recipe.batch_size
    start = time.perf_counter()
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = recipe.lr * (1 - step / recipe.steps) ** recipe.poly_power
        x, y = data.batch(order[step * b:(step + 1) * b], device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
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
    return recipe.steps * b / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--preset", default="stdc1_seg", help=f"network (one of {', '.join(presets.names())})")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", default="128x256", help="HxW (default 128x256)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads on CPU (default 1: on a shared machine more threads make the "
                         "figures swing by several times; 0 keeps torch's default)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
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

    def run_nasseg() -> float:
        return train_model(copy.deepcopy(initial), recipe, data, val, seed, device).images_per_second

    def run_handwritten() -> float:
        return handwritten(copy.deepcopy(initial), data, recipe, seed, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.preset}, batch {args.batch} x {h}x{w}, {args.steps} steps, {args.repeats} repeats on {name} "
          f"(torch {torch.__version__})")
    run_nasseg(), run_handwritten()  # warm-up: allocator, cuDNN autotuning, lazy imports
    rows = []
    print(f"{'repeat':>6} {'nasseg img/s':>13} {'handwritten img/s':>18} {'ratio':>7}")
    for r in range(args.repeats):
        if r % 2 == 0:  # alternate the order, so a drift in machine load favours neither loop
            ours, theirs = run_nasseg(), run_handwritten()
        else:
            theirs, ours = run_handwritten(), run_nasseg()
        rows.append((ours, theirs, ours / theirs))
        print(f"{r + 1:>6} {ours:>13.2f} {theirs:>18.2f} {ours / theirs:>7.3f}")
    ratio = statistics.median(row[2] for row in rows)
    print(f"{'median':>6} {statistics.median(row[0] for row in rows):>13.2f} "
          f"{statistics.median(row[1] for row in rows):>18.2f} {ratio:>7.3f}")
    print(f"ratio nasseg/handwritten = {ratio:.3f} (target >= 0.95)")
    return ratio


if __name__ == "__main__":
    main()
