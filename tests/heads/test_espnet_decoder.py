"""The ESPNet decoder and ESPNet-C classifier, checked by rebuilding the paper's networks.

The encoder below is ESPNet-C (Mehta et al., ECCV 2018) written from nasseg's blocks
and layers, as sacmehta/ESPNet ``train/Model.py`` (b335e48) ``ESPNet_Encoder`` builds it.  Official counts,
from instantiating ``ESPNet(classes=20, p=2, q=8)`` and ``ESPNet_Encoder(classes=20, p=2, q=8)``
(torch 2.13, CPU; published: 0.364 M params, sacmehta/ESPNetv2 segmentation/README.md):

=====================================  ===========
official ESPNet (p=2, q=8, 20 classes)     365,109
official encoder = ESPNet-C, incl. its 1x1 classifier (5,120)   349,449
official decoder (ESPNet minus encoder)     15,660
nasseg split: encoder body (no classifier)  344,329
nasseg split: espnet_decoder (classifier included)   20,780
=====================================  ===========

MACs (fvcore 0.1.5, batch 1, 512x1024, conv incl. transposed conv + linear only, one multiply-add = 1),
the same for the official model and for this rebuild:
ESPNet (p=2, q=8, 20 classes) 4.780220416 GMACs (fvcore defaults incl. BN: 4.848377856);
ESPNet-C (p=2, q=8, 20 classes, logits at 1/8) 3.470155776 GMACs (fvcore defaults: 3.523567616).
The paper's "424 M FLOPs" states no resolution.

With the official weights copied in, the rebuilt ESPNet gave outputs identical to the official model
(checked once, outside the suite: the official code is not vendored).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.espnet import ESP
from nasseg.errors import ConfigError
from nasseg.heads.espnet import ESPNetCDecoder, ESPNetDecoder
from nasseg.layers import BNAct, ConvBNAct

OFFICIAL_ESPNET_PARAMS = 365_109
OFFICIAL_ESPNET_C_PARAMS = 349_449
OFFICIAL_DECODER_PARAMS = 15_660
CLASSIFIER_PARAMS = 256 * 20


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _esp(cin: int, cout: int, stride: int = 1) -> ESP:
    return registry.get("esp", "block").create(cin, cout, stride)


def _br(c: int) -> BNAct:
    return BNAct(c, act="prelu", bn_eps=1e-3)


class ESPNetEncoder(nn.Module):
    """ESPNet-C without its classifier; returns the three taps (19 @ 1/2, 131 @ 1/4, 256 @ 1/8)."""

    def __init__(self, p: int = 2, q: int = 8):
        super().__init__()
        self.level1 = ConvBNAct(3, 16, 3, 2, act="prelu", bn_eps=1e-3)
        self.sample = nn.AvgPool2d(3, 2, 1)  # input reinforcement, applied once (1/2) and twice (1/4)
        self.b1 = _br(16 + 3)
        self.level2_0 = _esp(16 + 3, 64, 2)
        self.level2 = nn.Sequential(*(_esp(64, 64) for _ in range(p)))
        self.b2 = _br(128 + 3)
        self.level3_0 = _esp(128 + 3, 128, 2)
        self.level3 = nn.Sequential(*(_esp(128, 128) for _ in range(q)))
        self.b3 = _br(256)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        img2 = self.sample(x)
        img4 = self.sample(img2)
        f1 = self.b1(torch.cat([self.level1(x), img2], 1))
        y0 = self.level2_0(f1)
        f2 = self.b2(torch.cat([self.level2(y0), y0, img4], 1))
        z0 = self.level3_0(f2)
        f3 = self.b3(torch.cat([z0, self.level3(z0)], 1))
        return [f1, f2, f3]


class Net(nn.Module):
    def __init__(self, decoder: str, num_classes: int = 20, p: int = 2, q: int = 8):
        super().__init__()
        self.encoder = ESPNetEncoder(p, q)
        self.decoder = registry.get(decoder, "decoder").create((19, 131, 256), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def test_espnet_matches_official_parameter_count():
    net = Net("espnet_decoder")
    assert n_params(net) == OFFICIAL_ESPNET_PARAMS
    assert n_params(net.encoder) == OFFICIAL_ESPNET_C_PARAMS - CLASSIFIER_PARAMS == 344_329
    assert n_params(net.decoder) == OFFICIAL_DECODER_PARAMS + CLASSIFIER_PARAMS == 20_780


def test_espnet_c_matches_official_parameter_count():
    net = Net("espnet_c_decoder")
    assert n_params(net) == OFFICIAL_ESPNET_C_PARAMS
    assert n_params(net.decoder) == CLASSIFIER_PARAMS


def test_espnet_shapes_full_resolution():
    net = Net("espnet_decoder").eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        taps = net.encoder(x)
        assert [tuple(t.shape) for t in taps] == [(1, 19, 32, 64), (1, 131, 16, 32), (1, 256, 8, 16)]
        assert tuple(net.decoder(taps).shape) == (1, 20, 64, 128)


@pytest.mark.parametrize("size,expected", [((33, 47), (34, 48)), ((50, 70), (50, 70))])
def test_espnet_sizes_not_divisible_by_eight(size, expected):
    net = Net("espnet_decoder", num_classes=7, p=1, q=1).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(1, 3, *size)).shape) == (1, 7, *expected)


def test_espnet_c_logits_at_one_eighth():
    net = Net("espnet_c_decoder", num_classes=3, p=1, q=1).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(1, 3, 64, 96)).shape) == (1, 3, 8, 12)


def test_decoder_structure():
    d = ESPNetDecoder((19, 131, 256), 20)
    assert d.out_channels == 20 and d.emits_logits
    assert d.esp_l2.in_channels == 40 and not d.esp_l2.use_residual
    ups = (d.up_l3, d.up_l2, d.up_l1)
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) and u.bias is None for u in ups)
    assert d.classifier_l3.bias is None and d.proj_l2.bias is None
    assert d.fuse_l1.conv.in_channels == 39 and d.fuse_l1.bn.eps == 1e-3
    c = ESPNetCDecoder((256,), 20)
    assert c.emits_logits and c.out_channels == 20 and c.classifier.bias is None


def test_decoder_rejects_bad_taps_and_too_few_classes():
    with pytest.raises(ConfigError, match="exactly 3"):
        ESPNetDecoder((131, 256), 20)
    with pytest.raises(ConfigError, match="num_classes must be >= 5"):
        ESPNetDecoder((19, 131, 256), 4)
    with pytest.raises(ConfigError, match="at least the deepest tap"):
        ESPNetCDecoder((), 20)
