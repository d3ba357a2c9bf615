"""Latency on the runtime a network is deployed with: PyTorch eager, onnxruntime or TensorRT.

:func:`measure_backend` returns a :class:`nasseg.cost.LatencyRecord` whatever the backend, timed by the same
loop (:func:`nasseg.cost.time_calls`: warm-up, then a fixed count or a :class:`~nasseg.latency.StoppingRule`,
garbage collection off, optionally pinned with :func:`~nasseg.latency.pinned`) on the same seeded input shape,
so records of different backends compare.  :func:`check_backend` says, in one line and before anything is
measured or written, whether a (backend, device, precision) can run on this machine.

* ``torch`` -- PyTorch eager (:func:`nasseg.cost.measure_latency`).
* ``onnxruntime`` -- the network's ONNX graph as ``nasseg export`` writes it (:func:`nasseg.export.onnx.export_onnx`
  into a temporary folder, checked against PyTorch there), in an ``InferenceSession`` with every graph
  optimisation on (``ORT_ENABLE_ALL``), sequential execution, ``intra_op_num_threads`` = the measurement's thread
  count (1 on CPU by default, like eager) and ``inter_op_num_threads`` = 1, all recorded with the providers the
  session reports.  CPU: ``CPUExecutionProvider``, input and output numpy arrays (what a CPU deployment passes).
  CUDA: ``CUDAExecutionProvider`` with the input bound on the GPU (I/O binding), so no host copy is timed.
  float32 only: the exported graph is float32 (export_onnx checks it against float32 PyTorch), and onnxruntime's
  CPU provider has no float16 / bfloat16 convolutions to run a converted one.
* ``tensorrt`` -- CUDA and the ``tensorrt`` package only.  The same ONNX graph, parsed by TensorRT's ONNX parser,
  built into an engine for the exact input shape (an optimisation profile with min = opt = max), with
  ``BuilderFlag.FP16`` / ``BF16`` for fp16 / bf16 (TensorRT then picks per layer; I/O stay float32), 1 GiB of
  workspace; the build's seconds and the engine's size are recorded in ``backend_options``, apart from the
  latency.  Timed with ``execute_async_v3`` on torch's current stream, input and output in torch CUDA tensors.
  This path could not be run where it was written (no GPU): ``bench/gpu_check.py``-style checks should run it.

Timing conventions shared with eager: ``perf_counter`` around each call with the CUDA device synchronised
(``cuda_event`` for TensorRT too), batch and resolution from ``input_shape``, the same random input for every
backend (seed 0).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nasseg.errors import ConfigError

__all__ = ["BACKENDS", "PRECISIONS", "check_backend", "measure_backend", "precision_name"]

#: the runtimes latency can be measured on, by the name a record's ``backend`` holds
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
#: ``--latency-precision`` names -> the dtype name records hold (:data:`nasseg.cost.DTYPES`)
PRECISIONS: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

_WORKSPACE_BYTES = 1 << 30


def precision_name(dtype: str) -> str:
    """``float16`` -> ``fp16`` (the flag's spelling of a record's dtype)."""
    return {v: k for k, v in PRECISIONS.items()}.get(dtype, dtype)


def _torch_runs(dtype: str, device: str) -> bool:
    """Whether PyTorch eager runs a conv + batch norm + bilinear resize in ``dtype`` on ``device`` here."""
    import torch
    import torch.nn.functional as F

    from nasseg.cost import DTYPES

    try:
        with torch.inference_mode():
            dt, dev = DTYPES[dtype], torch.device(device)
            m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)).eval().to(dev, dt)
            F.interpolate(m(torch.zeros(1, 3, 8, 8, device=dev, dtype=dt)), scale_factor=2.0, mode="bilinear")
        return True
    except (RuntimeError, NotImplementedError):
        return False


def check_backend(backend: str, device: str, dtype: str) -> None:
    """ConfigError, one line naming what is wrong and what would be valid, unless ``backend`` can time a network in
    ``dtype`` (a :data:`nasseg.cost.DTYPES` name) on ``device`` on this machine.  Imports what it checks."""
    from nasseg.cost import DTYPES

    if backend not in BACKENDS:
        raise ConfigError(f"--latency-backend = {backend!r} is not known; valid: {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise ConfigError(f"--latency-precision = {precision_name(dtype)!r} is not known; valid: "
                          f"{', '.join(PRECISIONS)}")
    import torch

    cuda = str(device).startswith("cuda")
    prec = precision_name(dtype)
    if backend == "tensorrt":
        if not cuda or not torch.cuda.is_available():
            where = "this machine has no CUDA device" if not torch.cuda.is_available() else \
                f"--latency-device is {device!r}"
            raise ConfigError(f"--latency-backend tensorrt needs a CUDA device (--latency-device cuda) and the "
                              f"tensorrt package; {where}; valid here: --latency-backend torch or onnxruntime")
        try:
            import tensorrt as trt
        except ImportError:
            raise ConfigError("--latency-backend tensorrt needs the tensorrt package (pip install tensorrt), which "
                              "is not installed; valid here: --latency-backend torch or onnxruntime") from None
        if dtype == "bfloat16" and not hasattr(trt.BuilderFlag, "BF16"):
            raise ConfigError(f"--latency-precision bf16: TensorRT {trt.__version__} has no BF16 builder flag "
                              "(TensorRT >= 9 has); valid: fp32, fp16")
        return
    if backend == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("--latency-backend onnxruntime needs the onnxruntime package, which is not "
                              "installed") from None
        if dtype != "float32":
            raise ConfigError(f"--latency-precision {prec} with --latency-backend onnxruntime: nasseg's ONNX graphs "
                              "are float32 (the export checks them against float32 PyTorch) and onnxruntime's CPU "
                              "provider has no fp16/bf16 convolutions; valid: --latency-precision fp32 (or "
                              f"--latency-backend {'tensorrt' if cuda else 'torch'} for {prec})")
        if cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"--latency-backend onnxruntime on {device!r} needs onnxruntime's CUDAExecutionProvider "
                              f"(pip install onnxruntime-gpu); this onnxruntime has {ort.get_available_providers()}; "
                              "valid here: --latency-device cpu")
        return
    if cuda and dtype == "bfloat16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--latency-precision bf16: {torch.cuda.get_device_name()} has no bfloat16 support; "
                          "valid: fp32, fp16")
    if not cuda and not _torch_runs(dtype, "cpu"):
        raise ConfigError(f"--latency-precision {prec}: PyTorch {torch.__version__} cannot run {dtype} convolutions "
                          "on this CPU; valid: fp32")


def measure_backend(module: Any, input_shape: Sequence[int], device: str = "cpu", *, backend: str = "torch",
                    warmup: int = 10, runs: int = 30, threads: int | None = None, dtype: str = "float32",
                    stopping: Any = None, pin: bool = False, timer: str = "perf_counter",
                    observe_warmup: Callable | None = None) -> Any:
    """A :class:`nasseg.cost.LatencyRecord` of ``module`` on ``backend`` (see the module docstring); the arguments
    are :func:`nasseg.cost.measure_latency`'s (``observe_warmup`` applies to ``torch`` only).  Raises ConfigError
    for a combination :func:`check_backend` refuses, NassegError when the network cannot be exported to ONNX or
    the runtime cannot build or run it."""
    from nasseg.cost import MIN_RUNS, _check_input_shape, _device, _positive_int, measure_latency

    if backend == "torch":
        return measure_latency(module, input_shape, device, warmup=warmup, runs=runs, threads=threads, dtype=dtype,
                               stopping=stopping, pin=pin, timer=timer, observe_warmup=observe_warmup)
    shape = _check_input_shape(input_shape)
    dev = _device(device)
    check_backend(backend, str(dev), dtype)
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < MIN_RUNS:
        raise ConfigError(f"runs = {runs!r} is too few; valid: an integer >= {MIN_RUNS}")
    _positive_int("warmup", warmup, 1)
    threads = _positive_int("threads", threads, 1) if threads is not None else 1
    if stopping is not None:
        stopping.check(runs)
    with tempfile.TemporaryDirectory(prefix="nasseg-latency-") as tmp:
        onnx_path, export = _export(module, Path(tmp) / "model.onnx", shape)
        runner = _onnxruntime if backend == "onnxruntime" else _tensorrt
        return runner(onnx_path, export, shape, dev, warmup=warmup, runs=runs, threads=threads, dtype=dtype,
                      stopping=stopping, pin=pin, timer=timer)


def _export(module: Any, path: Path, shape: tuple[int, int, int, int]) -> tuple[Path, dict[str, Any]]:
    """The ONNX graph ``nasseg export`` would write (checked in onnxruntime against PyTorch at this shape), on CPU.
    ``nasseg.export.onnx`` is a leaf module (it imports only nasseg.errors): the one path from a module to ONNX."""
    import copy

    import torch

    from nasseg.export.onnx import export_onnx

    first = next(module.parameters(), None)
    cpu = module if first is None or (first.device.type == "cpu" and first.dtype == torch.float32) \
        else copy.deepcopy(module).to("cpu", torch.float32)
    modes = [(m, m.training) for m in cpu.modules()]
    t0 = time.perf_counter()
    try:
        with _native_stdout_silenced():
            info = export_onnx(cpu, path, shape, check_batches=())
    finally:
        for m, training in modes:  # export_onnx puts the module in eval mode: give it back as it was
            m.training = training
    return path, {"onnx_opset": info["opset"], "onnx_max_abs_diff": info["max_abs_diff"],
                  "export_seconds": round(time.perf_counter() - t0, 3)}


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """File descriptor 1 on /dev/null while inside.  torch's TorchScript ONNX exporter prints the whole IR graph to
    the process's native stdout when an export fails (its ``setup_onnx_logging`` tests a function object for
    truth, so ONNX logging is always on): thousands of lines in the middle of a search's console, for a candidate
    that is then recorded as failed with the exporter's one-line reason anyway.  The search writes its own output
    to stderr, which stays as it is."""
    import ctypes
    import os
    import sys

    fd = 1  # native code writes to descriptor 1 whatever Python's sys.stdout is (pytest replaces it)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no descriptor 1 at all: nothing to silence
        yield
        return
    libc = ctypes.CDLL(None)
    libc.fflush(None)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stdout.flush()
        libc.fflush(None)  # what C++ buffered goes to /dev/null, not to the restored stdout
        os.dup2(saved, fd)
        os.close(saved)


def _input(shape: tuple[int, int, int, int]):
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def _record(samples: list[float], report: dict, dev: Any, shape: tuple[int, ...], *, threads: int, dtype: str,
            warmup: int, timer: str, stopping: Any, affinity: Any, **backend: Any) -> Any:
    from nasseg.cost import LatencyRecord, provenance, stopping_record

    return LatencyRecord.from_samples(
        samples, level=stopping.level if stopping is not None else 0.95, **provenance(dev, threads), dtype=dtype,
        resolution=(shape[2], shape[3]), batch=shape[0], channels_last=False, compile=False, warmup=warmup,
        timer=timer, stopping=stopping_record(stopping, report, samples), affinity=affinity, **backend)


def _onnxruntime(path: Path, export: dict[str, Any], shape: tuple[int, int, int, int], dev: Any, *, warmup: int,
                 runs: int, threads: int, dtype: str, stopping: Any, pin: bool, timer: str) -> Any:
    import onnxruntime as ort

    from nasseg.cost import time_calls
    from nasseg.latency.affinity import pinned

    cuda = dev.type == "cuda"
    providers: list[Any] = ([("CUDAExecutionProvider", {"device_id": dev.index or 0})] if cuda else []) \
        + ["CPUExecutionProvider"]
    report: dict[str, Any] = {}
    # pinned before the session exists, so that its intra-op threads (threads > 1) start on the pinned cores
    with (pinned(threads) if pin else contextlib.nullcontext(None)) as affinity:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        t0 = time.perf_counter()
        try:
            sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; its first line says what
            from nasseg.errors import NassegError

            raise NassegError(f"onnxruntime cannot load the exported graph: {str(e).strip().splitlines()[0][:300]}") \
                from None
        session_s = time.perf_counter() - t0
        x = _input(shape)
        if cuda:  # the input on the GPU and the output left there: no host copies in the timed call
            io = sess.io_binding()
            io.bind_ortvalue_input("image", ort.OrtValue.ortvalue_from_numpy(x, "cuda", dev.index or 0))
            io.bind_output("logits", "cuda", dev.index or 0)

            def call() -> object:
                return sess.run_with_iobinding(io)
        else:
            def call() -> object:
                return sess.run(None, {"image": x})
        samples = time_calls(call, dev, warmup=warmup, runs=runs, threads=threads, timer=timer, stopping=stopping,
                             report=report)
    options = {"graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "ORT_SEQUENTIAL",
               "intra_op_num_threads": threads, "inter_op_num_threads": 1, "io": "io_binding" if cuda else "numpy",
               "session_seconds": round(session_s, 3), **export}
    return _record(samples, report, dev, shape, threads=threads, dtype=dtype, warmup=warmup, timer=timer,
                   stopping=stopping, affinity=affinity, backend="onnxruntime", backend_version=ort.__version__,
                   providers=tuple(sess.get_providers()), backend_options=options)


def _tensorrt(path: Path, export: dict[str, Any], shape: tuple[int, int, int, int], dev: Any, *, warmup: int,
              runs: int, threads: int, dtype: str, stopping: Any, pin: bool, timer: str) -> Any:
    """TensorRT engine for ``shape`` from the ONNX graph at ``path``; the build is timed apart from the latency."""
    import numpy as np
    import tensorrt as trt
    import torch

    from nasseg.cost import time_calls
    from nasseg.errors import NassegError
    from nasseg.latency.affinity import pinned

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise NassegError(f"TensorRT cannot parse the exported graph: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE_BYTES)
    builder_flags = {"float16": ["FP16"], "bfloat16": ["BF16"]}.get(dtype, [])
    for name in builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    profile.set_shape("image", shape, shape, shape)  # the batch axis is dynamic in the graph: fix it here
    config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t0
    if serialized is None:
        raise NassegError(f"TensorRT could not build an engine for {shape} ({dtype}); see its log above")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    context = engine.create_execution_context()
    context.set_input_shape("image", shape)

    def tensor(name: str) -> torch.Tensor:
        dt = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        return torch.empty(tuple(context.get_tensor_shape(name)), dtype=dt, device=dev)

    x = torch.from_numpy(_input(shape)).to(dev)
    out = tensor("logits")
    context.set_tensor_address("image", x.data_ptr())
    context.set_tensor_address("logits", out.data_ptr())
    stream = torch.cuda.current_stream(dev)

    def call() -> object:
        return context.execute_async_v3(stream.cuda_stream)

    report: dict[str, Any] = {}
    with (pinned(threads) if pin else contextlib.nullcontext(None)) as affinity:
        samples = time_calls(call, dev, warmup=warmup, runs=runs, threads=threads, timer=timer, stopping=stopping,
                             report=report)
    options = {"build_seconds": round(build_s, 3), "engine_bytes": int(serialized.nbytes),
               "builder_flags": builder_flags, "workspace_bytes": _WORKSPACE_BYTES, "io": "torch CUDA tensors",
               **export}
    return _record(samples, report, dev, shape, threads=threads, dtype=dtype, warmup=warmup, timer=timer,
                   stopping=stopping, affinity=affinity, backend="tensorrt", backend_version=trt.__version__,
                   providers=(), backend_options=options)
