"""ONNX export of a network, checked in onnxruntime against PyTorch: :func:`export_onnx`.

``model.onnx`` is written at opset :data:`ONNX_OPSET` (GridSample needs >= 16; 17 also has
LayerNormalization), with a static H x W (adaptive pooling and attention reshape by it) and a dynamic batch,
and checked on seeded random inputs: the max abs difference is recorded and must be at most
:data:`ONNX_TOLERANCE`.  torch, onnx and onnxruntime are imported when called.

Divergences and limits: the ONNX graph uses the legacy TorchScript exporter (``dynamo=False``): the
dynamo exporter needs ``onnxscript``, which is not a dependency.  Two of its operator translations are
replaced while exporting (and only then): ``adaptive_avg_pool2d``, which it refuses when the output
size does not divide the input size (PPM's 3x3 and 6x6 bins on a 16x32 map, SPPM's 4x4 bins on a 2x4
map), is written as two pooling matrices applied with MatMul (the same average over the same, possibly
overlapping, windows): constants when the exporter knows the input size, else computed from the runtime
shape (a size lost by the exporter's shape inference, as after ``tensor_split``); ``linspace``, whose
``dtype`` it drops (computing in float64, so a sampling grid reaches GridSample as float64, which
onnxruntime cannot run), is computed in float32 and cast to the requested type.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nasseg.errors import NassegError

__all__ = ["ONNX_OPSET", "ONNX_TOLERANCE", "export_onnx"]

#: ONNX opset of ``model.onnx``: GridSample (SFNet's FAM, RegSeg's flow alignment) needs >= 16.
ONNX_OPSET = 17
#: Largest max-abs difference between onnxruntime and PyTorch accepted for an exported model.
ONNX_TOLERANCE = 1e-4


def _pool_matrix(n_in: int, n_out: int):
    """Rows = PyTorch's adaptive-average windows [floor(i*n/o), ceil((i+1)*n/o)), each averaging 1/len."""
    import torch

    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        a, b = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m


def _side_pool_matrix(g: Any, x: Any, axis: int, n_in: int | None, n_out: int, columns: bool) -> Any:
    """The pooling matrix of one side as an ONNX value: ``n_out x n_in`` (``columns``: its transpose).

    With a known ``n_in`` it is a constant (:func:`_pool_matrix`); otherwise it is computed from the runtime
    size ``n = Shape(x)[axis]`` with the same windows: row i averages [floor(i*n/o), ceil((i+1)*n/o)).
    """
    import torch

    if n_in is not None:
        m = _pool_matrix(n_in, n_out)
        return g.op("Constant", value_t=(m.t() if columns else m).contiguous())
    i64 = torch.int64
    n = g.op("Gather", g.op("Shape", x), g.op("Constant", value_t=torch.tensor(axis, dtype=i64)), axis_i=0)
    o = g.op("Constant", value_t=torch.tensor(n_out, dtype=i64))
    i = g.op("Constant", value_t=torch.arange(n_out, dtype=i64).view((1, -1) if columns else (-1, 1)))
    one = g.op("Constant", value_t=torch.tensor(1, dtype=i64))
    start = g.op("Div", g.op("Mul", i, n), o)  # non-negative int64: Div floors
    end = g.op("Div", g.op("Add", g.op("Mul", g.op("Add", i, one), n), g.op("Sub", o, one)), o)  # ceil
    j = g.op("Range", g.op("Constant", value_t=torch.tensor(0, dtype=i64)), n, one)
    j = g.op("Unsqueeze", j, g.op("Constant", value_t=torch.tensor([1 if columns else 0], dtype=i64)))
    inside = g.op("And", g.op("GreaterOrEqual", j, start), g.op("Less", j, end))
    return g.op("Div", g.op("CastLike", inside, x), g.op("CastLike", g.op("Sub", end, start), x))


def _adaptive_avg_pool2d_symbolic(g: Any, x: Any, output_size: Any) -> Any:
    """``adaptive_avg_pool2d`` as PyTorch computes it, for any input size.

    1 x 1 is a GlobalAveragePool; an output side that divides a *known* input side is an AveragePool;
    otherwise ``y = P_h @ x @ P_w^T`` with pooling matrices, constant where the exporter knows the input
    side and computed from the runtime shape where it does not: with dynamic H x W, and also with a
    static input whenever the exporter's shape inference has lost the sizes on the way (e.g. after
    ``torch.tensor_split`` (RegSeg's D block with several dilations), whose Split leaves its outputs
    without a shape, so a PPM behind it used to fail with "needs a static input H x W").
    """
    from torch.onnx import symbolic_helper as sh

    out = sh._maybe_get_const(output_size, "is")
    if not isinstance(out, (list, tuple)) or len(out) != 2:
        raise NassegError(f"ONNX export: adaptive_avg_pool2d to {out!r}: the output size must be two "
                          "constant integers (or None)")
    out = [None if o is None else int(o) for o in out]
    if out == [1, 1]:
        return g.op("GlobalAveragePool", x)
    sizes = list(sh._get_tensor_sizes(x) or [])
    known = [s if isinstance(s, int) else None for s in sizes[-2:]] if len(sizes) >= 2 else [None, None]
    if all(k is not None for k in known):
        oh, ow = (k if o is None else o for o, k in zip(out, known))  # None keeps that side
        if known[0] % oh == 0 and known[1] % ow == 0:
            kernel = [known[0] // oh, known[1] // ow]
            return g.op("AveragePool", x, kernel_shape_i=kernel, strides_i=kernel)
    y = x
    if out[0] is not None:  # rows: P_h (oh x H) @ x
        y = g.op("MatMul", _side_pool_matrix(g, x, -2, known[0], out[0], columns=False), y)
    if out[1] is not None:  # columns: y @ P_w^T (W x ow)
        y = g.op("MatMul", y, _side_pool_matrix(g, x, -1, known[1], out[1], columns=True))
    return y


def _linspace_symbolic(g: Any, start: Any, end: Any, steps: Any, dtype: Any, *_: Any) -> Any:
    """``torch.linspace`` honouring ``dtype``: the stock symbolic drops it and computes in float64, so a
    sampling grid built with ``linspace(..., dtype=x.dtype)`` reaches GridSample as float64, for which
    onnxruntime has no kernel (RegSeg's SFNet-style ``_AlignedModule``)."""
    import torch
    from torch.onnx import symbolic_helper as sh

    T = sh._C_onnx.TensorProtoDataType

    def f32(v: Any) -> Any:
        c = sh._maybe_get_const(v, "f")
        if isinstance(c, (int, float)):
            return g.op("Constant", value_t=torch.tensor(float(c), dtype=torch.float32))
        return g.op("Cast", v, to_i=T.FLOAT)

    one = g.op("Constant", value_t=torch.tensor(1.0))
    n = sh._maybe_get_const(steps, "i")
    if isinstance(n, int):
        index = g.op("Constant", value_t=torch.arange(n, dtype=torch.float32))
        denom = g.op("Constant", value_t=torch.tensor(float(max(n - 1, 1))))
    else:  # a traced size
        scalar = g.op("Constant", value_t=torch.tensor([], dtype=torch.int64))
        count = g.op("Reshape", g.op("Cast", steps, to_i=T.INT64), scalar)
        index = g.op("Cast", g.op("Range", g.op("Constant", value_t=torch.tensor(0)), count,
                                  g.op("Constant", value_t=torch.tensor(1))), to_i=T.FLOAT)
        denom = g.op("Max", g.op("Sub", g.op("Cast", count, to_i=T.FLOAT), one), one)
    a, b = f32(start), f32(end)
    y = g.op("Add", g.op("Mul", index, g.op("Div", g.op("Sub", b, a), denom)), a)
    want = None if sh._is_none(dtype) else sh._maybe_get_const(dtype, "i")
    if isinstance(want, int):
        onnx_type = sh._type_utils.JitScalarType(want).onnx_type()
        if onnx_type != T.FLOAT:
            y = g.op("Cast", y, to_i=onnx_type)
    return y


_SYMBOLICS = {"aten::adaptive_avg_pool2d": _adaptive_avg_pool2d_symbolic, "aten::linspace": _linspace_symbolic}


@contextlib.contextmanager
def _onnx_symbolics() -> Iterator[None]:
    """Our fixes to the stock exporter, registered only while exporting (nothing global is left behind)."""
    import torch

    for name, fn in _SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(name, fn, ONNX_OPSET)
    try:
        yield
    finally:
        for name in _SYMBOLICS:
            torch.onnx.unregister_custom_op_symbolic(name, ONNX_OPSET)


def export_onnx(module: Any, path: str | os.PathLike, input_shape: Sequence[int], *, seed: int = 0,
                metadata: Mapping[str, str] | None = None, check_batches: Sequence[int] = (2,)) -> dict[str, Any]:
    """Write ``module`` (eval mode) as ONNX at ``input_shape`` (N, C, H, W; the batch axis is dynamic)
    and check it in onnxruntime against PyTorch on seeded random inputs of batch N and ``check_batches``.

    Returns ``{"file", "opset", "input_shape", "max_abs_diff", "checked_batches", "warnings"}``; raises
    :class:`NassegError` when the export fails or a difference exceeds :data:`ONNX_TOLERANCE`.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    path = Path(path)
    n, c, h, w = (int(v) for v in input_shape)
    module = module.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen)
    seen: dict[str, int] = {}
    try:
        with warnings.catch_warnings(record=True) as caught, _onnx_symbolics(), torch.no_grad():
            warnings.simplefilter("always")
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=["logits"], do_constant_folding=True,
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        for wm in caught:
            if issubclass(wm.category, DeprecationWarning):
                continue  # "legacy TorchScript exporter": chosen on purpose, see the module docstring
            text = f"{wm.category.__name__}: {str(wm.message).splitlines()[0][:160]}"
            seen[text] = seen.get(text, 0) + 1
    except NassegError:
        raise
    except Exception as e:  # the exporter raises many types; its first line names the operator
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:400]
        raise NassegError(f"ONNX export failed at {h}x{w}: {type(e).__name__}: {first}") from None
    diff = 0.0
    batches = [n, *[b for b in check_batches if b != n]]
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        if metadata:
            onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
            onnx.save(model, str(path))
        sess_opts = ort.SessionOptions()
        sess_opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), sess_opts, providers=["CPUExecutionProvider"])
        for b in batches:
            xb = x if b == n else torch.randn(b, c, h, w, generator=gen)
            with torch.no_grad():
                ref = module(xb)
            got = sess.run(None, {"image": xb.numpy()})[0]
            if got.shape != tuple(ref.shape):
                raise NassegError(f"ONNX output shape {got.shape} != PyTorch {tuple(ref.shape)} at batch {b}")
            diff = max(diff, float(np.max(np.abs(got - ref.numpy()))))
    except NassegError:
        raise
    except Exception as e:  # onnx.checker / onnxruntime (e.g. an operator without a kernel)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:400]
        raise NassegError(f"the exported ONNX model does not check or run in onnxruntime: {first}") from None
    if not diff <= ONNX_TOLERANCE:
        raise NassegError(f"ONNX and PyTorch outputs differ by {diff:.3g} (> {ONNX_TOLERANCE:g}) at {h}x{w}")
    return {"file": path.name, "opset": ONNX_OPSET, "input_shape": [n, c, h, w], "dynamic_axes": ["batch"],
            "max_abs_diff": diff, "checked_batches": batches, "runtime": f"onnxruntime {ort.__version__} CPU",
            "warnings": [f"{k} (x{v})" if v > 1 else k for k, v in seen.items()]}
