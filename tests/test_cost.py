import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg.cost import (
    MIN_RUNS,
    Cost,
    LatencyRecord,
    count_macs,
    count_params,
    measure,
    measure_latency,
)
from nasseg.errors import ConfigError


class SmallNet(nn.Module):
    """conv-bn-relu x2, a bilinear upsample and a sigmoid gate; an auxiliary head only used in training."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.cls = nn.Conv2d(16, 4, 1)
        self.aux = nn.Conv2d(16, 4, 1)

    def inference_parameters(self):
        return (p for name, p in self.named_parameters() if not name.startswith("aux."))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y))) * torch.sigmoid(y)
        out = F.interpolate(self.cls(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.training:
            return {"out": out, "aux": [self.aux(y)], "detail": None, "boundary": None}
        return out


def test_count_params_uses_inference_parameters():
    m = SmallNet()
    conv = 3 * 16 * 9 + 16 * 16 * 9
    bn = 2 * (16 + 16)
    cls = 16 * 4 + 4
    assert count_params(m) == conv + bn + cls
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    assert count_params(plain) == 3 * 8 * 9 + 8 + 16


def test_tied_parameter_counts_once():
    a = nn.Linear(4, 4, bias=False)
    m = nn.Sequential(a, nn.ReLU(), a)
    assert count_params(m) == 16


def test_macs_of_a_single_conv_are_analytic():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
    mac = count_macs(conv, (2, 8, 32, 48))
    # every output element takes (in / groups) * k * k multiply-adds
    assert mac.macs == 2 * 16 * 16 * 24 * (8 // 2) * 3 * 3
    assert mac.macs_all == mac.macs and mac.skipped_ops == {}


def test_macs_all_adds_bn_and_upsample_and_reports_skipped_ops():
    m = SmallNet().train()
    mac = count_macs(m, (1, 3, 32, 32))
    h = w = 16
    assert mac.macs == h * w * (16 * 3 * 9 + 16 * 16 * 9 + 4 * 16)
    assert mac.by_operator["batch_norm"] > 0 and mac.by_operator["upsample_bilinear2d"] > 0
    assert mac.macs_all == mac.macs + mac.by_operator["batch_norm"] + mac.by_operator["upsample_bilinear2d"]
    assert mac.skipped_ops["aten::sigmoid"] == 1 and mac.skipped_ops["aten::mul"] == 1
    assert m.training and m.aux.training  # counted in eval mode, mode restored


def test_count_macs_is_silent(caplog, recwarn):
    count_macs(SmallNet(), (1, 3, 16, 16))
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]
    assert len(recwarn) == 0


def test_matmul_family_counts_as_macs():
    class Attn(nn.Module):
        def forward(self, x):
            q = x.flatten(2)  # N, C, L
            return torch.bmm(q.transpose(1, 2), q).sum() + torch.einsum("ncl,ncm->nlm", q, q).sum()

    mac = count_macs(Attn(), (1, 4, 2, 3))
    assert mac.macs == 2 * (6 * 6 * 4)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 3, 0, 8), (1, 3, 8.0, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(ConfigError, match="input_shape"):
        count_macs(nn.Conv2d(3, 3, 1), shape)


def _record(**kw) -> LatencyRecord:
    return measure_latency(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 16, 16), warmup=1, runs=MIN_RUNS, **kw)


def test_latency_record_statistics_and_provenance():
    r = _record()
    assert len(r.samples_ms) == r.runs == MIN_RUNS
    s = sorted(r.samples_ms)
    assert r.min_ms == s[0] <= r.median_ms <= r.p90_ms <= s[-1]
    assert math.isclose(r.cv, r.std_ms / r.mean_ms)
    assert (r.device, r.threads, r.dtype, r.resolution, r.batch) == ("cpu", 1, "float32", (16, 16), 1)
    assert r.timer == "perf_counter"
    assert r.torch_version == torch.__version__ and r.device_name and r.hostname and r.date_utc.endswith("+00:00")


def test_latency_record_json_round_trip():
    r = _record(dtype="bfloat16", channels_last=True)
    text = r.to_json()
    assert LatencyRecord.from_json(text) == r
    assert text == LatencyRecord.from_json(text).to_json()


def test_latency_record_from_before_the_timer_field_loads_as_perf_counter():
    d = _record().to_dict()
    del d["timer"]
    assert LatencyRecord.from_dict(d).timer == "perf_counter"


def test_latency_restores_thread_count_and_leaves_module_alone():
    before = torch.get_num_threads()
    m = SmallNet().train()
    r = measure_latency(m, (1, 3, 16, 16), warmup=1, runs=MIN_RUNS, threads=2)
    assert r.threads == 2 and torch.get_num_threads() == before
    assert m.training and next(m.parameters()).dtype == torch.float32


@pytest.mark.parametrize("kw,needle", [
    ({"runs": MIN_RUNS - 1}, "runs"),
    ({"warmup": 0}, "warmup"),
    ({"threads": 0}, "threads"),
    ({"dtype": "float64"}, "dtype"),
    ({"timer": "wall"}, "timer"),
    ({"timer": "cuda_event"}, "needs a CUDA device"),
])
def test_latency_bad_options_raise(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        measure_latency(nn.Conv2d(3, 3, 1), (1, 3, 8, 8), **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_raises():
    with pytest.raises(ConfigError, match="not available"):
        measure_latency(nn.Conv2d(3, 3, 1), (1, 3, 8, 8), "cuda")


def test_latency_cv_small_convnet():
    widths = (3, 16, 32, 32)
    net = nn.Sequential(*[m for a, b in zip(widths, widths[1:]) for m in (nn.Conv2d(a, b, 3, padding=1), nn.ReLU())])
    r = measure_latency(net, (1, 3, 128, 128), warmup=10, runs=60)
    print(f"\nlatency median {r.median_ms:.3f} ms, p90 {r.p90_ms:.3f} ms, CV {r.cv:.3f} on {r.device_name}")
    assert r.cv < 0.5  # lenient: < 0.10 is expected on an idle CPU; CI neighbours may add noise


def test_measure_collects_everything():
    c = measure(SmallNet(), (1, 3, 32, 32), warmup=1, runs=MIN_RUNS)
    assert c.params == count_params(SmallNet()) and c.macs > 0 and c.macs_all > c.macs
    assert c.latency is not None and c.latency.resolution == (32, 32)
    assert Cost.from_dict(c.to_dict()) == c
    assert measure(SmallNet(), (1, 3, 32, 32), latency=False).latency is None
    with pytest.raises(ConfigError, match="latency=False"):
        measure(SmallNet(), (1, 3, 32, 32), latency=False, runs=50)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_and_macs():
    m = SmallNet()
    r = measure_latency(m, (2, 3, 64, 64), "cuda", warmup=5, runs=MIN_RUNS, dtype="float16", channels_last=True)
    assert r.device.startswith("cuda") and r.cuda_version and r.batch == 2 and r.median_ms > 0
    assert next(m.parameters()).device.type == "cpu"
    assert count_macs(m, (1, 3, 32, 32), "cuda").macs == count_macs(m, (1, 3, 32, 32)).macs


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_event_timer_agrees_with_the_host_clock():
    net = SmallNet().cuda()
    kw = dict(warmup=5, runs=MIN_RUNS)
    events = measure_latency(net, (1, 3, 128, 128), "cuda", timer="cuda_event", **kw)
    host = measure_latency(net, (1, 3, 128, 128), "cuda", **kw)
    assert events.timer == "cuda_event" and host.timer == "perf_counter"
    assert all(v > 0 for v in events.samples_ms)
    # the events see the GPU's work only; the host clock adds launch and synchronisation overhead
    assert events.median_ms <= 1.5 * host.median_ms


class _Sleeper(torch.nn.Module):
    """A 'network' whose forward sleeps: alternately 1 and 12 ms (noisy), or always 3 ms (steady)."""

    def __init__(self, noisy: bool):
        super().__init__()
        self.noisy, self.calls = noisy, 0
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        import time as _t

        self.calls += 1
        _t.sleep((0.001 if self.calls % 2 else 0.012) if self.noisy else 0.003)
        return x


def test_noisy_latency_is_remeasured_a_bounded_number_of_times_then_flagged():
    from nasseg.cost import measure_latency_checked

    d = measure_latency_checked(_Sleeper(True), (1, 3, 8, 8), "cpu", warmup=1, runs=30, retries=2,
                                noisy_load_per_cpu=1e9)
    assert d["attempts"] == 3 and len(d["attempt_cvs"]) == 3 and all(cv > 0.1 for cv in d["attempt_cvs"])
    assert d["noisy"] is True and "CV" in d["warning"] and "noisy latency after 3 measurement(s)" in d["warning"]
    assert d["load_avg_before"] is None or len(d["load_avg_before"]) == 3
    steady = measure_latency_checked(_Sleeper(False), (1, 3, 8, 8), "cpu", warmup=1, runs=30, retries=2,
                                     noisy_load_per_cpu=1e9, noisy_cv=0.5)
    assert steady["attempts"] == 1 and "noisy" not in steady and "warning" not in steady


def test_a_loaded_machine_makes_a_record_noisy(monkeypatch):
    from nasseg import cost

    monkeypatch.setattr(cost.os, "getloadavg", lambda: (64.0, 60.0, 50.0))
    monkeypatch.setattr(cost, "runnable_tasks", lambda: None)  # as on an OS without /proc/loadavg
    d = cost.measure_latency_checked(_Sleeper(False), (1, 3, 8, 8), "cpu", warmup=1, runs=30, retries=1,
                                     noisy_cv=10.0)
    assert d["attempts"] == 2 and d["noisy"] and "1-minute load average 64" in d["warning"]
    assert d["load_avg_before"] == [64.0, 60.0, 50.0] and d["cpus"] >= 1


def test_runnable_tasks_make_a_record_noisy(monkeypatch):
    from nasseg import cost

    monkeypatch.setattr(cost, "runnable_tasks", lambda: 1 + 8 * (cost.os.cpu_count() or 1))
    d = cost.measure_latency_checked(_Sleeper(False), (1, 3, 8, 8), "cpu", warmup=1, runs=30, retries=0,
                                     noisy_cv=10.0)
    assert d["noisy"] and "other runnable task(s)" in d["warning"] and d["runnable_before"] > 1
    monkeypatch.undo()
    assert cost.runnable_tasks() is None or cost.runnable_tasks() >= 1  # this process itself runs (Linux)


def test_latency_record_from_before_the_backend_fields_loads_as_torch_eager():
    d = _record().to_dict()
    for key in ("backend", "backend_version", "providers", "backend_options", "median_ci_ms", "ci_level", "stopping",
                "affinity", "timer"):
        del d[key]
    old = LatencyRecord.from_dict(d)
    assert (old.backend, old.backend_version, old.providers, old.median_ci_ms) == ("torch", torch.__version__, (),
                                                                                    None)
    assert old.stopping is None and old.affinity is None and old.timer == "perf_counter"
    assert LatencyRecord.from_json(old.to_json()) == old


def test_a_fixed_count_record_has_the_median_interval_and_no_rule():
    r = _record()
    lo, hi = r.median_ci_ms
    assert lo <= r.median_ms <= hi and r.ci_level == 0.95 and r.stopping is None and r.affinity is None
    assert r.backend == "torch" and r.backend_version == torch.__version__


def test_stopping_rule_takes_the_minimum_then_stops_and_says_why():
    from nasseg.latency import StoppingRule

    r = measure_latency(_Sleeper(False), (1, 3, 8, 8), warmup=1, runs=MIN_RUNS, pin=True,
                        stopping=StoppingRule(tolerance=0.5, max_runs=100, max_seconds=30))
    assert r.runs == len(r.samples_ms) >= MIN_RUNS and r.stopping["rule"] == "median_ci"
    assert r.stopping["reason"] == "converged" and r.stopping["within_tolerance"] and r.runs == MIN_RUNS
    assert r.affinity is not None and "scope" in r.affinity
    tight = measure_latency(_Sleeper(True), (1, 3, 8, 8), warmup=1, runs=MIN_RUNS,
                            stopping=StoppingRule(tolerance=1e-6, max_runs=40, max_seconds=30))
    assert tight.runs == 40 and tight.stopping["reason"] == "max_runs" and not tight.stopping["within_tolerance"]
    timed = measure_latency(_Sleeper(True), (1, 3, 8, 8), warmup=1, runs=MIN_RUNS,
                            stopping=StoppingRule(tolerance=1e-6, max_runs=1000, max_seconds=0.01))
    assert timed.runs == MIN_RUNS and timed.stopping["reason"] == "max_seconds"  # the minimum, even past the time


def test_an_unconverged_rule_is_flagged_but_not_remeasured():
    from nasseg.cost import measure_latency_checked
    from nasseg.latency import StoppingRule

    d = measure_latency_checked(_Sleeper(True), (1, 3, 8, 8), "cpu", warmup=1, runs=30, retries=2,
                                noisy_load_per_cpu=1e9, noisy_cv=10.0,
                                stopping=StoppingRule(tolerance=1e-6, max_runs=30, max_seconds=30))
    assert d["attempts"] == 1 and d["noisy"] and "median interval" in d["warning"]
