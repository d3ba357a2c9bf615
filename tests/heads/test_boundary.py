"""PIDNet boundary head, Canny-equivalent edge target, class-balanced BCE and the BAS labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.heads.boundary import BoundaryHead, bas_labels, boundary_loss, boundary_target

IGNORE = 255

# Label maps and the official edge target for them: cv2.Canny(label, 0.1, 0.2), then cv2.dilate with
# np.ones((4, 4)) and > 50, no border trim (OpenCV 5.0.0).  '#' is 255.  B is checked with
# ignore_index=None, the official semantics, in which 255 is just another class id.
LABELS_A = [
    "333333000000022222",
    "333333000000022222",
    "333333000000022222",
    "333333000000022222",
    "333333222222222222",
    "111332222222222222",
    "111112222222222222",
    "111112222222222222",
    "111111222222222222",
    "111111222222444442",
    "111111124444444444",
    "111111444444444444",
    "111111444444444444",
    "111114444444444444",
]
EDGES_A = [
    "000011110001111000",
    "000011110001111000",
    "000011111111111000",
    "111111111111111000",
    "111111111111111000",
    "111111111111111000",
    "111111111000000000",
    "011111110000111111",
    "000011111111111111",
    "000011111111111111",
    "000011111111111111",
    "000011111111111111",
    "000011111110000000",
    "000011111000000000",
]
LABELS_B = [
    "#########333333333",
    "##########33333333",
    "##3#######33333322",
    "###########3222222",
    "###########2222222",
    "###########2222222",
    "###########2222222",
    "1########111000000",
    "111111111111000000",
    "111111111111000000",
    "111111111111100000",
    "111111111111100000",
    "111111111111100000",
    "111111111111110000",
]
EDGES_B = [
    "111111001111000011",
    "111111001111111111",
    "111111001111111111",
    "111111001111111111",
    "111111000111111111",
    "111111000111111111",
    "111111111111111111",
    "111111111111111111",
    "111111111111111111",
    "111111111111111000",
    "000000000011111000",
    "000000000001111100",
    "000000000001111100",
    "000000000001111100",
]


def _labels(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[IGNORE if ch == "#" else int(ch) for ch in r] for r in rows])


def _mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[float(ch) for ch in r] for r in rows])


@pytest.mark.parametrize("labels,edges,ignore_index", [
    (LABELS_A, EDGES_A, IGNORE),
    (LABELS_A, EDGES_A, None),
    (LABELS_B, EDGES_B, None),
])
def test_matches_opencv_canny_and_dilate(labels, edges, ignore_index):
    out = boundary_target(_labels(labels)[None], ignore_index)
    assert out.shape == (1, 1, len(labels), len(labels[0])) and out.dtype == torch.float32
    torch.testing.assert_close(out[0, 0], _mask(edges))


@pytest.mark.parametrize("flip", [False, True])
def test_straight_boundary_gives_a_4_pixel_band_centred_on_it(flip):
    lab = torch.zeros(1, 16, 20, dtype=torch.long)
    lab[..., 10:] = 3  # boundary between columns 9 and 10
    if flip:
        lab = lab.transpose(1, 2).contiguous()
    out = boundary_target(lab)[0, 0]
    expected = torch.zeros(16, 20)
    expected[:, 8:12] = 1.0  # Canny keeps column 9; the 4x4 dilation reaches columns 8..11
    torch.testing.assert_close(out, expected.t() if flip else expected)


def test_edge_trim_zeroes_the_frame_before_dilation():
    lab = torch.zeros(1, 20, 20, dtype=torch.long)
    lab[..., 10:] = 2
    out = boundary_target(lab, edge_trim=6)[0, 0]
    expected = torch.zeros(20, 20)
    expected[5:16, 8:12] = 1.0  # same as OpenCV on gen_sample's trimmed edge map
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="edge_trim"):
        boundary_target(lab, edge_trim=-1)


def test_one_class_gives_no_edge():
    assert boundary_target(torch.full((2, 12, 15), 7)).sum() == 0


def test_class_ignore_border_is_no_edge_by_default_but_is_officially():
    lab = torch.full((1, 20, 20), 4, dtype=torch.long)
    lab[:, 6:13, 5:15] = IGNORE
    assert boundary_target(lab).sum() == 0
    assert boundary_target(lab, ignore_index=None).sum() > 0


def test_ignore_handling_only_removes_edges_and_keeps_class_borders_away_from_ignore():
    lab = _labels(LABELS_B)[None]
    ours = boundary_target(lab)[0, 0]
    official = boundary_target(lab, ignore_index=None)[0, 0]
    assert (ours <= official).all()
    # rows 11.. see edges only from rows >= 9, whose 3x3 windows hold no ignore pixel
    torch.testing.assert_close(ours[11:], official[11:])
    assert ours[:7, :8].sum() == 0  # deep in the ignore region and at its borders with class 3/1


def test_labels_must_be_integer_n_h_w():
    with pytest.raises(ValueError, match="integer"):
        boundary_target(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        boundary_target(torch.zeros(8, 8, dtype=torch.long))


def _official_weighted_bce(logits, target):
    """utils/criterion.py weighted_bce, written out: balance over the whole batch, mean over pixels."""
    pos = (target == 1).float()
    neg = (target == 0).float()
    total = pos.sum() + neg.sum()
    weight = pos * neg.sum() / total + neg * pos.sum() / total
    return F.binary_cross_entropy_with_logits(logits, target, weight)


def test_loss_is_class_balanced_bce():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 9, 11)
    target = (torch.rand(3, 1, 9, 11) > 0.85).float()
    torch.testing.assert_close(boundary_loss(logits, target), _official_weighted_bce(logits, target))


def test_loss_with_valid_equals_loss_on_the_valid_pixels_alone():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 8, 10)
    target = (torch.rand(2, 1, 8, 10) > 0.8).float()
    valid = torch.rand(2, 8, 10) > 0.25
    keep = valid.unsqueeze(1)
    expected = _official_weighted_bce(logits[keep][None], target[keep][None])
    torch.testing.assert_close(boundary_loss(logits, target, valid), expected)
    torch.testing.assert_close(boundary_loss(logits, target, keep), expected)


def test_loss_without_edges_is_zero_as_officially():
    logits = torch.randn(2, 1, 6, 6, requires_grad=True)
    loss = boundary_loss(logits, torch.zeros(2, 1, 6, 6))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph


def test_loss_upsamples_logits_bilinearly_align_corners():
    torch.manual_seed(2)
    small = torch.randn(2, 1, 4, 5)
    target = (torch.rand(2, 1, 32, 40) > 0.8).float()
    up = F.interpolate(small, size=(32, 40), mode="bilinear", align_corners=True)
    torch.testing.assert_close(boundary_loss(small, target), boundary_loss(up, target))


def test_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        boundary_loss(torch.zeros(2, 2, 4, 4), torch.zeros(2, 1, 4, 4))


def test_loss_decreases_when_training_a_boundary_head_on_a_toy_problem():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(4, 32, 32, dtype=torch.long)
    for i in range(4):
        labels[i, 5 + i:20 + i, 4 + 2 * i:22 + 2 * i] = 1 + i % 3
    labels[1, :, :3] = IGNORE
    target, valid = boundary_target(labels), labels != IGNORE
    feats = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    feats = torch.cat([feats, F.avg_pool2d(feats, 5, 1, 2)], 1)  # context: the band is 4 px wide
    feats = feats + 0.05 * torch.randn(feats.shape, generator=g)
    head = BoundaryHead(8, 1, mid_channels=16)
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        loss = boundary_loss(head(feats), target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0], losses


def test_bas_labels_keep_labels_where_the_boundary_is_confident():
    labels = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    logits = torch.tensor([[[[3.0, -3.0, 1.0], [1.5, 0.0, 10.0]]]])  # sigmoid: .95 .05 .73 / .82 .5 1
    out = bas_labels(labels, logits)
    assert out.tolist() == [[[1, IGNORE, IGNORE], [4, IGNORE, 6]]]
    assert bas_labels(labels, logits, ignore_index=-1, threshold=0.5).tolist() == [[[1, -1, 3], [4, -1, 6]]]


def test_bas_labels_upsample_logits_and_carry_no_gradient():
    labels = torch.randint(0, 19, (2, 16, 16))
    small = torch.randn(2, 1, 4, 4, requires_grad=True)
    up = F.interpolate(small.detach(), size=(16, 16), mode="bilinear", align_corners=True)
    expected = torch.where(torch.sigmoid(up[:, 0]) > 0.8, labels, torch.full_like(labels, IGNORE))
    out = bas_labels(labels, small)
    assert torch.equal(out, expected) and not out.requires_grad
    with pytest.raises(ValueError, match="boundary_logits"):
        bas_labels(labels, torch.zeros(2, 3, 4, 4))


def test_boundary_head_is_pidnet_segmenthead_in_half_1():
    head = registry.get("boundary_head", "head").create(64, 19)
    # PIDNet-S seghead_d = segmenthead(64, 32, 1): 2*64 + 64*32*9 + 2*32 + 32 + 1 = 18,657
    assert sum(p.numel() for p in head.parameters()) == 18_657
    assert head.out_channels == 1 and head.mid_channels == 32 and head.conv_out.bias is not None
    assert hasattr(head.pre, "bn")
    assert head(torch.randn(2, 64, 9, 10)).shape == (2, 1, 9, 10)
    assert registry.get("boundary_head").resolve({}) == {"mid_channels": 0}
    assert BoundaryHead(128, 1).mid_channels == 64  # PIDNet-M/L: segmenthead(128, 64, 1)
