import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.context.ddrnet import upsample
from nasseg.context.pidnet import PAPPM


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_count_pidnet_s_pappm():
    # XuJiacong/PIDNet models/pidnet.py, PIDNet-S: planes=32, ppm_planes=96:
    # self.spp = PAPPM(planes*16, ppm_planes, planes*4) = PAPPM(512, 96, 128)
    # scale0..4:     5 * (BN 2*512 + 1x1 512*96)        = 5 * 50,176 = 250,880
    # scale_process: BN 2*384 + grouped 3x3 384*384*9/4  = 768 + 331,776 = 332,544
    # compression:   BN 2*480 + 1x1 480*128              = 960 + 61,440 = 62,400
    # shortcut:      BN 2*512 + 1x1 512*128              = 1,024 + 65,536 = 66,560
    # total 712,384
    m = registry.get("pappm", kind="context").create(512, 128)
    assert _params(m.scale_process) == 2 * 384 + 384 * 384 * 9 // 4 == 332_544
    assert _params(m) == 250_880 + 332_544 + 62_400 + 66_560 == 712_384


def test_official_layout_grouped_conv():
    m = PAPPM(64, 32, branch_channels=12)
    conv = m.scale_process[2]
    assert conv.groups == 4 and conv.weight.shape == (48, 12, 3, 3)
    assert {"scale1.3.weight", "scale0.2.weight", "scale_process.0.weight", "scale_process.2.weight",
            "compression.2.weight", "shortcut.2.weight"} <= set(m.state_dict())
    assert not any(k.startswith("process") for k in m.state_dict())
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    assert all(b.momentum == 0.1 for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_parallel_branches_each_add_y0():
    m = PAPPM(16, 8, branch_channels=4).eval()
    x = torch.randn(2, 16, 13, 21)
    with torch.no_grad():
        y0 = m.scale0(x)
        zs = [upsample(s(x), x.shape[-2:]) + y0 for s in (m.scale1, m.scale2, m.scale3, m.scale4)]
        expected = m.compression(torch.cat([y0, m.scale_process(torch.cat(zs, 1))], 1)) + m.shortcut(x)
        torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (33, 47)])
def test_maps_smaller_than_pool_kernels(size):
    y = PAPPM(16, 8, branch_channels=4).train()(torch.randn(2, 16, *size))
    assert y.shape == (2, 8, *size) and torch.isfinite(y).all()
