"""STDC-Seg detail head, Laplacian detail target (DetailAggregate) and detail loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.heads.detail import DetailAggregate, DetailHead, detail_loss

IGNORE = 255


def _naive_target(lab: list[list[int]], ignore: int | None, strides=(1, 2, 4), weights=(0.6, 0.3, 0.1)):
    """The detail target written from its description, pixel by pixel (slow, small maps only).

    ``ignore=None``: official semantics (zero outside the image, every value a class id).  Otherwise a
    neighbour outside the image or equal to ``ignore`` is skipped, an ignore centre scores 0, and the
    target is 0 at ignore pixels.  Stride-s maps sample the stride-1 response at every s-th pixel and
    are upsampled with PyTorch's 'nearest' rule src = floor(dst * in / out).
    """
    h, w = len(lab), len(lab[0])

    def response(i, j):
        c = lab[i][j]
        if ignore is not None and c == ignore:
            return 0
        total = 0
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di == dj == 0:
                    continue
                y, x = i + di, j + dj
                inside = 0 <= y < h and 0 <= x < w
                if ignore is None:
                    total += c - (lab[y][x] if inside else 0)
                elif inside and lab[y][x] != ignore:
                    total += c - lab[y][x]
        return total

    out = [[0.0] * w for _ in range(h)]
    for s, wt in zip(strides, weights):
        hs, ws = -(-h // s), -(-w // s)
        small = [[max(response(i * s, j * s), 0) > 0.1 for j in range(ws)] for i in range(hs)]
        for y in range(h):
            for x in range(w):
                out[y][x] += wt * small[y * hs // h][x * ws // w]
    t = torch.tensor([[float(v > 0.1) for v in row] for row in out])
    if ignore is not None:
        t = t * (torch.tensor(lab) != ignore)
    return t


def _square(h=40, w=40, top=11, left=9, height=18, width=22, cls=1, bg=0):
    lab = torch.full((h, w), bg, dtype=torch.long)
    lab[top:top + height, left:left + width] = cls
    return lab


def _distance_to_other_class(lab: torch.Tensor) -> torch.Tensor:
    """Chebyshev distance from each pixel to the nearest pixel of a different label (brute force)."""
    h, w = lab.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dist = torch.full((h, w), 10**6)
    for y in range(h):
        for x in range(w):
            other = lab != lab[y, x]
            if other.any():
                d = torch.maximum((yy - y).abs(), (xx - x).abs())[other].min()
                dist[y, x] = d
    return dist


@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_target_matches_pixelwise_definition_on_random_maps(ignore):
    g = torch.Generator().manual_seed(5)
    for h, w in [(13, 17), (16, 20), (9, 8)]:
        coarse = torch.randint(0, 4, (2, (h + 2) // 3, (w + 2) // 3), generator=g)
        lab = coarse.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :h, :w].clone()
        lab[torch.rand(lab.shape, generator=g) < 0.15] = IGNORE
        lab[torch.rand(lab.shape, generator=g) < 0.10] = 7
        out = DetailAggregate(ignore_index=ignore)(lab)
        assert out.shape == (2, 1, h, w) and out.dtype == torch.float32
        for n in range(2):
            torch.testing.assert_close(out[n, 0], _naive_target(lab[n].tolist(), ignore))


def test_square_target_is_its_border_band():
    lab = _square()
    target = DetailAggregate()(lab[None])[0, 0].bool()
    dist = _distance_to_other_class(lab)
    inside = lab == 1
    assert target.any()
    assert (dist[target] <= 2).all(), "detail must lie within 2 px of the square's border"
    assert not (target & inside & (dist >= 3)).any(), "no interior pixel"
    assert not (target & ~inside & (dist >= 3)).any(), "no far-background pixel"
    # the stride-1 Laplacian band (inner ring: square pixels touching the background) is all in
    assert target[inside & (dist == 1)].all()
    # clamp(min=0): the background side of the boundary gets detail only from the coarse maps' blocks
    ring_out = ~inside & (dist == 1)
    assert target[ring_out].float().mean() < 0.5


def test_stride4_only_pixels_never_enter_the_target():
    lab = _square(top=12, left=12, height=15, width=15)  # top/left rows on the stride-4 grid
    full = DetailAggregate()(lab[None])[0, 0]
    only4 = _naive_target(lab.tolist(), IGNORE, strides=(4,), weights=(1.0,)).bool()
    s12 = _naive_target(lab.tolist(), IGNORE, strides=(1, 2), weights=(1.0, 1.0)).bool()
    assert (only4 & ~s12).any(), "test map must have stride-4-only pixels"
    assert not full.bool()[only4 & ~s12].any()
    torch.testing.assert_close(full, s12.float())


@pytest.mark.parametrize("cls", [0, 7, 254])
def test_one_class_gives_all_zero_target(cls):
    lab = torch.full((2, 19, 23), cls, dtype=torch.long)
    assert DetailAggregate()(lab).sum() == 0


def test_official_mode_marks_image_border_for_nonzero_class():
    # the official zero padding makes the frame of any class id > 0 "detail"; class 0 gives nothing
    agg = DetailAggregate(ignore_index=None)
    assert agg(torch.full((1, 12, 12), 7)).sum() > 0
    assert agg(torch.zeros((1, 12, 12), dtype=torch.long)).sum() == 0


def test_ignore_border_gives_no_detail_by_default_but_does_officially():
    lab = torch.full((1, 24, 24), 3, dtype=torch.long)
    lab[:, 5:15, 6:20] = IGNORE
    assert DetailAggregate()(lab).sum() == 0
    lab[lab == 3] = 0  # class 0, so that the official zero padding adds no frame
    official = DetailAggregate(ignore_index=None)(lab)[0, 0]
    ignore = (lab == IGNORE).float()[None]
    near_ignore = F.max_pool2d(ignore, 3, 1, 1)[0, 0].bool()
    ignore_ring = (ignore - (-F.max_pool2d(-ignore, 3, 1, 1)))[0, 0].bool()  # ignore pixels touching class 0
    assert official.bool()[ignore_ring].all(), "officially the ignore region's rim is detail"
    assert not official.bool()[~near_ignore].any()


def test_ignore_pixels_are_zero_and_class_borders_survive_next_to_ignore():
    lab = _square(cls=2)
    lab[:, :12] = IGNORE  # ignore cuts through the square's left part
    target = DetailAggregate()(lab[None])[0, 0].bool()
    assert not target[lab == IGNORE].any()
    # the square's right edge (class 2 next to background 0) is still detail
    assert target[11:29, 30].all()
    # square pixels whose only other neighbour is ignore: no detail (left cut at column 12)
    assert not target[14:26, 12].any()


def test_fuse_kernel_is_a_frozen_parameter_with_official_init():
    agg = DetailAggregate()
    params = dict(agg.named_parameters())
    assert list(params) == ["fuse_kernel"]
    k = params["fuse_kernel"]
    assert not k.requires_grad and k.shape == (1, 3, 1, 1)
    torch.testing.assert_close(k.flatten(), torch.tensor([0.6, 0.3, 0.1]))
    assert not agg(_square()[None]).requires_grad


def test_labels_must_be_integer_n_h_w():
    agg = DetailAggregate()
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        agg(torch.zeros(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        agg(torch.zeros(1, 8, 8))


def test_loss_is_official_bce_plus_dice_without_mask():
    torch.manual_seed(1)
    logits = torch.randn(3, 1, 10, 12)
    target = (torch.rand(3, 1, 10, 12) > 0.7).float()
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    expected = F.binary_cross_entropy_with_logits(logits, target) + dice.mean()
    torch.testing.assert_close(detail_loss(logits, target), expected)
    torch.testing.assert_close(detail_loss(logits, target, torch.ones(3, 10, 12, dtype=torch.bool)), expected)


def test_loss_upsamples_logits_bilinearly_align_corners():
    torch.manual_seed(2)
    small = torch.randn(2, 1, 5, 6)
    target = (torch.rand(2, 1, 40, 48) > 0.8).float()
    up = F.interpolate(small, size=(40, 48), mode="bilinear", align_corners=True)
    torch.testing.assert_close(detail_loss(small, target), detail_loss(up, target))


def test_loss_ignores_invalid_pixels():
    torch.manual_seed(4)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.6).float()
    valid = torch.rand(2, 8, 8) > 0.3
    changed = logits.clone()
    changed[~valid.unsqueeze(1)] = 50.0
    changed_target = target.clone()
    changed_target[~valid.unsqueeze(1)] = 1.0 - changed_target[~valid.unsqueeze(1)]
    torch.testing.assert_close(detail_loss(logits, target, valid), detail_loss(changed, changed_target, valid))
    assert not torch.allclose(detail_loss(logits, target), detail_loss(changed, target))


def test_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        detail_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="valid"):
        detail_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.ones(2, 5, 4, dtype=torch.bool))


def test_loss_decreases_when_training_a_detail_head_on_a_toy_problem():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    labels = torch.stack([_square(32, 32, 6 + i, 5 + 2 * i, 14, 16, cls=1 + i % 2) for i in range(4)])
    labels[0, :, :4] = IGNORE
    agg = DetailAggregate()
    target, valid = agg(labels), labels != IGNORE
    feats = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    feats = feats + 0.05 * torch.randn(feats.shape, generator=g)
    head = DetailHead(4, 1, mid_channels=16)
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        loss = detail_loss(head(feats), target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    torch.testing.assert_close(agg.fuse_kernel.flatten(), torch.tensor([0.6, 0.3, 0.1]))


def test_detail_head_is_bisenet_output_in_64_1():
    head = registry.get("detail_head", "head").create(256, 19)
    # STDC-Seg conv_out_sp8 = BiSeNetOutput(256, 64, 1): 256*64*9 + 2*64 + 64 = 147,648
    assert sum(p.numel() for p in head.parameters()) == 147_648
    assert head.out_channels == 1 and head.conv_out.bias is None
    assert head(torch.randn(2, 256, 9, 10)).shape == (2, 1, 9, 10)
    assert registry.get("detail_head").resolve({}) == {"mid_channels": 64}
