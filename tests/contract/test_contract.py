"""The same checks over every registered module (the timm-style sweep).

Each registered entry is built from its ``examples`` (or a default for its kind) and must:
expose ``out_channels`` (and ``stride`` for blocks); give the documented output shape for even and odd
input sizes; run backward with finite gradients and no NaN; give the same output for the same seed.
"""

from __future__ import annotations

import math

import pytest
import torch

from nasseg import registry

DEFAULT_EXAMPLES = {
    "block": [
        {"in_channels": 32, "out_channels": 64, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2},
    ],
    "fusion": [{"low_channels": 32, "high_channels": 64, "out_channels": 48}],
    "context": [{"in_channels": 64, "out_channels": 64}],
    "head": [{"in_channels": 32, "num_classes": 5}],
    "decoder": [],
    "link": [{"main_channels": 64, "branch_channels": 32, "scale": 2}],
}
SIZES = [(32, 48), (33, 47)]


def _cases():
    for entry in registry.entries():
        examples = entry.examples or DEFAULT_EXAMPLES[entry.kind]
        if not examples:
            yield pytest.param(entry, None, id=f"{entry.name}-no-example")
        for i, ex in enumerate(examples):
            yield pytest.param(entry, ex, id=f"{entry.name}-{i}")


def _build(entry, example):
    argnames = {a.name for a in entry.args}
    args = {k: v for k, v in example.items() if k in argnames}
    pos = {k: v for k, v in example.items() if k not in argnames and k != "tap_strides"}
    return entry.cls(**pos, **entry.resolve(args))


def _inputs(entry, module, example, size):
    h, w = size
    if entry.kind == "block":
        return (torch.randn(2, example["in_channels"], h, w),)
    if entry.kind == "context":
        return (torch.randn(2, example["in_channels"], h, w),)
    if entry.kind == "head":
        return (torch.randn(2, example["in_channels"], h, w),)
    if entry.kind == "link":  # (main at the coarser stride, branch)
        s = example["scale"]
        return (torch.randn(2, example["main_channels"], math.ceil(h / s), math.ceil(w / s)),
                torch.randn(2, example["branch_channels"], h, w))
    if entry.kind == "fusion":
        low = torch.randn(2, example["low_channels"], h, w)
        high = torch.randn(2, example["high_channels"], math.ceil(h / 2), math.ceil(w / 2))
        if getattr(module, "num_inputs", 2) == 3:
            return (low, high, torch.randn(2, module.guide_channels, h, w))
        return (low, high)
    # decoder: taps at the example's strides of a (4h, 4w) image
    feats = [
        torch.randn(2, c, math.ceil(4 * h / s), math.ceil(4 * w / s))
        for c, s in zip(example["in_channels"], example["tap_strides"])
    ]
    return (feats,)


def _expected_shape(entry, module, example, size):
    h, w = size
    if entry.kind == "block":
        s = example.get("stride", 1)
        return (2, example["out_channels"], math.ceil(h / s), math.ceil(w / s))
    if entry.kind == "context":
        return (2, module.out_channels, h, w)
    if entry.kind == "head":  # an upsampling head (BiSeNet V2's aux variant) says so in output_scale
        k = getattr(module, "output_scale", 1)
        return (2, example["num_classes"], k * h, k * w)
    if entry.kind == "fusion":
        return (2, example["out_channels"], h, w)
    return None


def _sizes(entry, example):
    if entry.kind == "decoder":
        s = max(example["tap_strides"])
        return [(8 * s // 4, 16 * s // 4)]
    return SIZES


@pytest.mark.parametrize("entry,example", list(_cases()))
def test_contract(entry, example):
    assert example is not None, f"{entry.name}: a {entry.kind} must register at least one example"
    module = _build(entry, example)
    assert isinstance(module.out_channels, int) and module.out_channels > 0
    if entry.kind == "block":
        assert module.out_channels == example["out_channels"]
        assert module.stride == example.get("stride", 1)
    if entry.kind == "decoder" and not getattr(module, "emits_logits", False):
        assert module.out_channels > 0
    if entry.kind == "link":
        assert (module.main_channels, module.branch_channels) == (example["main_channels"], example["branch_channels"])
        assert module.out_channels == module.branch_channels
    module.train()
    for size in _sizes(entry, example):
        inputs = _inputs(entry, module, example, size)
        for t in (inputs[0] if entry.kind == "decoder" else inputs):
            t.requires_grad_()  # parameter-free modules (none, add) must still pass gradients through
        out = module(*inputs)
        if entry.kind == "link":  # both tensors come back with their shapes; both sides stay differentiable
            assert isinstance(out, tuple) and len(out) == 2
            assert [tuple(o.shape) for o in out] == [tuple(t.shape) for t in inputs], f"{entry.name} at {size}"
            out = torch.cat([o.flatten() for o in out])
        expected = _expected_shape(entry, module, example, size)
        if expected is not None:
            assert tuple(out.shape) == expected, f"{entry.name} at {size}: {tuple(out.shape)} != {expected}"
        elif entry.kind != "link":
            assert out.dim() == 4 and out.shape[1] == module.out_channels
        assert torch.isfinite(out).all(), f"{entry.name}: non-finite output"
        module.zero_grad(set_to_none=True)
        (out.float() ** 2).mean().backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads or not list(module.parameters()), f"{entry.name}: no parameter received a gradient"
        assert all(torch.isfinite(g).all() for g in grads)
        flat = inputs[0] if entry.kind == "decoder" else inputs
        assert any(t.grad is not None for t in flat), f"{entry.name}: no gradient reaches the inputs"


@pytest.mark.parametrize("entry,example", [c for c in _cases() if c.values[1] is not None])
def test_deterministic(entry, example):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        module = _build(entry, example).eval()
        size = _sizes(entry, example)[0]
        torch.manual_seed(7)
        inputs = _inputs(entry, module, example, size)
        with torch.no_grad():
            out = module(*inputs)
            outs.append(torch.cat([o.flatten() for o in out]) if isinstance(out, tuple) else out)
    assert torch.equal(outs[0], outs[1])


def test_every_argument_default_is_valid_and_documented():
    for entry in registry.entries():
        resolved = entry.resolve({})
        assert set(resolved) == {a.name for a in entry.args}
        assert entry.cls.__doc__ and len(entry.cls.__doc__.strip()) > 40, f"{entry.name} needs a docstring"
