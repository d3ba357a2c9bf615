"""ONNX export of a network, checked in onnxruntime against PyTorch: :func:`export_onnx`.

``model.onnx`` is written at opset :data:`ONNX_OPSET` (GridSample needs >= 16; 17 also has
LayerNormalization) with a dynamic batch and, where the graph allows it, a dynamic H x W: the model is
traced at the requested resolution and at a second one (:func:`second_resolution`), the two graphs must be
identical, and the graph must match PyTorch in onnxruntime at both; when it cannot be exported, the graphs
differ (a size the tracer took as a Python number, e.g. ``torch.tensor([w, h])`` in SFNet's flow warp) or
it does not match, the model is exported again with a static H x W.  Every check runs on seeded random
inputs; the max abs difference is recorded and must be at most :data:`ONNX_TOLERANCE`.  What the exporter
prints (its whole IR graph when an operator fails) is captured, never shown, and kept in a log file on
request.  torch, onnx and onnxruntime are imported when called.

Divergences and limits: the ONNX graph uses the legacy TorchScript exporter (``dynamo=False``): the
dynamo exporter needs ``onnxscript``, which is not a dependency.  Two of its operator translations are
replaced while exporting (and only then): ``adaptive_avg_pool2d``, which it refuses when the output
size does not divide the input size (PPM's 3x3 and 6x6 bins on a 16x32 map, SPPM's 4x4 bins on a 2x4
map), is written as two pooling matrices applied with MatMul (the same average over the same, possibly
overlapping, windows): constants when the exporter knows the input size, else computed from the runtime
shape (a dynamic H x W, or a size lost by the exporter's shape inference, as after ``tensor_split``);
``linspace``, whose ``dtype`` it drops (computing in float64, so a sampling grid reaches GridSample as
float64, which onnxruntime cannot run), is computed in float32 and cast to the requested type.

Networks whose output depends on an argmax of computed features (ENet's max-unpooling: a module with
``onnx_argmax = True``) are not continuous: where two values of a pooling window lie within float32 rounding
of each other, onnxruntime and PyTorch may pick different maxima and put a value one pixel apart (at 256x512
about one forward in ten has such a flip, changing a few hundred output values by ~1e-4).  For them the check
allows up to :data:`ONNX_ARGMAX_FRACTION` of the output values beyond :data:`ONNX_TOLERANCE`, reports the
largest difference of the others as ``max_abs_diff`` and the count as ``argmax_flip_values``; a graph that
computes something else differs almost everywhere and still fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nasseg.errors import NassegError

__all__ = ["ONNX_ARGMAX_FRACTION", "ONNX_OPSET", "ONNX_TOLERANCE", "export_onnx"]

#: ONNX opset of ``model.onnx``: GridSample (SFNet's FAM, RegSeg's flow alignment) needs >= 16.
ONNX_OPSET = 17
#: Largest max-abs difference between onnxruntime and PyTorch accepted for an exported model.
ONNX_TOLERANCE = 1e-4
#: Largest fraction of output values beyond ONNX_TOLERANCE accepted for a model with an argmax (module docstring).
ONNX_ARGMAX_FRACTION = 0.005


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


@contextlib.contextmanager
def _captured_output() -> Iterator[Callable[[], str]]:
    """Send everything written to stdout and stderr, Python's and the C++ library's (file descriptors 1 and
    2), to a temporary file while exporting; yields a function returning what was written so far.

    The TorchScript exporter prints its whole IR graph to the process's stdout when an operator fails
    ("Torch IR graph at exception: ..."); that belongs in a log, not on the user's terminal.
    """
    import ctypes
    import tempfile

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)  # C stdio buffers

    with tempfile.TemporaryFile() as sink, io.StringIO() as py_text:
        flush()
        saved: list[tuple[int, int]] = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no such descriptor (an embedded interpreter): Python-level capture only
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            saved = []

        read = [0, 0]  # what text() has already returned, of the file and of Python's text

        def text() -> str:
            """What was written since the previous call."""
            flush()
            sink.seek(read[0])
            raw = sink.read()
            sink.seek(0, os.SEEK_END)
            py = py_text.getvalue()[read[1]:]
            read[0] += len(raw)
            read[1] += len(py)
            return raw.decode("utf-8", errors="replace") + py

        try:
            with contextlib.redirect_stdout(py_text), contextlib.redirect_stderr(py_text):
                yield text
        finally:
            flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def second_resolution(h: int, w: int) -> tuple[int, int]:
    """The other H x W a dynamic-H/W graph is checked at: about 3/4 of each side, a multiple of 32."""

    def side(n: int) -> int:
        m = max(32, (n * 3 // 4) // 32 * 32)
        return m if m != n else n + 32

    return side(h), side(w)


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = (str(e).strip().splitlines() or [""])[0].strip()
    return f"{type(e).__name__}: {text[:limit]}" if text else type(e).__name__


class _Attempt(Exception):
    """One export attempt failed: ``stage`` (export, check, mismatch) and a one-line ``reason``."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def _export_once(module: Any, target: Path | io.BytesIO, x: Any, dynamic_hw: bool, caught: list) -> None:
    import torch

    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    try:
        with warnings.catch_warnings(record=True) as got, _onnx_symbolics(), torch.no_grad():
            warnings.simplefilter("always")
            torch.onnx.export(module, (x,), target if isinstance(target, io.BytesIO) else str(target), dynamo=False,
                              opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=["logits"], do_constant_folding=True,
                              dynamic_axes={"image": axes, "logits": axes})
        caught.extend(got)
    except Exception as e:  # the exporter raises many types; its first line names the operator
        raise _Attempt("export", _first_line(e)) from e


def _graph_bytes(source: Path | io.BytesIO) -> bytes:
    """The ONNX graph's operators and weights, without the shapes the exporter inferred along the way."""
    import onnx

    model = onnx.load(str(source)) if isinstance(source, Path) else onnx.load_from_string(source.getvalue())
    del model.graph.value_info[:]
    return model.graph.SerializeToString()


def _argmax_sensitive(module: Any) -> bool:
    """Whether the network holds a module whose output moves with an argmax (``onnx_argmax = True``)."""
    return any(getattr(m, "onnx_argmax", False) for m in module.modules())


def _check(module: Any, path: Path, inputs: Sequence[Any], metadata: Mapping[str, str] | None,
           flips: list[int] | None = None) -> float:
    """Check ``path`` with onnx.checker, store ``metadata``, run it in onnxruntime on each input and return
    the largest difference from PyTorch; with ``flips`` (an argmax-sensitive model), the values beyond the
    tolerance, up to ONNX_ARGMAX_FRACTION of them, are counted there instead of failing the check."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        if metadata:
            onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
            onnx.save(model, str(path))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnx.checker / onnxruntime (e.g. an operator without a kernel)
        raise _Attempt("check", f"the exported model does not check or load in onnxruntime: {_first_line(e)}") from e
    diff = 0.0
    for xb in inputs:
        where = f"batch {xb.shape[0]} at {xb.shape[2]}x{xb.shape[3]}"
        try:
            with torch.no_grad():
                ref = module(xb)
        except Exception as e:  # the network itself refuses this size: nothing to compare with
            raise _Attempt("check", f"PyTorch cannot run the network at {where}: {_first_line(e)}") from e
        try:
            got = sess.run(None, {"image": xb.numpy()})[0]
        except Exception as e:
            raise _Attempt("check", f"onnxruntime fails at {where}: {_first_line(e)}") from e
        if got.shape != tuple(ref.shape):
            raise _Attempt("mismatch", f"ONNX output shape {got.shape} != PyTorch {tuple(ref.shape)} at {where}")
        err = np.abs(got - ref.numpy())
        if flips is not None and not np.isnan(err).any():
            over = int((err > ONNX_TOLERANCE).sum())
            if over <= ONNX_ARGMAX_FRACTION * err.size:
                flips.append(over)
                err = err[err <= ONNX_TOLERANCE]
        d = float(np.max(err)) if err.size else 0.0
        if not d <= ONNX_TOLERANCE:
            raise _Attempt("mismatch", f"ONNX and PyTorch outputs differ by {d:.3g} (> {ONNX_TOLERANCE:g}) at "
                                       f"{where}")
        diff = max(diff, d)
    return diff


def export_onnx(module: Any, path: str | os.PathLike, input_shape: Sequence[int], *, seed: int = 0,
                metadata: Mapping[str, str] | None = None, check_batches: Sequence[int] = (2,),
                dynamic_hw: bool = True, check_resolution: Sequence[int] | None = None,
                log_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``module`` (eval mode) as ONNX traced at ``input_shape`` (N, C, H, W; the batch axis is dynamic)
    and check it in onnxruntime against PyTorch on seeded random inputs of batch N and ``check_batches``.

    With ``dynamic_hw`` (default) the height and width are exported as dynamic axes too; the model is traced
    again at ``check_resolution`` (default :func:`second_resolution`) and both graphs must be identical (a
    size the tracer took as a Python number is a constant that would differ), and the graph is also checked
    in onnxruntime at that resolution.  When any of this fails, the model is exported again with a static
    H x W, checked at ``input_shape``, and the reason is recorded (``dynamic_hw_failure``).

    Nothing the exporter prints (its IR graph on a failure, its warnings) reaches the terminal: warnings
    are summarised in the result, and when ``log_path`` is given and something failed (or fell back to a
    static H x W), the full text goes there.

    Returns ``{"file", "opset", "input_shape", "hw", "dynamic_axes", "checked_resolutions",
    "checked_batches", "max_abs_diff", "runtime", "dynamic_hw_failure", "warnings"}`` (``hw`` is
    ``"dynamic"`` or ``"static"``), plus ``"argmax_flip_values"`` for a network with an argmax (module
    docstring); raises :class:`NassegError` with a one-line message when the static export fails or a
    difference exceeds :data:`ONNX_TOLERANCE`.
    """
    import onnxruntime as ort
    import torch

    path = Path(path)
    n, c, h, w = (int(v) for v in input_shape)
    h2, w2 = (int(v) for v in check_resolution) if check_resolution is not None else second_resolution(h, w)
    module = module.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen)
    batches = [n, *[b for b in check_batches if b != n]]
    inputs = [x, *[torch.randn(b, c, h, w, generator=gen) for b in batches[1:]]]
    caught: list[warnings.WarningMessage] = []
    log: list[str] = []
    fallback = None
    result: dict[str, Any] | None = None
    failure: _Attempt | None = None
    diff = 0.0
    argmax = _argmax_sensitive(module)
    flips: list[int] | None = None
    with _captured_output() as printed:
        if dynamic_hw:
            try:
                _export_once(module, path, x, True, caught)
                other = torch.randn(n, c, h2, w2, generator=gen)
                # traced again at the second size: a size the tracer took as a Python number (torch.tensor of
                # a shape, int(x.shape[2]) ...) is a constant that differs between the two graphs, even where
                # its effect is too small to see on random inputs (e.g. SFNet's flow scaled by 1/(W, H))
                again = io.BytesIO()
                _export_once(module, again, other, True, caught)
                if _graph_bytes(path) != _graph_bytes(again):
                    raise _Attempt("trace", f"the graph traced at {h2}x{w2} differs from the one traced at {h}x{w} "
                                            "(a size computed in Python is baked into it)")
                del again
                flips = [] if argmax else None
                diff = _check(module, path, [*inputs, other], metadata, flips)
                result = {"hw": "dynamic", "dynamic_axes": ["batch", "height", "width"],
                          "checked_resolutions": [[h, w], [h2, w2]]}
            except _Attempt as e:
                fallback = f"dynamic H x W: {e.reason}"
                log += [f"== export with dynamic H x W failed ({e.stage}): {e.reason}",
                        "".join(traceback.format_exception(e.__cause__ or e)), printed()]
                path.unlink(missing_ok=True)
        if result is None:
            try:
                _export_once(module, path, x, False, caught)
                flips = [] if argmax else None
                diff = _check(module, path, inputs, metadata, flips)
                result = {"hw": "static", "dynamic_axes": ["batch"], "checked_resolutions": [[h, w]]}
            except _Attempt as e:
                path.unlink(missing_ok=True)
                log += [f"== export with a static H x W = {h}x{w} failed ({e.stage}): {e.reason}",
                        "".join(traceback.format_exception(e.__cause__ or e)), printed()]
                failure = e
            else:
                if fallback:
                    log += ["== export with a static H x W: checked", printed()]
    seen: dict[str, int] = {}
    for wm in caught:
        if issubclass(wm.category, DeprecationWarning):
            continue  # "legacy TorchScript exporter": chosen on purpose, see the module docstring
        text = f"{wm.category.__name__}: {str(wm.message).splitlines()[0][:160]}"
        seen[text] = seen.get(text, 0) + 1
    if log and log_path is not None:
        lines = [f"ONNX export of {type(module).__name__} traced at {n}x{c}x{h}x{w}, opset {ONNX_OPSET}", *log,
                 "== warnings", *(f"{wm.category.__name__}: {wm.message}" for wm in caught)]
        Path(log_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if failure is not None or result is None:
        reason = failure.reason if failure is not None else "no result"
        where = f" (full text: {Path(log_path).name})" if log_path is not None else ""
        what = "ONNX export failed" if failure is None or failure.stage == "export" else "ONNX check failed"
        raise NassegError(f"{what} at {h}x{w}: {reason}{where}")
    if flips is not None:
        result["argmax_flip_values"] = sum(flips)
    return {"file": path.name, "opset": ONNX_OPSET, "input_shape": [n, c, h, w], **result,
            "max_abs_diff": diff, "checked_batches": batches, "runtime": f"onnxruntime {ort.__version__} CPU",
            "dynamic_hw_failure": fallback, "warnings": [f"{k} (x{v})" if v > 1 else k for k, v in seen.items()]}
