"""FAM against lxtGH/SFSegNets ``network/nn/operators.py`` ``AlignedModule`` and its use in
``network/sfnet_resnet.py`` ``UperNetAlignHead`` (``f = fpn_out_align[i]([conv_x, f]); f = conv_x + f``)."""

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.fusion.sfnet import flow_warp


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_count_equals_aligned_module_128_64():
    # SFNet-R18: fpn_dim 128, AlignedModule(inplane=128, outplane=64):
    # down_h 128*64 + down_l 128*64 (1x1, no bias) + flow_make Conv3x3(128 -> 2, no bias) 128*2*9
    m = registry.get("fam", kind="fusion").create(128, 128, 128)
    assert m.flow_channels == 64  # 0 = high_channels // 2
    assert _params(m) == 128 * 64 * 2 + 128 * 2 * 9 == 18_688
    assert m.down_h.bias is None and m.down_l.bias is None and m.flow_make.bias is None


def test_projections_only_where_widths_differ():
    m = registry.get("fam").create(32, 64, 48)
    # down_h 64*32, down_l 32*32, flow 64*2*9; proj_low ConvBN 32*48 + 96; proj_high ConvBN 64*48 + 96
    assert _params(m) == 64 * 32 + 32 * 32 + 64 * 2 * 9 + 32 * 48 + 96 + 64 * 48 + 96 == 9_024
    assert _params(registry.get("fam").create(48, 48, 48, flow_channels=8)) == 48 * 8 * 2 + 16 * 2 * 9


def test_zero_flow_is_aligned_upsampling_plus_lateral():
    m = registry.get("fam").create(6, 6, 6).eval()
    with torch.no_grad():
        m.flow_make.weight.zero_()
        low, high = torch.randn(2, 6, 9, 13), torch.randn(2, 6, 5, 7)
        up = F.interpolate(high, size=(9, 13), mode="bilinear", align_corners=True)
        torch.testing.assert_close(m(low, high), up + low, atol=1e-5, rtol=1e-5)


def test_flow_is_normalised_by_width_and_height():
    # a constant flow of (W, 0) moves the grid by exactly 1 in normalised x: the left half samples the
    # right half, the right half samples outside the image (zeros)
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    flow = torch.zeros(1, 2, 3, 5)
    flow[:, 0] = 5.0
    out = flow_warp(x, flow, (3, 5))
    assert out[0, 0, 0].tolist() == pytest.approx([2.0, 3.0, 4.0, 0.0, 0.0], abs=1e-6)


# Output of the official AlignedModule(2, 1) plus the lateral low, with every weight set by _fill in
# sorted name order (down_h, down_l, flow_make x 6); flows reach about 4 output pixels, so the zero
# padding of grid_sample is exercised too.
GOLDEN = [
    0.579652, 1.278016, 1.529571, 1.637112, 1.725002, 1.949782, 1.882393, 1.7125, 1.448129, 0.743756,
    0.817727, 0.560545, 0.198406, -0.115125, -0.740547, -0.752676, -0.483359, -0.37152, -0.190381, -0.071545,
    -0.069374, 0.291396, 0.49855, 0.637437, 0.810601, 1.127878, 1.049377, 0.870679, 0.608185, 0.64299,
    0.154324, -0.233862, -0.632513, -0.999325, -0.792184, -0.941595, -1.194993, -1.31378, -1.36659, -1.208051,
]


def test_matches_official_aligned_module():
    m = registry.get("fam").create(2, 2, 2, flow_channels=1)
    sd = m.state_dict()
    for j, k in enumerate(sorted(sd)):
        v = 0.5 * torch.sin(1.3 * torch.arange(sd[k].numel(), dtype=torch.float64) + 0.9 * j + 0.5)
        sd[k] = (6 * v if k.startswith("flow_make") else v).float().reshape(sd[k].shape)
    m.load_state_dict(sd)
    low = torch.sin(0.3 * torch.arange(40.0)).reshape(1, 2, 4, 5)
    high = torch.cos(0.2 * torch.arange(12.0)).reshape(1, 2, 2, 3)
    with torch.no_grad():
        out = m(low, high)
    torch.testing.assert_close(out.flatten(), torch.tensor(GOLDEN), atol=2e-6, rtol=0)
