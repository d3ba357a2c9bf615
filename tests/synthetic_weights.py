"""Deterministic "random" checkpoints in an official key format, for tests/test_weights.py.

A checkpoint is described by its official key list (``tests/fixtures/weights/<preset>.json``: key, shape,
dtype in state-dict order, and which keys are second names of others).  ``synthetic_checkpoint`` fills it
with values from an integer hash (the same on every machine and torch version, unlike a seeded ``randn``),
each a small integer times a power of two, so every value is exact in float32:

* conv / linear weights: uniform levels scaled to about 1/sqrt(fan-in); biases and PReLU slopes small;
* BatchNorm: weight around 1, bias and running mean around 0, running variance in [0.5, 1.5);
* ``num_batches_tracked``: 1000;
* a spec's ``shift`` divides named tensors by a power of two (the final classifier, so that the logits stay
  near 1 and a float32 rounding difference between CPUs stays far below the tests' 1e-5).

The official outputs in ``<preset>.pt`` were computed by the official code with exactly these values
(``tests/fixtures/README.md`` says how).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "fixtures" / "weights"
MASK32 = 0xFFFFFFFF


def hash_levels(n: int, seed: int) -> torch.Tensor:
    """``n`` integers in [0, 256) from a 32-bit integer hash of (index, seed); int64 arithmetic, no overflow."""
    h = (torch.arange(n, dtype=torch.int64) + seed * 0x9E3779B1) & MASK32
    for _ in range(2):
        h = (((h >> 16) ^ h) * 0x45D9F3B) & MASK32
    h = (h >> 16) ^ h
    return h & 0xFF


def synthetic_tensor(key: str, shape: list[int], dtype: str, seed: int, bn: bool) -> torch.Tensor:
    """One tensor; ``bn``: the key belongs to a BatchNorm (its module has a running variance)."""
    if dtype == "int64":
        return torch.full(shape, 1000, dtype=torch.int64)
    n = math.prod(shape)
    q = hash_levels(n, seed).to(torch.float32).reshape(shape)  # 0 .. 255
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return q / 256 + 0.5
    if leaf == "running_mean":
        return (q - 128) / 512
    if len(shape) == 1 and leaf == "weight":  # BatchNorm scale or PReLU slope
        return 1 + (q - 128) / 512 if bn else 0.25 + (q - 128) / 1024
    if len(shape) <= 1:  # biases
        return (q - 128) / 1024
    fan_in = math.prod(shape[1:])
    exponent = round(math.log2(74 * math.sqrt(fan_in)))  # uniform levels have sd ~74
    return (q - 128) * 2.0 ** -exponent


def load_spec(preset: str) -> dict:
    return json.loads((FIXTURES / f"{preset}.json").read_text())


def synthetic_checkpoint(spec: dict) -> dict[str, torch.Tensor]:
    """The official-format state dict a spec describes; second names share their tensor, as officially."""
    bn = {k.rsplit(".", 1)[0] for k, _, _ in spec["keys"] if k.endswith(".running_var")}
    aliases = dict(spec.get("aliases", []))
    shift = spec.get("shift", {})
    out: dict[str, torch.Tensor] = {}
    for i, (key, shape, dtype) in enumerate(spec["keys"]):
        if key not in aliases:
            out[key] = synthetic_tensor(key, shape, dtype, i + 1, key.rsplit(".", 1)[0] in bn)
            if key in shift:
                out[key] = out[key] * 2.0 ** -shift[key]
    for key, _shape, _dtype in spec["keys"]:
        if key in aliases:
            out[key] = out[aliases[key]]
    return {key: out[key] for key, _, _ in spec["keys"]}  # the official order
