import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg import presets
from nasseg import zero_cost as zc
from nasseg.build import build
from nasseg.cost import count_macs, count_params
from nasseg.errors import ConfigError, NassegError

RES = (32, 64)  # fast; the all-presets sweep runs at 64 x 128
SMALL = "espnet"  # the fastest preset: 0.37 M params, PReLU activations, a decoder that emits logits


def _net(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    p = presets.get(name)
    return build(p.genome, p.num_classes)


@pytest.fixture(scope="module")
def batch():
    return zc.proxy_batch(RES, 2, seed=0)


# ------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("name", list(zc.PROXIES))
def test_each_proxy_is_deterministic_per_seed(name):
    g = presets.get(SMALL).genome
    a = zc.score(name, g, num_classes=20, resolution=RES, batch_size=2, seed=0)
    b = zc.score(name, g, num_classes=20, resolution=RES, batch_size=2, seed=0)
    c = zc.score(name, g, num_classes=20, resolution=RES, batch_size=2, seed=1)
    assert math.isfinite(a) and a == b
    if name not in ("params", "macs"):  # a genome is built with the seed's weights and scored on its batch
        assert a != c
    else:
        assert a == c


def test_a_module_is_scored_the_same_whatever_the_caller_s_random_state(batch):
    net = _net(SMALL)
    torch.manual_seed(123)
    a = zc.zen_score(net, batch, seed=5)
    torch.manual_seed(456)
    assert zc.zen_score(net, batch, seed=5) == a != zc.zen_score(net, batch, seed=6)


def test_the_caller_s_random_state_is_restored(batch):
    net = _net(SMALL)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    zc.zen_score(net, batch, seed=0)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------- caller untouched
def test_the_caller_s_weights_buffers_modes_and_grads_are_unchanged(batch):
    net = _net("stdc1_seg")
    net.train()
    net.stages[0].eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    for name, proxy in zc.PROXIES.items():
        proxy(net, batch, seed=0)
        after = net.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name
        assert [m.training for m in net.modules()] == modes, name
        assert all(p.grad is None for p in net.parameters()), name
        assert all(p.dtype == torch.float32 for p in net.parameters()), name


# ------------------------------------------------------------------------------ values that differ
def test_clearly_different_nets_score_differently(batch):
    small, big = _net(SMALL), _net("stdc1_seg")
    small_scores = {n: f(small, batch, seed=0) for n, f in zc.PROXIES.items()}
    big_scores = {n: f(big, batch, seed=0) for n, f in zc.PROXIES.items()}
    for n in zc.PROXIES:
        assert small_scores[n] != pytest.approx(big_scores[n], rel=1e-3), n
    assert big_scores["params"] > small_scores["params"] and big_scores["macs"] > small_scores["macs"]


def test_params_and_macs_reuse_the_cost_module(batch):
    net = _net(SMALL)
    assert zc.params(net, batch) == count_params(net)
    assert zc.macs(net, batch) == count_macs(net, (1, 3, *RES)).macs  # per image, whatever the batch


# ----------------------------------------------------------------------------- hand-checked values
def test_synflow_of_a_linear_network_is_twice_its_output(batch):
    # two bias-free 1x1 convs: R = H W 1'|W2||W1|1 is linear in each layer, so sum theta dR/dtheta = 2 R
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.Conv2d(4, 2, 1, bias=False))
    w1, w2 = net[0].weight.detach().double().abs()[:, :, 0, 0], net[1].weight.detach().double().abs()[:, :, 0, 0]
    r = RES[0] * RES[1] * float((w2 @ w1).sum())
    assert zc.synflow(net, batch) == pytest.approx(math.log(2 * r), rel=1e-12)


def test_naswot_kernel_by_hand_and_functional_relu_counts_like_the_module(batch):
    images, _ = batch
    codes = (images.reshape(2, -1) > 0).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    expected = float(torch.linalg.slogdet(kernel)[1])
    assert zc.naswot(nn.Sequential(nn.ReLU()), batch) == pytest.approx(expected, rel=1e-12)

    class Functional(nn.Module):
        def forward(self, x):
            return F.relu(x)

    assert zc.naswot(Functional(), batch) == pytest.approx(expected, rel=1e-12)
    assert zc.naswot(nn.Sequential(nn.GELU()), batch) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(NassegError, match=r"naswot: the network calls no ReLU-family activation"):
        zc.naswot(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sigmoid()), batch)


def test_grad_norm_and_snip_by_hand_on_a_one_layer_classifier(batch):
    net = nn.Conv2d(3, 20, 1)
    images, labels = batch
    loss = F.cross_entropy(net(images), labels)
    loss.backward()
    norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in net.parameters()))
    saliency = float((net.weight * net.weight.grad).abs().sum().detach())
    net.zero_grad(set_to_none=True)
    assert zc.grad_norm(net, batch) == pytest.approx(norm, rel=1e-5)
    assert zc.snip(net, batch) == pytest.approx(saliency, rel=1e-5)


def test_labels_fold_into_fewer_classes_than_the_dataset_has(batch):
    net = nn.Conv2d(3, 4, 1)  # 4 classes; synthetic labels go up to 10
    assert math.isfinite(zc.grad_norm(net, batch)) and math.isfinite(zc.snip(net, batch))


def test_zen_takes_the_features_the_final_classifier_reads():
    x = torch.randn(2, 3, *RES)
    stdc, faster, esp = _net("stdc1_seg").train(), _net("fasternet_t0").train(), _net(SMALL).train()
    with torch.no_grad():
        assert zc._zen_features(stdc, x).shape[1] == stdc.head.in_channels  # the main head's input
        assert zc._zen_features(faster, x).shape == (2, faster.stage_channels[-1], 1, 2)  # pre-GAP
        assert zc._zen_features(esp, x).shape == (2, 20, *RES)  # logits: the decoder classifies itself


# --------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", ["fasternet_t0", "lednet"])
def test_a_classifier_and_a_functional_relu_net_score_finite(name, batch):
    # fasternet returns [N, 1000] class scores; LEDNet's blocks call F.relu
    net = _net(name)
    for proxy, f in zc.PROXIES.items():
        assert math.isfinite(f(net, batch, seed=0)), proxy


@pytest.mark.slow  # about 20 s on one CPU thread
def test_every_proxy_is_finite_on_every_preset():
    batch = zc.proxy_batch((64, 128), 2, seed=0)
    for name in presets.names():
        net = _net(name)
        for proxy, f in zc.PROXIES.items():
            assert math.isfinite(f(net, batch, seed=0)), (name, proxy)


# ------------------------------------------------------------------------------------------- errors
def test_unknown_proxy_name_lists_the_valid_ones():
    g = presets.get(SMALL).genome
    with pytest.raises(ConfigError, match=r"unknown zero-cost proxy 'synflw'; did you mean synflow\? valid: "
                                          r"synflow, naswot, grad_norm, snip, zen_score, params, macs"):
        zc.score("synflw", g, num_classes=20)
    with pytest.raises(ConfigError, match=r"unknown zero-cost proxy 'fisher'"):
        zc.score_all(g, names=["naswot", "fisher"], num_classes=20)


def test_score_all_returns_every_proxy_in_order():
    scores = zc.score_all(_net(SMALL), names=["params", "naswot"], num_classes=20, resolution=(32, 64))
    assert list(scores) == ["params", "naswot"] and all(math.isfinite(v) for v in scores.values())


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 1}, r"batch_size = 1 is not allowed; valid: an integer >= 2"),
    ({"resolution": (8, 16)}, r"resolution = \(8, 16\) is not allowed; valid: two integers >= 16"),
    ({"seed": -1}, r"seed = -1 is not allowed"),
    ({"device": "tpu"}, r"device = 'tpu' is not allowed"),
    ({"num_classes": 19}, r"num_classes = 19 does not match the module's num_classes = 20"),
])
def test_bad_arguments_raise_config_error(kw, match):
    args = {"num_classes": 20, **kw}
    with pytest.raises(ConfigError, match=match):
        zc.score("params", _net(SMALL), **args)


def test_bad_model_or_batch_raise_config_error(batch):
    images, labels = batch
    with pytest.raises(ConfigError, match=r"module_or_genome = str is not allowed"):
        zc.score("params", "espnet", num_classes=20)
    with pytest.raises(ConfigError, match=r"naswot: a batch of 1 image is not allowed; valid: at least 2"):
        zc.naswot(_net(SMALL), (images[:1], labels[:1]))
    with pytest.raises(ConfigError, match=r"synflow: batch = Tensor is not allowed"):
        zc.synflow(_net(SMALL), images)
    with pytest.raises(ConfigError, match=r"labels of shape \(2, 64\) do not go with images"):
        zc.snip(_net(SMALL), (images, labels[:, 0]))
    for proxy in zc.PROXIES.values():
        with pytest.raises(ConfigError, match=r"model = int is not allowed; valid: a torch.nn.Module"):
            proxy(3, batch)
