"""Proxy training and evaluation (torch only).

:func:`proxy_train` is what a search trial runs: open the dataset, build the genome, train it with a
:class:`Recipe` and return :class:`Metrics`.  :func:`train_model` does the training on an already built
model and datasets; :func:`evaluate` computes mIoU from one confusion matrix over a validation split.

Conventions
-----------
* Datasets yield ``(uint8 image [3, H, W], int64 label [H, W])`` with ``num_classes`` and
  ``ignore_index`` attributes (``nasseg.data``).  Items go through ``ProxyTransform`` (training: random
  rescale, crop to ``recipe.resolution``, flip; evaluation: resize to it), which also normalises them
  with the ImageNet mean and std.  A dataset that renders whole batches (``batch(indices, device)``,
  as ``SyntheticDataset``) is used at its own size, flipped only, and never leaves the device.
* mIoU is measured at the proxy resolution: labels are resized (nearest) with the images, not the
  logits up to the original label size.
* The model returns logits ``[N, C, H, W]`` at input size in eval mode and, in train mode, a dict
  ``{"out", "aux", "detail", "boundary"}`` (see ``build.py``).  A plain tensor in train mode is taken
  as ``{"out": tensor}``.
* IoU of class c = TP / (TP + FP + FN) over the whole split.  A class absent from both the prediction
  and the ground truth has IoU NaN and is left out of the mean; ``miou`` and ``pixel_acc`` are fractions
  in [0, 1], not percentages.  Pixels labelled ``ignore_index`` are left out of everything.
* Determinism: for a fixed seed a CPU run is repeatable (``torch.manual_seed``, a seeded
  ``torch.Generator`` for shuffling and DataLoader workers, ``torch.use_deterministic_algorithms`` while
  training on CPU).  On CUDA, cuDNN and atomics make runs close but not bit-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.data import ProxyTransform, describe_spec, normalize, open_dataset
from nasseg.errors import ConfigError, NassegError
from nasseg.heads.boundary import bas_labels, boundary_loss, boundary_target
from nasseg.heads.detail import DetailAggregate, detail_loss

__all__ = [
    "Recipe",
    "Metrics",
    "TrainingDiverged",
    "evaluate",
    "miou_from_confusion",
    "ohem_cross_entropy",
    "train_model",
    "proxy_train",
]


class TrainingDiverged(NassegError, RuntimeError):
    """The training loss became NaN or infinite; ``step`` is the first step (1-based) where it did."""

    def __init__(self, step: int, loss: float):
        self.step, self.loss = step, loss
        super().__init__(
            f"training diverged: loss = {loss} at step {step}; lower the learning rate, add warm-up "
            "or check the model for unstable operations"
        )


# ------------------------------------------------------------------------------------------------ recipe
_Rule = tuple[Callable[[object], bool], str]  # (check, description of the valid values)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int_at_least(low: int) -> _Rule:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def _number_in(low: float, high: float | None, low_open: bool = False) -> _Rule:
    def ok(v: object) -> bool:
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        return above and (high is None or v <= high)

    lo = f"> {low}" if low_open else f">= {low}"
    return ok, f"a number {lo}" + ("" if high is None else f" and <= {high}")


def _choice(*choices: str) -> _Rule:
    return (lambda v: v in choices), "one of " + ", ".join(map(repr, choices))


def _bool() -> _Rule:
    return (lambda v: isinstance(v, bool)), "true or false"


def _pair(check: Callable[[object], bool], what: str) -> _Rule:
    return (lambda v: isinstance(v, tuple) and len(v) == 2 and all(check(x) for x in v)), f"a pair of {what}"


def _optional(rule: _Rule) -> _Rule:
    check, what = rule
    return (lambda v: v is None or check(v)), f"null (none) or {what}"


# One rule per recipe field; cross-field rules are in Recipe.__post_init__.
_RULES: dict[str, _Rule] = {
    "resolution": _pair(lambda v: _is_int(v) and v >= 8, "integers >= 8 (H, W)"),
    "batch_size": _int_at_least(1),
    "steps": _int_at_least(1),
    "lr": _number_in(0.0, None, low_open=True),
    "optimizer": _choice("sgd", "adamw"),
    "momentum": _number_in(0.0, 1.0),
    "weight_decay": _number_in(0.0, None),
    "schedule": _choice("poly", "cosine"),
    "poly_power": _number_in(0.0, None, low_open=True),
    "warmup_steps": _int_at_least(0),
    "loss": _choice("ce", "ohem", "wce"),
    "ohem_thresh": _number_in(0.0, 1.0, low_open=True),
    "ohem_min_kept": _number_in(0.0, 1.0, low_open=True),
    "aux_weight": _number_in(0.0, None),
    "detail_weight": _number_in(0.0, None),
    "boundary_weight": _number_in(0.0, None),
    "bas_weight": _number_in(0.0, None),
    "amp": _bool(),
    "channels_last": _bool(),
    "eval_every": _int_at_least(0),
    "eval_batches": _optional(_int_at_least(1)),
    "log_every": _int_at_least(1),
    "scale": _pair(lambda v: _is_number(v) and v > 0, "numbers > 0 (min, max)"),
    "flip": _bool(),
    "train_length": _int_at_least(1),
    "val_length": _int_at_least(1),
    "num_workers": _int_at_least(0),
}


@dataclass(frozen=True)
class Recipe:
    """How a candidate is trained: a frozen, validated, JSON-serialisable set of hyper-parameters.

    resolution       (H, W) of training crops, of evaluation and of synthetic images
    batch_size       images per step (also per evaluation batch)
    steps            optimiser steps
    lr               peak learning rate (after warm-up)
    optimizer        "sgd" (with ``momentum``) or "adamw"
    weight_decay     on weights only; BN parameters, biases and other 1-d parameters get none
    schedule         "poly" (lr * (1 - t/T) ** poly_power) or "cosine", both to 0 at ``steps``,
                     after ``warmup_steps`` of linear warm-up
    loss             "ce", "ohem" (BiSeNet/STDC online hard example mining: the pixels whose
                     probability of the true class is below ``ohem_thresh``, and at least the hardest
                     ``ohem_min_kept`` fraction of the valid pixels) or "wce" (cross-entropy with each class
                     weighted by :func:`class_weights`: rare classes up-weighted, up to 10x, none down-weighted)
    aux_weight       weight of each auxiliary head's loss (same criterion as the main output;
                     0.4 as PIDNet/DDRNet, STDC and BiSeNet use 1.0)
    detail_weight    STDC detail loss (BCE + Dice), when the model has a detail head (1.0 as STDC)
    boundary_weight  PIDNet boundary BCE, when the model has a boundary head (20.0 as PIDNet)
    bas_weight       PIDNet boundary-awareness CE, when the model has a boundary head (1.0 as PIDNet)
    amp              float16 autocast + gradient scaling; used only on CUDA
    channels_last    channels-last memory format; used only on CUDA
    eval_every       evaluate every this many steps (0: only at the end); ``callback`` runs after each
    eval_batches     batches per intermediate evaluation (None: the whole split); the final
                     evaluation always covers the whole validation split
    log_every        steps per ``loss_curve`` entry; also how often the loss is checked for NaN / inf
    scale, flip      random rescale range and horizontal flip of ``ProxyTransform`` for datasets read
                     item by item.  Batch-rendered (synthetic) data are only flipped: random crops
                     could cut off the beacon bars its token classes depend on (nasseg.data.synthetic)
    train_length, val_length   number of items in the synthetic dataset's splits
    num_workers      DataLoader worker processes for datasets read item by item (synthetic data is
                     rendered in-process, on the training device)
    """

    resolution: tuple[int, int] = (256, 512)
    batch_size: int = 8
    steps: int = 2000
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "poly"
    poly_power: float = 0.9
    warmup_steps: int = 0
    loss: str = "ohem"
    ohem_thresh: float = 0.7
    ohem_min_kept: float = 1 / 16
    aux_weight: float = 0.4
    detail_weight: float = 1.0
    boundary_weight: float = 20.0
    bas_weight: float = 1.0
    amp: bool = True
    channels_last: bool = False
    eval_every: int = 0
    eval_batches: int | None = None
    log_every: int = 10
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    train_length: int = 512
    val_length: int = 64
    num_workers: int = 2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON gives lists where the recipe holds pairs
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            check, valid = _RULES[f.name]
            if not check(value):
                raise ConfigError(f"recipe field '{f.name}' = {value!r} is not allowed; valid: {valid}")
            if f.type == "float":  # an int given for a float is stored as a float: one JSON, one recipe_id
                object.__setattr__(self, f.name, float(value))
        object.__setattr__(self, "scale", tuple(map(float, self.scale)))
        if self.scale[0] > self.scale[1]:
            raise ConfigError(f"recipe field 'scale' = {self.scale!r} is not allowed; valid: min <= max")
        if self.warmup_steps >= self.steps:
            raise ConfigError(
                f"recipe field 'warmup_steps' = {self.warmup_steps} is not allowed; valid: fewer than "
                f"steps ({self.steps})"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with sorted keys (pairs become lists)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(d.items())}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ConfigError."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(f"recipe: unknown field '{key}'; {hint}valid fields: {', '.join(names)}")
        return cls(**d)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def recipe_id(self) -> str:
        """12 hex digits of the SHA-256 of the canonical JSON (like ``genome_id``); the same everywhere."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metrics:
    """What one training run returns.

    ``miou``, ``per_class_iou`` and ``pixel_acc`` come from the last evaluation (the whole validation
    split when the run completed; the last intermediate evaluation when a callback stopped it).
    ``per_class_iou`` holds NaN for a class absent from both prediction and ground truth (excluded from
    ``miou``).  ``loss_curve``: (steps done, mean training loss since the previous
    entry), an entry every ``log_every`` steps and before each evaluation.
    ``eval_history``: (steps done, mIoU) per evaluation.  ``train_seconds`` counts the training steps
    (data included, evaluation excluded); ``images_per_second`` = steps_done * batch_size / train_seconds.
    ``status``: "completed"; "stopped" when the callback ended the run early; "running" in the
    snapshots passed to the callback.
    """

    miou: float
    per_class_iou: tuple[float, ...]
    pixel_acc: float
    loss_curve: tuple[tuple[int, float], ...]
    eval_history: tuple[tuple[int, float], ...]
    train_seconds: float
    images_per_second: float
    steps_done: int
    device: str
    seed: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: tuples become lists and NaN becomes None."""

        def safe(x: Any) -> Any:
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, tuple):
                return [safe(v) for v in x]
            return x

        return {f.name: safe(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metrics:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(d) - names), sorted(names - set(d))
        if unknown or missing:
            raise ConfigError(f"metrics: unknown keys {unknown}, missing keys {missing}")

        def nan(x: Any) -> float:
            return math.nan if x is None else float(x)

        return cls(
            **{
                **d,
                "miou": nan(d["miou"]),
                "pixel_acc": nan(d["pixel_acc"]),
                "per_class_iou": tuple(nan(v) for v in d["per_class_iou"]),
                "loss_curve": tuple((int(s), nan(v)) for s, v in d["loss_curve"]),
                "eval_history": tuple((int(s), nan(v)) for s, v in d["eval_history"]),
            }
        )


# ---------------------------------------------------------------------------------------------- batching
# Two ways to get batches of (normalised float images [N,3,H,W], int64 labels [N,H,W]) on the device:
# * a dataset with ``batch(indices, device)`` (SyntheticDataset; any in-memory set offering it) renders or
#   slices whole batches directly on the device: no workers, no per-item work, no host-to-device copies;
# * any other dataset goes item by item through ProxyTransform, in DataLoader workers when
#   ``num_workers > 0`` (augmentation then draws from each worker's RNG, which the DataLoader seeds from
#   the run's generator) or in this process (torch's global RNG, seeded by the run's seed).
def _has_batch(dataset: object) -> bool:
    return callable(getattr(dataset, "batch", None))


class _Transformed(torch.utils.data.Dataset):
    """``dataset`` with ``transform(image, label)`` applied to each item (picklable for workers)."""

    def __init__(self, dataset, transform: Callable[[torch.Tensor, torch.Tensor], tuple]):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.dataset[i]
        return self.transform(image, label)


def _normalise_item(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return normalize(image), label


def _stack(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([im for im, _ in items]), torch.stack([lb for _, lb in items])


class _Batches:
    """Re-iterable: one pass over ``dataset`` per iteration, in batches on ``device``."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        device: torch.device,
        *,
        train: bool,
        size: tuple[int, int] | None,
        generator: torch.Generator | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
        flip: bool = False,
        workers: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.dataset, self.batch_size, self.device, self.train = dataset, batch_size, device, train
        self.generator, self.flip, self.memory_format = generator, flip, memory_format
        self.direct = _has_batch(dataset)
        self.loader = None
        if self.direct:
            own = tuple(getattr(dataset, "size", size or ()))
            if size is not None and own != tuple(size):
                raise ConfigError(
                    f"recipe field 'resolution' = {tuple(size)} differs from the size {own} of {dataset!r}; "
                    "batch-rendered datasets are used at their own size: open them at the recipe's resolution"
                )
            return
        ignore_index = int(getattr(dataset, "ignore_index", 255))
        if size is not None:
            transform = ProxyTransform(size, scale, flip, train, ignore_index=ignore_index)
            dataset = _Transformed(dataset, transform)
        else:
            dataset = _Transformed(dataset, _normalise_item)
        if workers > 0:
            self.loader = torch.utils.data.DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=train,
                generator=generator,
                num_workers=workers,
                drop_last=train,
                collate_fn=_stack,
                persistent_workers=train,  # the training loader is iterated once per epoch
                pin_memory=device.type == "cuda",
            )
        self.items = dataset

    def _indices(self) -> Iterator[list[int]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator).tolist() if self.train else list(range(n))
        stop = n - n % self.batch_size if self.train else n  # training drops the last partial batch
        for i in range(0, stop, self.batch_size):
            yield order[i : i + self.batch_size]

    def _host_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.loader is not None:
            yield from self.loader
        else:
            for idx in self._indices():
                yield _stack([self.items[j] for j in idx])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.direct:
            for idx in self._indices():
                x, y = self.dataset.batch(idx, self.device)
                if self.train and self.flip:  # the only augmentation of batch-rendered data
                    mirror = (torch.rand(len(idx), generator=self.generator) < 0.5).to(self.device)
                    x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
                    y = torch.where(mirror.view(-1, 1, 1), y.flip(-1), y)
                yield x.contiguous(memory_format=self.memory_format), y
            return
        for x, y in self._host_batches():
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)


def _forever(batches: _Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if len(batches.dataset) < batches.batch_size:
        raise ConfigError(
            f"recipe field 'batch_size' = {batches.batch_size} is larger than the training set "
            f"({len(batches.dataset)} items)"
        )
    while True:
        yield from batches


def _autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when ``enabled``; nothing otherwise."""
    return torch.autocast("cuda", dtype=torch.float16) if enabled else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------- evaluation
def miou_from_confusion(confusion: torch.Tensor) -> tuple[float, tuple[float, ...], float]:
    """(mIoU, per-class IoU, pixel accuracy) from a confusion matrix ``[C, C]``.

    Rows are ground truth, columns prediction.

    IoU_c = TP / (TP + FP + FN); NaN where TP + FP + FN = 0 (class in neither), excluded from the mean.
    """
    cm = confusion.double().cpu()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    total = cm.sum()
    if total == 0:
        raise NassegError("evaluation saw no labelled pixel: the split is empty or all of it is ignore_index")
    present = iou[~iou.isnan()]
    return float(present.mean()), tuple(float(v) for v in iou), float(tp.sum() / total)


def _logits(out: Any) -> torch.Tensor:
    return out["out"] if isinstance(out, Mapping) else out


def evaluate(
    model: nn.Module,
    dataset,
    *,
    size: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    max_batches: int | None = None,
    amp: bool = False,
    channels_last: bool = False,
    num_workers: int = 0,
) -> tuple[float, tuple[float, ...], float, torch.Tensor]:
    """Evaluate ``model`` over ``dataset`` (or its first ``max_batches`` batches).

    Returns (mIoU, per-class IoU, pixel accuracy, confusion ``[C, C]`` int64 on CPU), all from ONE
    confusion matrix accumulated over every evaluated pixel (``torch.bincount``), pixels labelled
    ``dataset.ignore_index`` excluded.  ``size`` (H, W): items are resized to it by
    ``ProxyTransform(train=False)`` (labels nearest), so the score is at the proxy resolution; None: items
    are used at their own size.  A dataset with ``batch(indices, device)`` (synthetic data) renders its
    batches at its own size.  Logits of another size than the labels are bilinearly resized.
    The model's train/eval mode is restored afterwards.
    """
    dev = torch.device(device)
    num_classes = int(dataset.num_classes)
    ignore_index = int(getattr(dataset, "ignore_index", 255))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batches = _Batches(dataset, batch_size, dev, train=False, size=size, workers=num_workers,
                       memory_format=memory_format)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=dev)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(amp and dev.type == "cuda"):
            for i, (x, y) in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                logits = _logits(model(x))
                if logits.shape[-2:] != y.shape[-2:]:
                    logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
                pred = logits.argmax(1)
                valid = y != ignore_index
                confusion += torch.bincount(
                    y[valid] * num_classes + pred[valid], minlength=num_classes * num_classes
                )
    finally:
        model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    miou, per_class, pixel_acc = miou_from_confusion(confusion)
    return miou, per_class, pixel_acc, confusion


# ------------------------------------------------------------------------------------------------ losses
def ohem_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    thresh: float = 0.7,
    min_kept: float = 1 / 16,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Online hard example mining cross-entropy (BiSeNet / STDC ``OhemCELoss``).

    Keeps every valid pixel whose loss exceeds -log(thresh) (probability of the true class below
    ``thresh``), and at least the ``ceil(min_kept * valid pixels)`` hardest ones; returns their mean.
    Divergence from STDC: ``min_kept`` is a fraction of the *valid* pixels (STDC: of all pixels, 1/16).
    Sync-free (no ``.item()``), so it does not stall a CUDA stream.
    """
    pixel_loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none")
    pixel_loss = pixel_loss.flatten()
    valid = (labels != ignore_index).flatten()
    n_valid = valid.sum()
    # ignored pixels have loss 0; push them below every valid one so they sort last and are never kept
    ranked, _ = torch.where(valid, pixel_loss, torch.full_like(pixel_loss, -1.0)).sort(descending=True)
    n_min = torch.clamp(torch.ceil(n_valid * min_kept), min=1)
    position = torch.arange(ranked.numel(), device=ranked.device)
    keep = ((position < n_min) | (ranked > -math.log(thresh))) & (position < n_valid)
    return (ranked * keep).sum() / keep.sum().clamp(min=1)


#: "wce": the training items whose labels give the class frequencies, and the largest weight.
CLASS_WEIGHT_ITEMS = 256
CLASS_WEIGHT_MAX = 10.0


def class_weights(dataset, size: tuple[int, int], ignore_index: int = 255) -> torch.Tensor:
    """Per-class weights of the "wce" loss: ``median(f) / f_c`` clipped to [1, CLASS_WEIGHT_MAX], where ``f_c``
    is class c's share of the labelled pixels of the first ``CLASS_WEIGHT_ITEMS`` items of ``dataset`` (labels
    resized to ``size`` by nearest neighbour, as training sees them) and the median is over the classes present.

    Median-frequency balancing (Eigen & Fergus, ICCV 2015; SegNet) with a floor of 1: the rare classes (thin
    structures, small context-dependent objects) weigh up to 10x, the large ones keep weight 1, so a short proxy
    learns the classes a longer training ranks networks by without slowing on the large ones.  A class absent
    from those items keeps weight 1.  Deterministic: the same items give the same weights.
    """
    n_cls = int(dataset.num_classes)
    counts = torch.zeros(n_cls, dtype=torch.float64)
    for i in range(min(len(dataset), CLASS_WEIGHT_ITEMS)):
        _, y = dataset[i]
        y = torch.as_tensor(y)
        if tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y[None, None].float(), size=tuple(size), mode="nearest")[0, 0].long()
        y = y[(y != ignore_index) & (y >= 0) & (y < n_cls)]
        counts += torch.bincount(y.flatten(), minlength=n_cls).double()
    freq = counts / counts.sum().clamp(min=1.0)
    present = freq > 0
    if not present.any():
        return torch.ones(n_cls)
    weight = (freq[present].median() / freq.clamp(min=1e-12)).clamp(1.0, CLASS_WEIGHT_MAX)
    weight[~present] = 1.0
    return weight.float()


class _Criterion:
    """Total loss of one train-mode output, weighted by the recipe.

    main + aux_weight * each aux (same criterion as main) + detail_weight * STDC detail loss (BCE + Dice
    against ``DetailAggregate``'s target) + boundary_weight * PIDNet's class-balanced boundary BCE +
    bas_weight * PIDNet's boundary-awareness term (main criterion on the pixels the boundary head calls
    boundary).  Ignore pixels are left out of every term.
    """

    def __init__(self, recipe: Recipe, ignore_index: int, device: torch.device,
                 weight: torch.Tensor | None = None):
        self.recipe, self.ignore_index = recipe, ignore_index
        self.detail_aggregate = DetailAggregate(ignore_index).to(device)
        self.weight = None if weight is None else weight.to(device)

    def segmentation(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        if self.recipe.loss == "ohem":
            return ohem_cross_entropy(
                logits,
                labels,
                thresh=self.recipe.ohem_thresh,
                min_kept=self.recipe.ohem_min_kept,
                ignore_index=self.ignore_index,
            )
        weight = self.weight if self.recipe.loss == "wce" else None
        return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=self.ignore_index)

    def __call__(self, out: Any, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, Mapping):
            out = {"out": out}
        r = self.recipe
        if out["out"].dim() != 4:
            raise NassegError(
                f"the model returns logits of shape {tuple(out['out'].shape)}; segmentation training needs "
                "[N, C, H, W] (a classification genome cannot be proxy-trained)"
            )
        loss = self.segmentation(out["out"], labels)
        for aux in out.get("aux") or ():
            loss = loss + r.aux_weight * self.segmentation(aux, labels)
        detail, boundary = out.get("detail"), out.get("boundary")
        valid = labels != self.ignore_index
        if detail is not None and r.detail_weight > 0:
            target = self.detail_aggregate(labels)
            loss = loss + r.detail_weight * detail_loss(detail.float(), target, valid)
        if boundary is not None and r.boundary_weight > 0:
            target = boundary_target(labels, self.ignore_index)
            loss = loss + r.boundary_weight * boundary_loss(boundary.float(), target, valid)
        if boundary is not None and r.bas_weight > 0:
            seen = bas_labels(labels, boundary.float(), ignore_index=self.ignore_index)
            loss = loss + r.bas_weight * self.segmentation(out["out"], seen)
        return loss


# -------------------------------------------------------------------------------------------- optimiser
def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # BN gamma/beta, biases, PReLU slopes: no decay
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)
    return torch.optim.AdamW(groups, lr=recipe.lr)


def _lr_at(recipe: Recipe, step: int) -> float:
    """Learning rate of 0-based ``step``: linear warm-up, then poly or cosine decay to 0 at ``steps``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    t = (step - recipe.warmup_steps) / (recipe.steps - recipe.warmup_steps)
    if recipe.schedule == "poly":
        return recipe.lr * (1 - t) ** recipe.poly_power
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * t))


# --------------------------------------------------------------------------------------------- training
class _Progress:
    """An optional rich progress bar; a no-op when disabled (nasseg prints nothing by default)."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("train", total=total, info="")

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def describe(self, loss: float, miou: float) -> None:
        if self.bar is not None:
            info = f"loss {loss:.4f}" + ("" if math.isnan(miou) else f"  mIoU {miou:.4f}")
            self.bar.update(self.task, info=info)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def train_model(
    model: nn.Module,
    recipe: Recipe,
    train_ds,
    val_ds,
    seed: int,
    device: str | torch.device = "cpu",
    callback: Callable[[int, Metrics], bool] | None = None,
    *,
    progress: bool = False,
) -> Metrics:
    """Train ``model`` in place with ``recipe`` on ``train_ds`` and evaluate it on ``val_ds``.

    Evaluates every ``recipe.eval_every`` steps (on ``recipe.eval_batches`` batches) and at the end (on
    the whole split).  After each evaluation ``callback(steps_done, metrics_so_far)`` is called; if it
    returns False the run stops there with status "stopped".  Raises :class:`TrainingDiverged` when
    the loss is NaN or infinite (checked every ``recipe.log_every`` steps, reporting the first bad
    step).  ``progress=True`` shows a rich progress bar; nothing is printed otherwise.  Seeds torch's
    global RNG with ``seed``; on CPU, deterministic algorithms are on while training (setting restored).
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} is not available: torch.cuda.is_available() is False")
    if int(train_ds.num_classes) != int(val_ds.num_classes):
        raise ConfigError(
            "train and validation sets disagree on num_classes "
            f"({train_ds.num_classes} vs {val_ds.num_classes})"
        )
    cuda = dev.type == "cuda"
    amp = recipe.amp and cuda
    channels_last = recipe.channels_last and cuda
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_batches = _Batches(
        train_ds, recipe.batch_size, dev, train=True, size=recipe.resolution, generator=generator,
        scale=recipe.scale, flip=recipe.flip, workers=recipe.num_workers, memory_format=memory_format,
    )
    batches = _forever(train_batches)
    model.to(dev, memory_format=memory_format).train()
    optimizer = _optimizer(model, recipe)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    ignore_index = int(getattr(train_ds, "ignore_index", 255))
    weight = class_weights(train_ds, recipe.resolution, ignore_index) if recipe.loss == "wce" else None
    criterion = _Criterion(recipe, ignore_index, dev, weight)

    loss_curve: list[tuple[int, float]] = []
    eval_history: list[tuple[int, float]] = []
    pending: list[torch.Tensor] = []  # per-step losses not yet fetched from the device
    result: tuple[float, tuple[float, ...], float] = (math.nan, (), math.nan)
    train_seconds = 0.0
    status = "completed"
    step = 0

    def flush() -> None:
        if not pending:
            return
        values = torch.stack(pending).tolist()
        first = step - len(values) + 1
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise TrainingDiverged(first + i, v)
        loss_curve.append((step, sum(values) / len(values)))
        pending.clear()

    def snapshot(status_now: str) -> Metrics:
        return Metrics(
            miou=result[0],
            per_class_iou=result[1],
            pixel_acc=result[2],
            loss_curve=tuple(loss_curve),
            eval_history=tuple(eval_history),
            train_seconds=train_seconds,
            images_per_second=step * recipe.batch_size / train_seconds if train_seconds > 0 else 0.0,
            steps_done=step,
            device=str(dev),
            seed=seed,
            status=status_now,
        )

    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled(),
                     torch.utils.deterministic.fill_uninitialized_memory)
    if not cuda:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode would also NaN-fill every torch.empty (~3 % of a CPU step, bench/proxy_loop.py);
        # nothing here reads uninitialised memory, so results stay identical without it
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        with _Progress(progress, recipe.steps) as bar:
            started = time.perf_counter()
            while step < recipe.steps:
                lr = _lr_at(recipe, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = next(batches)
                with _autocast(amp):
                    loss = criterion(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                pending.append(loss.detach())
                step += 1
                bar.advance()
                last = step == recipe.steps
                if step % recipe.log_every == 0:
                    flush()
                    bar.describe(loss_curve[-1][1], result[0])
                if not (last or (recipe.eval_every and step % recipe.eval_every == 0)):
                    continue
                flush()
                if cuda:
                    torch.cuda.synchronize(dev)
                train_seconds += time.perf_counter() - started
                miou, per_class, pixel_acc, _ = evaluate(
                    model, val_ds, size=recipe.resolution, device=dev, batch_size=recipe.batch_size,
                    max_batches=None if last else recipe.eval_batches, amp=amp, channels_last=channels_last,
                    num_workers=recipe.num_workers,
                )
                result = (miou, per_class, pixel_acc)
                eval_history.append((step, miou))
                bar.describe(loss_curve[-1][1], miou)
                if callback is not None and callback(step, snapshot("running")) is False and not last:
                    status = "stopped"
                    break
                started = time.perf_counter()
    finally:
        if not cuda:
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
            torch.utils.deterministic.fill_uninitialized_memory = deterministic[2]
    return snapshot(status)


def _open_splits(spec: str, recipe: Recipe, seed: int):
    if describe_spec(spec).layout == "synthetic":
        return tuple(
            open_dataset(spec, split, size=recipe.resolution, length=length, seed=seed)
            for split, length in (("train", recipe.train_length), ("val", recipe.val_length))
        )
    return open_dataset(spec, "train"), open_dataset(spec, "val")


def proxy_train(
    genome,
    recipe: Recipe,
    dataset: str = "synthetic",
    seed: int = 0,
    *,
    device: str | torch.device = "cpu",
    callback: Callable[[int, Metrics], bool] | None = None,
    progress: bool = False,
    weights_path: str | Path | None = None,
    init: Mapping[str, Any] | None = None,
) -> Metrics:
    """Open ``dataset`` (a spec for ``nasseg.data.open_dataset``; "synthetic" by default), build
    ``genome`` for its classes after seeding torch with ``seed``, and train it (:func:`train_model`).
    With ``weights_path`` the trained ``state_dict`` (on CPU) is saved there with ``torch.save``
    (written to a temporary name, then renamed, so a crash never leaves half a file).

    A synthetic dataset is rendered at ``recipe.resolution`` with ``recipe.train_length`` /
    ``recipe.val_length`` items; its training scenes depend on ``seed``, its validation scenes never.
    ``init`` (``{"path", "stages"}``) warm-starts those stages from a state dict file with nasseg's key names
    (``nasseg search --init``), after the seeded build, before the first step.
    """
    from nasseg.build import build  # only proxy_train builds; train_model works on any module

    train_ds, val_ds = _open_splits(dataset, recipe, seed)
    torch.manual_seed(seed)
    model = build(genome, int(train_ds.num_classes))
    if init:  # warm start: {"path": our-key state dict file, "stages": [i, ...]} (nasseg.weights)
        from nasseg.weights import apply_warm_start, stage_tensors

        state = torch.load(init["path"], map_location="cpu", weights_only=True)
        apply_warm_start(model, stage_tensors(state, tuple(init["stages"])))
    metrics = train_model(model, recipe, train_ds, val_ds, seed, device, callback, progress=progress)
    if weights_path is not None:
        path = Path(weights_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        buf = io.BytesIO()  # serialised first, written by Python: a full disk is then an OSError (ENOSPC) naming
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)  # the file, not torch's
        try:  # "unexpected pos" RuntimeError; and no half-written file is left behind
            with open(tmp, "wb") as f:
                f.write(buf.getbuffer())
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise OSError(e.errno, e.strerror or str(e), str(e.filename or path)) from e
    return metrics
