"""PIDNet boundary supervision: the D-branch boundary head, its target, its loss and the BAS mask.

Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID Controllers", CVPR 2023
(boundary head on the D branch, boundary-awareness losses).  Official code (``XuJiacong/PIDNet``): ``models/pidnet.py``
(``seghead_d = segmenthead(planes * 2, planes, 1)``), ``models/model_utils.py`` (``segmenthead``),
``datasets/base_dataset.py`` (``gen_sample``: the edge target), ``utils/criterion.py``
(``weighted_bce``, ``BondaryLoss``), ``utils/utils.py`` (``FullModel``: how the terms are combined).

Typical use in a training step (weights as in ``FullModel`` and the configs)::

    edge = boundary_target(labels)                       # [N, 1, H, W] in {0, 1}
    valid = labels != 255
    loss = 0.4 * ce(aux_p, labels) + ohem_ce(main, labels)           # 'sem' terms
    loss = loss + 20.0 * boundary_loss(boundary_logits, edge, valid)  # 'bd' term (coeff_bce = 20)
    loss = loss + ohem_ce(main, bas_labels(labels, boundary_logits))  # 'sb' (BAS) term, weight 1
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasseg.heads.detail import _binary_loss_inputs, _check_labels
from nasseg.heads.seg import SegHead
from nasseg.registry import Arg, register

_TG22 = 13573
"""OpenCV Canny's tan(22.5 deg) in Q15 fixed point: int(0.41421356 * 2**15 + 0.5)."""
EDGE_KERNEL = 4
"""Side of the square dilation kernel (``edge_size=4`` in ``gen_sample``)."""
BAS_THRESHOLD = 0.8
"""A pixel counts in the boundary-awareness CE when sigmoid(boundary logit) > this (``FullModel``)."""


@register("boundary_head", kind="head", args=[
    Arg("mid_channels", "int", 0, "width of the 3x3 conv (0: in_channels // 2, PIDNet's planes for "
        "a D branch of 2 * planes)", low=0),
], examples=[{"in_channels": 32, "num_classes": 1}, {"in_channels": 32, "num_classes": 1, "mid_channels": 8}])
class BoundaryHead(SegHead):
    """PIDNet boundary head ``segmenthead(in, mid, 1)``: BN-ReLU -> Conv 3x3 -> BN-ReLU -> Conv 1x1 (bias) -> 1.

    On the D (derivative) branch at 1/8, training only: PIDNet-S ``segmenthead(64, 32, 1)`` (18,657
    parameters), PIDNet-M/L ``segmenthead(128, 64, 1)``; ``mid_channels=0`` gives that ``in // 2``.
    Always one output channel: ``num_classes`` is accepted to keep the uniform head constructor and is
    ignored (``out_channels == 1``).  Its logits go to ``boundary_loss`` against ``boundary_target`` and
    to ``bas_labels`` for the boundary-awareness CE term.  Submodules as ``seg_head`` with
    ``preact=True, bias=True``.
    """

    def __init__(self, in_channels: int, num_classes: int = 1, *, mid_channels: int = 0):
        mid = mid_channels or max(1, in_channels // 2)
        super().__init__(in_channels, 1, mid_channels=mid, dropout=0.0, bias=True, preact=True)


@torch.no_grad()
def boundary_target(labels: torch.Tensor, ignore_index: int | None = 255, *, edge_trim: int = 0) -> torch.Tensor:
    """PIDNet's edge target: ``cv2.Canny(label, 0.1, 0.2)`` dilated by a 4x4 kernel, computed with torch.

    ``labels`` ``[N, H, W]`` integer; returns a float ``[N, 1, H, W]`` in {0, 1}.  No OpenCV: the Canny
    steps are re-expressed exactly for these thresholds.  OpenCV floors both thresholds of an L1-gradient
    Canny to 0, so hysteresis keeps every pixel that survives non-maximum suppression with a non-zero
    gradient: Sobel 3x3 (replicated border), magnitude ``|gx| + |gy|``, direction binned at 22.5/67.5
    degrees in OpenCV's fixed point, NMS against the two neighbours along the gradient with OpenCV's
    ``>``/``>=`` rule (zero outside the image).  On a straight step that keeps the one pixel on the
    lower-coordinate side; ``cv2.dilate`` with a 4x4 kernel (anchor (2, 2): offsets -2..+1) then widens
    it to a band of 2 pixels on each side of the boundary.  With ``ignore_index=None`` the result is the
    official edge map bit for bit (checked against OpenCV 5.0 on 2,016 random label maps from 13x13
    to 1024x2048, ignore values included, with and without the trim); pass ``edge_trim=6`` to also
    zero the 6-pixel frame before the dilation as ``gen_sample(edge_pad=True)`` does.  The official
    code runs this on the full-size label before random scaling and cropping (so its band scales with
    the augmentation); callers that run it on crops should keep ``edge_trim=0``, or crop borders would
    lose real edges.

    Ignore pixels (``ignore_index`` not ``None``, the default): officially the ignore value is just a
    large class id, so every class/ignore border is a positive edge.  Here an edge pixel is kept only if
    its 3x3 Sobel window holds two different non-ignore labels: class/ignore borders give no edge, while
    class/class borders next to ignore keep theirs (their thinning can differ from OpenCV's by a pixel
    where the ignore region is within one pixel).  Leave ignore pixels out of the loss as well:
    ``boundary_loss(logits, target, valid=labels != ignore_index)``.
    """
    _check_labels(labels, "boundary_target")
    if edge_trim < 0:
        raise ValueError(f"boundary_target: edge_trim must be >= 0; got {edge_trim}")
    edge = _canny_edges(labels)
    if ignore_index is not None:
        edge &= _window_has_two_valid_labels(labels, ignore_index)
    if edge_trim:
        frame = torch.zeros_like(edge)
        frame[:, edge_trim:-edge_trim, edge_trim:-edge_trim] = True
        edge &= frame
    # cv2.dilate(edge, ones(4, 4)), anchor (2, 2): max of src over rows y-2..y+1 and columns x-2..x+1
    half = EDGE_KERNEL // 2
    return _window_max(edge.float(), half, EDGE_KERNEL - 1 - half, 0.0).unsqueeze(1)


def boundary_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """PIDNet's class-balanced BCE (``weighted_bce``); the caller multiplies by 20 (``BondaryLoss``).

    ``logits`` ``[N, 1, h, w]`` are resized bilinearly (``align_corners=True``, as ``FullModel`` with the
    configs' default) to the target's size when they differ.  Over the whole batch: edge pixels are
    weighted by ``#non-edge / #pixels``, non-edge pixels by ``#edge / #pixels``, and the weighted BCE is
    averaged over the pixels.  A batch without any edge pixel therefore has zero loss (as officially).
    ``valid`` (bool, ``[N, H, W]`` or ``[N, 1, H, W]``) leaves pixels out of the counts and the mean; the
    official code counts every pixel (its only exclusion, a target neither 0 nor 1, cannot occur).
    """
    logits, target, weight = _binary_loss_inputs(logits, target, valid, "boundary_loss")
    if weight is None:
        weight = torch.ones_like(target)
    positive = (target == 1).to(logits.dtype) * weight
    negative = (target == 0).to(logits.dtype) * weight
    pos_num, neg_num = positive.sum(), negative.sum()
    total = (pos_num + neg_num).clamp(min=1.0)
    class_weight = (positive * neg_num + negative * pos_num) / total
    bce = F.binary_cross_entropy_with_logits(logits, target, class_weight, reduction="sum")
    return bce / weight.sum().clamp(min=1.0)


def bas_labels(labels: torch.Tensor, boundary_logits: torch.Tensor, *, ignore_index: int = 255,
               threshold: float = BAS_THRESHOLD) -> torch.Tensor:
    """Labels for PIDNet's boundary-awareness CE ("BAS loss"): ``ignore_index`` where no boundary is seen.

    ``FullModel``: ``bd_label = where(sigmoid(boundary[:, 0]) > 0.8, labels, ignore)``, then the main
    head's OHEM-CE (weight 1) on ``bd_label``, so the semantic loss is repeated on the pixels the
    boundary head calls boundary.  ``boundary_logits`` ``[N, 1, h, w]`` are resized bilinearly
    (``align_corners=True``) to the labels' size first.  No gradient flows through the mask.
    """
    _check_labels(labels, "bas_labels")
    if boundary_logits.dim() != 4 or boundary_logits.shape[1] != 1 or boundary_logits.shape[0] != labels.shape[0]:
        raise ValueError(f"bas_labels: boundary_logits [N, 1, h, w] expected for labels {tuple(labels.shape)}; "
                         f"got {tuple(boundary_logits.shape)}")
    with torch.no_grad():
        if boundary_logits.shape[-2:] != labels.shape[-2:]:
            boundary_logits = F.interpolate(boundary_logits, size=labels.shape[-2:], mode="bilinear",
                                            align_corners=True)
        seen = torch.sigmoid(boundary_logits[:, 0]) > threshold
    return torch.where(seen, labels, torch.full_like(labels, ignore_index))


def _canny_edges(labels: torch.Tensor) -> torch.Tensor:
    """``cv2.Canny(labels, 0.1, 0.2) > 0`` for integer maps: Sobel, L1 magnitude, OpenCV's NMS."""
    h, w = labels.shape[-2:]
    rows = torch.arange(-1, h + 1, device=labels.device).clamp(0, h - 1)
    cols = torch.arange(-1, w + 1, device=labels.device).clamp(0, w - 1)
    padded = labels.to(torch.int64)[:, rows][:, :, cols]  # replicated border, as OpenCV's Sobel
    dx = padded[:, :, 2:] - padded[:, :, :-2]  # Sobel 3x3 = [1, 2, 1] smoothing (x) central difference
    dy = padded[:, 2:, :] - padded[:, :-2, :]
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]
    mag = gx.abs() + gy.abs()
    edge = torch.zeros_like(mag, dtype=torch.bool)
    n, y, x = (mag > 0).nonzero(as_tuple=True)  # NMS only where the gradient is non-zero (few pixels)
    mag_pad = F.pad(mag, (1, 1, 1, 1))  # OpenCV compares with 0 outside the image
    m, gx, gy = mag[n, y, x], gx[n, y, x], gy[n, y, x]

    def at(oy: int | torch.Tensor, ox: int | torch.Tensor) -> torch.Tensor:
        return mag_pad[n, y + 1 + oy, x + 1 + ox]

    ax, ay = gx.abs(), gy.abs() << 15
    tg22x = ax * _TG22
    horizontal = ay < tg22x  # gradient within 22.5 deg of the x axis
    vertical = ~horizontal & (ay > tg22x + (ax << 16))  # beyond 67.5 deg
    s = torch.where((gx ^ gy) < 0, -1, 1)  # diagonal: compare along (-1, -s) and (+1, +s)
    keep = torch.where(horizontal, (m > at(0, -1)) & (m >= at(0, 1)),
                       torch.where(vertical, (m > at(-1, 0)) & (m >= at(1, 0)), (m > at(-1, -s)) & (m > at(1, s))))
    edge[n, y, x] = keep
    return edge


def _window_has_two_valid_labels(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """True where the 3x3 window around a pixel holds two different non-ignore labels."""
    x = labels.to(torch.int64)
    valid = x != ignore_index
    low = -(2**62)
    hi = _window_max(torch.where(valid, x, low), 1, 1, low)
    lo = -_window_max(torch.where(valid, -x, low), 1, 1, low)
    return hi > lo  # a window without valid pixels has hi = low < lo = -low


def _window_max(x: torch.Tensor, before: int, after: int, fill: float) -> torch.Tensor:
    """max of ``x`` [N, H, W] over rows y-before..y+after and columns likewise; ``fill`` outside."""
    h, w = x.shape[-2:]
    p = F.pad(x, (before, after, before, after), value=fill)
    size = before + after + 1
    rows = p[:, :h]
    for k in range(1, size):
        rows = torch.maximum(rows, p[:, k:k + h])
    out = rows[:, :, :w]
    for k in range(1, size):
        out = torch.maximum(out, rows[:, :, k:k + w])
    return out
