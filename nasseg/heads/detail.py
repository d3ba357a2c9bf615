"""STDC-Seg detail guidance: the detail head, the Laplacian detail ground truth and the detail loss.

Fan et al., "Rethinking BiSeNet for Real-time Semantic Segmentation" (STDC-Seg), CVPR 2021 (detail
guidance: the Detail Aggregation module and the detail loss).  Official code: ``models/model_stages.py``
(``conv_out_sp8 = BiSeNetOutput(256, 64, 1)`` on the stage-3 feature) and ``loss/detail_loss.py``
(``DetailAggregateLoss``).  The released scripts train with the 1/8 detail head only
(``--use_boundary_8 True``); the head, target and loss are used in training only.

Typical use in a training step::

    aggregate = DetailAggregate(ignore_index=255)
    target = aggregate(labels)                           # [N, 1, H, W] in {0, 1}
    valid = labels != 255                                # pixels that count in the loss
    loss = loss + detail_loss(detail_logits, target, valid)   # BCE + Dice, weight 1 as officially
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.heads.seg import SegHead
from nasseg.registry import Arg, register

DETAIL_STRIDES: tuple[int, ...] = (1, 2, 4)
"""Strides of the Laplacian maps that are fused (official: a stride-8 map is computed, never used)."""
FUSE_WEIGHTS: tuple[float, ...] = (0.6, 0.3, 0.1)
"""Initial 1x1 fusion weights of the stride 1, 2 and 4 maps (``fuse_kernel`` in the official code)."""
THRESHOLD = 0.1
"""Binarisation threshold, applied to each Laplacian map and again to the fused map (strict ``>``)."""


@register("detail_head", kind="head", args=[
    Arg("mid_channels", "int", 64, "width of the 3x3 conv (0: in_channels)", low=0),
], examples=[{"in_channels": 32, "num_classes": 1}])
class DetailHead(SegHead):
    """STDC-Seg detail head ``BiSeNetOutput(in, 64, 1)``: ConvBNReLU 3x3 in -> 64 -> Conv 1x1 -> 1 (no bias).

    Always one output channel: a detail map is binary, so ``num_classes`` is accepted only to keep the
    uniform head constructor ``(in_channels, num_classes)`` and is ignored (``out_channels == 1``).
    STDC-Seg puts it on the 1/8 backbone feature (256 channels, 147,648 parameters); training only.
    Its logits go to ``detail_loss`` against ``DetailAggregate``'s target.
    """

    def __init__(self, in_channels: int, num_classes: int = 1, *, mid_channels: int = 64):
        super().__init__(in_channels, 1, mid_channels=mid_channels, dropout=0.0, bias=False, preact=False)


class DetailAggregate(nn.Module):
    """Detail ground truth from a label map: multi-stride Laplacian, fused and binarised (STDC-Seg).

    ``forward(labels)`` takes train-id labels ``[N, H, W]`` (integer) and returns a float ``[N, 1, H, W]``
    target in {0, 1}.  Computation, as ``DetailAggregateLoss.forward``:

    1. Laplacian ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]`` on the label map (officially a float conv; here
       integer arithmetic, the same values), padding 1, as a conv of stride 1, 2 and 4 (so the stride-s
       map is the stride-1 response sampled at every s-th pixel, which is how it is computed here);
       ``clamp(min=0)``, so detail lies on the side of a boundary with the larger class id.
    2. Each map binarised ``> 0.1``; the stride-2 and 4 maps nearest-upsampled to H, W.
    3. A 1x1 conv over the 3 maps with weights ``fuse_kernel`` = [0.6, 0.3, 0.1], binarised ``> 0.1``.
       A stride-4-only pixel scores exactly 0.1, which is not ``> 0.1``: with these weights the target
       is the union of the stride-1 and stride-2 maps and the stride-4 map never shows (as officially).

    ``fuse_kernel`` is an ``nn.Parameter`` here as officially, but frozen (``requires_grad=False``) and
    the target is computed under ``no_grad``.  The official code registers it with the optimizer (a
    param group that falls back to the default weight decay 5e-4), yet every fused value is overwritten
    by the in-place hard threshold, so its gradient is identically zero and only SGD's weight decay
    moves it: over the released 60k-iteration schedule (lr 0.01, momentum 0.9, poly 0.9) it shrinks to
    0.21x its initial value, and from about iteration 28.8k on 0.3x < 0.1, so the stride-2-only pixels
    drop out of the official target for the second half of training.  That drift is a side effect,
    not a learnt fusion; here the weights stay at [0.6, 0.3, 0.1].

    Ignore pixels and the image border (``ignore_index`` not ``None``, the default): the official code
    runs the Laplacian on the raw label map, so an ignore region (255) is a class with the largest id:
    its border becomes detail pixels on the ignore side, and class pixels next to ignore never do; the
    zero padding likewise makes the image border detail for every class id > 0, so even a one-class
    label map gets a detail frame.  Here each pixel's Laplacian sums only over neighbours that are inside
    the image and not ignore (as if such a neighbour had the centre's own label), ignore centres score
    0, and the returned target is 0 at ignore pixels: no detail at a class/ignore border or at the image
    border, and one class gives an all-zero target.  Ignore pixels must also be left out of the loss:
    pass ``valid = labels != ignore_index`` to ``detail_loss``.  ``ignore_index=None`` reproduces the
    official computation bit for bit (ignore value treated as a class id, zero padding).
    """

    def __init__(self, ignore_index: int | None = 255):
        super().__init__()
        self.ignore_index = ignore_index
        self.fuse_kernel = nn.Parameter(torch.tensor(FUSE_WEIGHTS).reshape(1, len(DETAIL_STRIDES), 1, 1),
                                        requires_grad=False)

    @torch.no_grad()
    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, "DetailAggregate")
        size = labels.shape[-2:]
        x = labels.unsqueeze(1).to(torch.int64)
        if self.ignore_index is None:
            valid = None
            response = 8 * x - _neighbour_sum(x)  # the Laplacian kernel, zero padding
        else:  # sum over valid neighbours q of (x_p - x_q); outside the image counts as invalid
            valid = (x != self.ignore_index).to(torch.int64)
            response = (x * _neighbour_sum(valid) - _neighbour_sum(x * valid)) * valid
        maps = []
        for s in DETAIL_STRIDES:
            # a stride-s conv with padding 1 is the stride-1 response at every s-th pixel; the
            # response is an integer, so clamp(min=0) > 0.1 is > 0
            detail = (response[..., ::s, ::s] > 0).float()
            maps.append(F.interpolate(detail, size=size, mode="nearest") if s > 1 else detail)
        # the 1x1 fusion conv, written as a weighted sum (the same arithmetic, much cheaper on CPU)
        fused = (torch.cat(maps, 1) * self.fuse_kernel.to(x.device, torch.float32)).sum(1, keepdim=True)
        target = (fused > THRESHOLD).float()
        return target if valid is None else target * valid


def detail_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """STDC-Seg detail loss: BCE-with-logits + Dice, both weight 1 (``DetailAggregateLoss``).

    ``logits`` ``[N, 1, h, w]`` are resized bilinearly (``align_corners=True``) to the target's size when
    they differ, as officially.  ``target`` ``[N, 1, H, W]`` in {0, 1} (``DetailAggregate``).  Dice is
    ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` per image on ``p = sigmoid(logits)``, averaged over
    the batch.  ``valid`` (bool, ``[N, H, W]`` or ``[N, 1, H, W]``; e.g. ``labels != 255``) leaves pixels
    out of both terms: the BCE is averaged over valid pixels only and ``p``, ``t`` are zeroed outside.
    With ``valid=None`` every pixel counts, exactly as the official code (which masks nothing).
    Returns a scalar: BCE + Dice.
    """
    logits, target, weight = _binary_loss_inputs(logits, target, valid, "detail_loss")
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    prob = torch.sigmoid(logits)
    if weight is None:
        bce = bce.mean()
    else:
        bce = (bce * weight).sum() / weight.sum().clamp(min=1.0)
        prob, target = prob * weight, target * weight
    return bce + _dice_loss(prob, target)


def _dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    n = prob.shape[0]
    p, t = prob.reshape(n, -1), target.reshape(n, -1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 8 neighbours of each pixel of ``x`` [N, 1, H, W], zero outside (separable 3x3 box)."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] - x


def _check_labels(labels: torch.Tensor, who: str) -> None:
    if labels.dim() != 3 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{who}: labels must be an integer tensor [N, H, W]; got {labels.dtype} "
                         f"of shape {tuple(labels.shape)}")


def _binary_loss_inputs(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None, who: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Check shapes, resize logits to the target (bilinear, align_corners=True), valid -> float weight."""
    if logits.dim() != 4 or logits.shape[1] != 1 or target.dim() != 4 or target.shape[1] != 1 \
            or logits.shape[0] != target.shape[0]:
        raise ValueError(f"{who}: logits [N, 1, h, w] and target [N, 1, H, W] expected; got logits "
                         f"{tuple(logits.shape)} and target {tuple(target.shape)}")
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=True)
    target = target.to(logits.dtype)
    if valid is None:
        return logits, target, None
    if valid.dim() == 3:
        valid = valid.unsqueeze(1)
    if valid.shape != target.shape:
        raise ValueError(f"{who}: valid must be [N, H, W] or [N, 1, H, W] like the target "
                         f"{tuple(target.shape)}; got {tuple(valid.shape)}")
    return logits, target, valid.to(logits.dtype)
