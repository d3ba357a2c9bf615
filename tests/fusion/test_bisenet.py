"""ARM / FFM fusions against STDC-Seg ``models/model_stages.py`` (MichaelFan01/STDC-Seg).

Every count below is summed by hand from the official constructors.  STDC-Seg's ``ConvBNReLU`` is a
bias-free conv + InPlaceABNSync(activation='none'), whose affine weight and bias are 2 parameters per
channel, like ``nn.BatchNorm2d``.
"""

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError
from nasseg.fusion.bisenet import AttentionRefinementModule, FeatureFusionModule
from nasseg.layers import ConvBNAct

# AttentionRefinementModule(in, 128): ConvBNReLU 3x3 in*128*9 + BN 256; conv_atten 128*128; bn_atten 256
ARM32 = 1024 * 128 * 9 + 256 + 128 * 128 + 256  # = 1,196,544
ARM16 = 512 * 128 * 9 + 256 + 128 * 128 + 256  # = 606,720
# conv_head32 / conv_head16: ConvBNReLU(128, 128, ks=3): 128*128*9 + 256
CONV_HEAD = 128 * 128 * 9 + 256  # = 147,712
# conv_avg: ConvBNReLU(1024, 128, ks=1): 1024*128 + 256
CONV_AVG = 1024 * 128 + 256  # = 131,328
# FeatureFusionModule(256 + 128, 256): convblk 384*256 + 512; conv1 256*64; conv2 64*256 (no bias)
FFM = 384 * 256 + 512 + 256 * 64 + 64 * 256  # = 131,584
# ContextPath('STDCNet813') minus its backbone: arm16, arm32, conv_head32, conv_head16, conv_avg
CONTEXT_PATH_WITHOUT_BACKBONE = ARM16 + ARM32 + 2 * CONV_HEAD + CONV_AVG  # = 2,230,016


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _stdc1_chain():
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNAct(1024, 128, 1))  # ContextPath.conv_avg
    arm32 = registry.get("arm", kind="fusion").create(1024, 128, 128, refine="none")
    arm16 = registry.get("arm", kind="fusion").create(512, 128, 128)
    ffm = registry.get("ffm", kind="fusion").create(256, 128, 256)
    return gap, arm32, arm16, ffm


def test_official_counts_as_integers():
    assert (ARM32, ARM16, CONV_HEAD, CONV_AVG, FFM) == (1_196_544, 606_720, 147_712, 131_328, 131_584)
    assert CONTEXT_PATH_WITHOUT_BACKBONE == 2_230_016


def test_module_counts_equal_official_classes():
    assert _params(AttentionRefinementModule(1024, 128)) == ARM32
    assert _params(AttentionRefinementModule(512, 128)) == ARM16
    assert _params(FeatureFusionModule(384, 256, reduction=4)) == FFM
    assert _params(registry.get("arm").create(512, 128, 128).refine) == CONV_HEAD  # conv_head32


def test_stdc1_chain_equals_context_path_plus_ffm():
    gap, arm32, arm16, ffm = _stdc1_chain()
    assert _params(gap) == CONV_AVG
    assert _params(arm32) == ARM32  # refine none: no conv
    assert _params(arm16) == ARM16 + CONV_HEAD  # arm16 + conv_head32
    assert _params(ffm) == CONV_HEAD + FFM  # conv_head16 + ffm
    total = sum(_params(m) for m in (gap, arm32, arm16, ffm))
    assert total == CONTEXT_PATH_WITHOUT_BACKBONE + FFM == 2_361_600


@pytest.mark.parametrize("size", [(32, 64), (33, 65)])
def test_stdc1_chain_runs_on_odd_taps(size):
    h, w = size
    gap, arm32, arm16, ffm = [m.train() for m in _stdc1_chain()]
    f8 = torch.randn(2, 256, h, w)
    f16 = torch.randn(2, 512, (h + 1) // 2, (w + 1) // 2)
    f32 = torch.randn(2, 1024, (h + 3) // 4, (w + 3) // 4)
    y = arm32(f32, gap(f32))
    assert y.shape == (2, 128, *f32.shape[-2:])
    y = arm16(f16, y)
    assert y.shape == (2, 128, *f16.shape[-2:])
    y = ffm(f8, y)
    assert y.shape == (2, 256, h, w) and torch.isfinite(y).all()


def test_arm_refine_none_adds_the_broadcast_global_context():
    m = registry.get("arm").create(8, 6, 6, refine="none").eval()
    low, g = torch.randn(2, 8, 5, 7), torch.randn(2, 6, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(m(low, g), m.arm(low) + g.expand(-1, -1, 5, 7))


def test_arm_refines_after_upsampling():
    m = registry.get("arm").create(8, 6, 4, upsample="nearest").eval()
    low, high = torch.randn(2, 8, 5, 7), torch.randn(2, 6, 3, 4)
    with torch.no_grad():
        up = nn.functional.interpolate(high, size=(5, 7), mode="nearest")
        torch.testing.assert_close(m(low, high), m.arm(low) + m.refine(up))


def test_arm_refine_none_needs_matching_width():
    with pytest.raises(BlockArgumentError, match="high_channels == 48"):
        registry.get("arm").create(32, 64, 48, refine="none")


def test_ffm_is_residual_channel_attention_over_the_concat():
    m = registry.get("ffm").create(4, 6, 8, refine="none", reduction=1).eval()
    assert m.ffm.conv1.out_channels == 8  # TorchSeg BiSeNet: reduction 1
    assert m.ffm.conv1.bias is None and m.ffm.conv2.bias is None
    low, high = torch.randn(2, 4, 5, 7), torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        feat = m.ffm.convblk(torch.cat([low, high], 1))  # low first, as fsp, fcp
        a = torch.sigmoid(m.ffm.conv2(torch.relu(m.ffm.conv1(feat.mean((2, 3), keepdim=True)))))
        torch.testing.assert_close(m(low, high), feat + feat * a)


def test_ffm_reduction_larger_than_width_is_rejected():
    with pytest.raises(BlockArgumentError, match="reduction"):
        registry.get("ffm").create(4, 4, 8, reduction=16)


def test_bilinear_upsampling_uses_align_corners():
    m = registry.get("arm").create(4, 4, 4, refine="none", upsample="bilinear").eval()
    low, high = torch.zeros(1, 4, 5, 7), torch.randn(1, 4, 3, 4)
    with torch.no_grad():
        up = nn.functional.interpolate(high, size=(5, 7), mode="bilinear", align_corners=True)
        torch.testing.assert_close(m(low, high), m.arm(low) + up)


# BiSeNet V2's BGALayer() (CoinCheung/BiSeNet 6b4b67a lib/models/bisenetv2.py, the re-implementation; no author
# code), parameters of the instantiated class: left1 and right2 (dw 3x3 + BN + 1x1), left2 and right1 (3x3 + BN),
# conv (3x3 + BN), all at 128.  Outside the suite its state dict loaded strict=True into ours, identical outputs.
BGA_OFFICIAL = 478_720


def test_bga_params_equal_official_class():
    dw_pw = 128 * 9 + 256 + 128 * 128
    assert 2 * dw_pw + 3 * (128 * 128 * 9 + 256) == BGA_OFFICIAL
    bga = registry.get("bga", "fusion").create(128, 128, 128)
    assert _params(bga) == BGA_OFFICIAL
    assert {"left1.2.weight", "left2.1.bias", "right1.0.weight", "right2.2.weight", "conv.1.weight"} <= set(
        bga.state_dict())


def test_bga_matches_fixed_factor_upsampling():
    """At high = low / 4 the size-based resizing equals the reference's nn.Upsample(scale_factor=4)."""
    torch.manual_seed(0)
    bga = registry.get("bga", "fusion").create(16, 24, 16).eval()
    low, high = torch.randn(1, 16, 16, 32), torch.randn(1, 24, 4, 8)
    up = nn.Upsample(scale_factor=4)
    with torch.no_grad():
        ref = bga.conv(bga.left1(low) * torch.sigmoid(up(bga.right1(high)))
                       + up(bga.left2(low) * torch.sigmoid(bga.right2(high))))
        assert torch.equal(bga(low, high), ref)
