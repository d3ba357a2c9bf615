"""UAFM against PaddleSeg ``paddleseg/models/layers/tensor_fusion.py`` and ``pp_liteseg.py``.

PP-LiteSeg-T (configs/pp_liteseg/pp_liteseg_stdc1_*.yml): STDC1 taps 256 / 512 / 1024 (1/8, 1/16, 1/32),
``cm_out_ch`` 128, ``arm_out_chs`` [32, 64, 128].  ``PPLiteSegHead`` builds arm i with
x_ch = tap i, y_ch = cm_out_ch for the deepest and arm_out_chs[i + 1] otherwise, out_ch = arm_out_chs[i]:
UAFM32(1024, 128, 128), UAFM16(512, 128, 64), UAFM8(256, 64, 32).  All convs ``bias_attr=False``.

UAFM_SpAtten(x, y, out) = conv_x x*y*9 + BN 2y + conv_out y*out*9 + BN 2 out
                          + atten ConvBNReLU(4, 2, 3) 4*2*9 + 4 + ConvBN(2, 1, 3) 2*1*9 + 2  (= 96)
Paddle also holds a frozen one-element ``_scale`` (stop_gradient) that this port replaces by the
literal 1: Paddle's trainable count equals ours, its total is ours + 1 (checked with paddlepaddle 3.3.1
on PaddleSeg d7975e7: trainable 1,327,712 / 664,032 / 166,176).
"""

import pytest
import torch

from nasseg import registry
from nasseg.errors import BlockArgumentError

ATTEN = 4 * 2 * 9 + 2 * 2 + 2 * 1 * 9 + 2 * 1  # = 96
UAFM32 = 1024 * 128 * 9 + 2 * 128 + 128 * 128 * 9 + 2 * 128 + ATTEN  # = 1,327,712
UAFM16 = 512 * 128 * 9 + 2 * 128 + 128 * 64 * 9 + 2 * 64 + ATTEN  # = 664,032
UAFM8 = 256 * 64 * 9 + 2 * 64 + 64 * 32 * 9 + 2 * 32 + ATTEN  # = 166,176


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_pp_liteseg_t_counts():
    assert (UAFM32, UAFM16, UAFM8) == (1_327_712, 664_032, 166_176)
    uafm = registry.get("uafm", kind="fusion")
    taps, arm_out, cm_out = (256, 512, 1024), (32, 64, 128), 128
    made = []
    for i in range(3):  # PPLiteSegHead.__init__
        high = cm_out if i == 2 else arm_out[i + 1]
        made.append(uafm.create(taps[i], high, arm_out[i]))
    assert [_params(m) for m in made] == [UAFM8, UAFM16, UAFM32]
    assert sum(_params(m) for m in made) == 2_157_920
    assert all(m.conv_x.conv.bias is None and m.conv_out.conv.bias is None for m in made)


def test_channel_attention_count():
    # UAFM_ChAtten(48, 64, 40): conv_x 48*64*9 + 128; conv_out 64*40*9 + 80;
    # ConvBNAct(4*64 -> 32, 1x1) 256*32 + 64; ConvBN(32 -> 64, 1x1) 32*64 + 128  (Paddle trainable: 61,328)
    m = registry.get("uafm").create(48, 64, 40, attention="channel")
    assert _params(m) == 48 * 64 * 9 + 128 + 64 * 40 * 9 + 80 + 256 * 32 + 64 + 32 * 64 + 128 == 61_328


def test_spatial_attention_input_order():
    m = registry.get("uafm").create(3, 4, 2)
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2)  # mean 1.5, max 3
    y = 10 * torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2)  # mean 15, max 30
    a = m._atten_input(x, y)
    assert a[0, :, 0, 0].tolist() == [1.5, 3.0, 15.0, 30.0]  # [mean x, max x, mean y, max y]


def test_channel_attention_input_order():
    m = registry.get("uafm").create(3, 2, 2, attention="channel")
    x = torch.tensor([[[[0.0, 2.0]], [[1.0, 5.0]]]])  # per channel: avg 1, 3; max 2, 5
    y = -x
    a = m._atten_input(x, y)
    assert a[0, :, 0, 0].tolist() == [1.0, 3.0, -1.0, -3.0, 2.0, 5.0, 0.0, -1.0]  # avg x, avg y, max x, max y


@pytest.mark.parametrize("attention", ["spatial", "channel"])
@pytest.mark.parametrize("saturate,keep", [(1e4, "x"), (-1e4, "y")])
def test_alpha_weights_the_low_feature(attention, saturate, keep):
    m = registry.get("uafm").create(3, 4, 2, attention=attention).eval()
    with torch.no_grad():
        m.conv_xy_atten[1].bn.bias.fill_(saturate)  # alpha -> 1 or 0
        low, high = torch.randn(2, 3, 5, 7), torch.randn(2, 4, 3, 4)
        x = m.conv_x(low)
        y = torch.nn.functional.interpolate(high, size=(5, 7), mode="bilinear", align_corners=False)
        torch.testing.assert_close(m(low, high), m.conv_out(x if keep == "x" else y))


def test_channel_attention_needs_two_high_channels():
    with pytest.raises(BlockArgumentError, match="high_channels // 2"):
        registry.get("uafm").create(3, 1, 2, attention="channel")


# Golden outputs of PaddleSeg's own UAFM_SpAtten / UAFM_ChAtten(3, 4, 2) (paddlepaddle 3.3.1, PaddleSeg
# d7975e7, eval mode) with every parameter and BN statistic set by _fill in sorted order of the names
# below (Paddle's ``_conv`` / ``_batch_norm`` / ``_mean`` / ``_variance`` mapped to ours).
GOLDEN = {
    "spatial": [
        0.249079, 0.246732, 0.245607, 0.247986, 0.249663, 0.260811, 0.263002, 0.264871, 0.263105, 0.265596,
        0.26069, 0.260233, 0.257154, 0.255755, 0.253983, 0.751534, 0.767905, 0.772898, 0.726564, 0.68571,
        0.488327, 0.458889, 0.437085, 0.459793, 0.451579, 0.490173, 0.533348, 0.580418, 0.615402, 0.628443,
    ],
    "channel": [
        0.253468, 0.244204, 0.244676, 0.247772, 0.242192, 0.256893, 0.260114, 0.261189, 0.259564, 0.263435,
        0.264247, 0.268257, 0.265827, 0.264013, 0.265626, 0.742124, 0.871958, 0.850776, 0.795651, 0.874525,
        0.552312, 0.497162, 0.489949, 0.509707, 0.463873, 0.367345, 0.357642, 0.390602, 0.429094, 0.420172,
    ],
}


def _fill(name, shape, j):
    n = torch.Size(shape).numel()
    v = 0.5 * torch.sin(1.3 * torch.arange(n, dtype=torch.float64) + 0.9 * j + 0.5)
    if name.endswith("running_var"):
        v = v.abs() + 0.5
    return v.float().reshape(shape)


@pytest.mark.parametrize("attention", ["spatial", "channel"])
def test_matches_paddleseg_output(attention):
    m = registry.get("uafm").create(3, 4, 2, attention=attention).eval()
    sd = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    m.load_state_dict({k: _fill(k, sd[k].shape, j) for j, k in enumerate(sorted(sd))}, strict=False)
    x = torch.sin(0.3 * torch.arange(45.0)).reshape(1, 3, 3, 5)
    y = torch.cos(0.2 * torch.arange(24.0)).reshape(1, 4, 2, 3)
    with torch.no_grad():
        out = m(x, y)
    torch.testing.assert_close(out.flatten(), torch.tensor(GOLDEN[attention]), atol=2e-6, rtol=0)
