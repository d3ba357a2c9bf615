"""CFF against hszhao/ICNet ``evaluation/prototxt/icnet_cityscapes_bnnomerge.prototxt``.

There every CFF conv has ``bias_term: false`` followed by a BN layer with a learnable slope and bias
(2 per channel).  In ``icnet_cityscapes.prototxt`` the BNs are folded, leaving one bias per channel:
128 fewer parameters per conv.
"""

import torch
import torch.nn.functional as F

from nasseg import registry


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_counts_equal_the_prototxt():
    cff = registry.get("cff", kind="fusion")
    # sub24: conv5_4_k1 (256) -> conv_sub4 3x3 d2 256 -> 128 + BN; conv3_1 (256) -> conv3_1_sub2_proj 1x1 + BN
    sub24 = cff.create(256, 256, 128)
    assert _params(sub24) == 256 * 128 * 9 + 2 * 128 + 256 * 128 + 2 * 128 == 328_192
    assert 328_192 - 2 * 128 == 327_936  # BN-merged prototxt: conv biases instead of BN
    # sub12: sub24_sum (128) -> conv_sub2 3x3 d2 128 -> 128 + BN; conv3_sub1 (64) -> conv3_sub1_proj 1x1 + BN
    sub12 = cff.create(64, 128, 128)
    assert _params(sub12) == 128 * 128 * 9 + 2 * 128 + 64 * 128 + 2 * 128 == 156_160
    assert sub24.conv_high.conv.bias is None and sub24.conv_low.conv.bias is None


def test_structure_dilated_high_projected_low_sum_relu():
    m = registry.get("cff").create(5, 6, 4).eval()
    assert m.conv_high.conv.dilation == (2, 2) and m.conv_high.conv.padding == (2, 2)
    assert m.conv_low.conv.kernel_size == (1, 1)
    low, high = torch.randn(2, 5, 9, 13), torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        up = F.interpolate(high, size=(9, 13), mode="bilinear", align_corners=True)  # Caffe Interp
        torch.testing.assert_close(m(low, high), torch.relu(m.conv_high(up) + m.conv_low(low)))
