import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.context.ddrnet import DAPPM, upsample


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _dappm_params(cin, branch, cout):
    """Hand count of the official DAPPM: every unit is BN(in) + bias-free conv."""
    scale = 2 * cin + cin * branch  # scale0..scale4: BN(in) + 1x1 in->branch
    process = 2 * branch + branch * branch * 9  # process1..4: BN(branch) + 3x3 branch->branch
    compression = 2 * 5 * branch + 5 * branch * cout  # BN(5 branch) + 1x1 5 branch->out
    shortcut = 2 * cin + cin * cout  # BN(in) + 1x1 in->out
    return 5 * scale + 4 * process + compression + shortcut


@pytest.mark.parametrize("cin,branch,cout,expected", [
    # DDRNet-23-slim (ydhongHIT/DDRNet segmentation/DDRNet_23_slim.py, planes=32, spp_planes=128):
    # self.spp = DAPPM(planes*16, spp_planes, planes*4) = DAPPM(512, 128, 128)
    # 5*(1,024+65,536) + 4*(256+147,456) + (1,280+81,920) + (1,024+65,536) = 1,073,408
    (512, 128, 128, 1_073_408),
    # PIDNet-L (XuJiacong/PIDNet models/pidnet.py, m=3 -> planes=64, ppm_planes=112):
    # self.spp = DAPPM(planes*16, ppm_planes, planes*4) = DAPPM(1024, 112, 256)
    # 5*(2,048+114,688) + 4*(224+112,896) + (1,120+143,360) + (2,048+262,144) = 1,444,832
    (1024, 112, 256, 1_444_832),
])
def test_counts_match_official(cin, branch, cout, expected):
    m = registry.get("dappm", kind="context").create(cin, cout, branch_channels=branch)
    assert _dappm_params(cin, branch, cout) == expected
    assert _params(m) == expected


def test_official_layout_bias_free_bn_momentum():
    m = DAPPM(64, 32, branch_channels=16)
    keys = set(m.state_dict())
    # pooled branch: 0 pool, 1 BN, 2 ReLU, 3 conv; scale0/process/compression/shortcut: 0 BN, 1 ReLU, 2 conv
    assert {"scale1.1.weight", "scale1.3.weight", "scale4.3.weight", "scale0.0.running_var",
            "scale0.2.weight", "process4.2.weight", "compression.2.weight", "shortcut.2.weight"} <= keys
    assert [m.scale1[0].kernel_size, m.scale2[0].kernel_size, m.scale3[0].kernel_size] == [5, 9, 17]
    assert isinstance(m.scale4[0], nn.AdaptiveAvgPool2d)
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    assert all(b.momentum == 0.1 for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_cascade():
    m = DAPPM(16, 8, branch_channels=4).eval()
    x = torch.randn(2, 16, 13, 21)
    with torch.no_grad():
        ys = [m.scale0(x)]
        for i in range(1, 5):  # each step adds the previous output
            scale, process = getattr(m, f"scale{i}"), getattr(m, f"process{i}")
            ys.append(process(upsample(scale(x), x.shape[-2:]) + ys[-1]))
        expected = m.compression(torch.cat(ys, 1)) + m.shortcut(x)
        torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (33, 47)])
def test_maps_smaller_than_pool_kernels(size):
    y = DAPPM(16, 8, branch_channels=4).train()(torch.randn(2, 16, *size))
    assert y.shape == (2, 8, *size) and torch.isfinite(y).all()
