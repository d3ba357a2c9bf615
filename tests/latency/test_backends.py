"""Latency on onnxruntime (and the refusals of what cannot run here), recorded like eager with full provenance."""


import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg.cost import MIN_RUNS, LatencyRecord, measure_latency_checked
from nasseg.errors import ConfigError
from nasseg.latency import BACKENDS, PRECISIONS, StoppingRule, check_backend, measure_backend


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.bn = nn.BatchNorm2d(8)
        self.cls = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return F.interpolate(self.cls(F.relu(self.bn(self.conv(x)))), size=x.shape[-2:], mode="bilinear")


def test_onnxruntime_record_has_the_backend_provenance():
    net = Net().train()
    rec = measure_backend(net, (1, 3, 32, 32), backend="onnxruntime", warmup=2, runs=MIN_RUNS, pin=True,
                          stopping=StoppingRule(tolerance=0.5, max_runs=60, max_seconds=5))
    assert isinstance(rec, LatencyRecord) and rec.backend == "onnxruntime" and rec.backend_version == ort.__version__
    assert rec.providers == ("CPUExecutionProvider",) and rec.threads == 1 and rec.dtype == "float32"
    opts = rec.backend_options
    assert opts["graph_optimization_level"] == "ORT_ENABLE_ALL" and opts["intra_op_num_threads"] == 1
    assert opts["inter_op_num_threads"] == 1 and opts["onnx_max_abs_diff"] <= 1e-4 and opts["export_seconds"] > 0
    assert rec.median_ci_ms[0] <= rec.median_ms <= rec.median_ci_ms[1] and rec.stopping["reason"]
    assert rec.runs == len(rec.samples_ms) >= MIN_RUNS and rec.resolution == (32, 32)
    assert net.training and net.bn.training  # the caller's module keeps its mode
    assert LatencyRecord.from_json(rec.to_json()) == rec


def test_checked_measurement_runs_any_backend():
    d = measure_latency_checked(Net(), (1, 3, 16, 16), "cpu", warmup=1, runs=MIN_RUNS, noisy_cv=10.0,
                                noisy_load_per_cpu=1e9, threads=2,
                                measure=lambda *a, **k: measure_backend(*a, backend="onnxruntime", **k))
    assert d["backend"] == "onnxruntime" and d["attempts"] == 1 and d["threads"] == 2
    assert d["backend_options"]["intra_op_num_threads"] == 2 and "load_avg_before" in d


@pytest.mark.parametrize("backend,device,dtype,needle", [
    ("tvm", "cpu", "float32", "--latency-backend = 'tvm' is not known; valid: torch, onnxruntime, tensorrt"),
    ("torch", "cpu", "float64", "--latency-precision = 'float64' is not known; valid: fp32, fp16, bf16"),
    ("onnxruntime", "cpu", "float16", "--latency-precision fp16 with --latency-backend onnxruntime"),
    ("onnxruntime", "cpu", "bfloat16", "--latency-precision bf16 with --latency-backend onnxruntime"),
])
def test_what_cannot_run_is_one_line(backend, device, dtype, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as e:
        check_backend(backend, device, dtype)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_tensorrt_without_a_gpu_is_one_line():
    for device in ("cpu", "cuda"):
        with pytest.raises(ConfigError, match="--latency-backend tensorrt needs a CUDA device") as e:
            check_backend("tensorrt", device, "float16")
        assert "no CUDA device" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="tensorrt needs a CUDA device"):
        measure_backend(Net(), (1, 3, 16, 16), backend="tensorrt")


def test_eager_precisions_that_run_here_pass_and_names_map():
    assert BACKENDS == ("torch", "onnxruntime", "tensorrt")
    assert PRECISIONS == {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
    check_backend("torch", "cpu", "float32")
    check_backend("onnxruntime", "cpu", "float32")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensorrt_fp16_on_a_gpu():  # pragma: no cover - no GPU where this was written
    pytest.importorskip("tensorrt")
    rec = measure_backend(Net(), (1, 3, 64, 64), "cuda", backend="tensorrt", dtype="float16", warmup=5,
                          runs=MIN_RUNS)
    assert rec.backend == "tensorrt" and rec.backend_options["build_seconds"] > 0
    assert rec.backend_options["builder_flags"] == ["FP16"] and rec.median_ms > 0


def test_a_graph_that_cannot_be_exported_is_one_error_and_no_console_dump(capfd):
    from nasseg.errors import NassegError

    class Unexportable(torch.nn.Module):  # ONNX opset 17 has no SVD: the exporter refuses the graph
        def forward(self, x):
            return x * torch.linalg.svd(x.flatten(2))[0].sum()

    with pytest.raises(NassegError, match="ONNX export") as e:
        measure_backend(Unexportable(), (1, 3, 16, 16), backend="onnxruntime", warmup=1, runs=MIN_RUNS)
    assert "\n" not in str(e.value)
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and len(out + err) < 2000
