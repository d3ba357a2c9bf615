"""Proxy-training transforms: torch ops only, on whatever device the tensors are on.

:class:`ProxyTransform` turns a dataset item ``(uint8 image [3, h, w], int64 label [h, w])`` -- or a
batch of equally sized items ``[B, 3, h, w]`` / ``[B, h, w]`` -- into a normalised float image
``[3, H, W]`` and an int64 label ``[H, W]`` of the proxy size.

Train mode (mmseg-style resize -> random crop -> flip):

1. a base factor ``f0 = max(H / h, W / w)`` makes the image just cover the output size (no distortion);
   a scale ``s`` drawn uniformly from ``scale`` gives the resize factor ``f = f0 * s``;
2. a random window of the resized image is cut to at most ``(H, W)``; it is computed in source pixels
   and only that window is resized (bilinear with antialias; labels nearest), which is the same as
   resizing the whole image first, up to sub-pixel rounding of the window, and much cheaper;
3. when the resized image is smaller than ``(H, W)`` (``s < 1`` or another aspect ratio) it is placed at
   a random offset; the rest is padded with 0 in the normalised image (the mean colour) and
   ``ignore_index`` in the label;
4. a horizontal flip with probability 0.5 (``flip=True``), applied to image and label together.

Each sample draws exactly six numbers from the generator (scale, window y/x, pad y/x, flip) whatever its
size and whether ``flip`` is on, so a seeded ``torch.Generator`` (CPU) gives the same crops on every
device, and ``flip=False`` gives the same crops as ``flip=True`` without the mirror.

Eval mode: the image is resized to ``(H, W)`` (bilinear, antialias) and the label with nearest-exact;
with equal input sizes a batch is resized in one call.  Nothing is random.

``normalize=False`` returns uint8 images instead (rounded; padding is the ImageNet mean colour, so
normalising later on the device gives ~0 there): a quarter of the bytes to send from DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nasseg.errors import ConfigError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_DRAWS_PER_SAMPLE = 6


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (or float 0..255) images ``[..., 3, H, W]`` -> float32 ``(x / 255 - mean) / std``."""
    if images.dim() < 3 or images.shape[-3] != len(mean):
        raise ValueError(
            f"normalize: expected images [..., {len(mean)}, H, W], got shape {tuple(images.shape)}"
        )
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return (images.to(torch.float32) / 255.0 - m) / s


def _resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float [B, C, h, w] -> [B, C, H, W], bilinear with antialias; a no-op at the same size."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _resize_label(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """int [B, h, w] -> int64 [B, H, W], nearest-exact; a no-op at the same size."""
    if tuple(y.shape[-2:]) == size:
        return y.to(torch.int64)
    out = F.interpolate(y[:, None].to(torch.float32), size=size, mode="nearest-exact")
    return out[:, 0].to(torch.int64)


def _pair(value: object, what: str) -> tuple[float, float]:
    try:
        a, b = value  # type: ignore[misc]
        return float(a), float(b)
    except (TypeError, ValueError):
        raise ConfigError(f"ProxyTransform: {what}={value!r} is not allowed; expected a pair") from None


class ProxyTransform:
    """Scale-jitter, random crop (labels padded with ``ignore_index``), flip and normalise; or eval resize.

    ``size`` is the output (H, W); ``scale`` the (min, max) factor relative to the size that just covers
    the output.  Images come out normalised float32, or uint8 with ``normalize=False``.
    ``__call__(image, label, generator=None)`` takes one item or a batch (see the module docstring);
    ``generator`` is a CPU ``torch.Generator`` (``None``: torch's global generator).  In eval mode
    ``label`` may be ``None``.
    """

    def __init__(self, size: Sequence[int] = (128, 256), scale: Sequence[float] = (0.5, 2.0),
                 flip: bool = True, train: bool = True, *, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, ignore_index: int = 255, normalize: bool = True):
        h, w = _pair(size, "size")
        if h != int(h) or w != int(w) or h < 1 or w < 1:
            raise ConfigError(f"ProxyTransform: size={size!r} is not allowed; expected (H, W), integers >= 1")
        lo, hi = _pair(scale, "scale")
        if not 0 < lo <= hi:
            raise ConfigError(f"ProxyTransform: scale={scale!r} is not allowed; expected (min, max) with "
                              "0 < min <= max")
        self.size = (int(h), int(w))
        self.scale = (lo, hi)
        self.flip, self.train = bool(flip), bool(train)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.ignore_index = int(ignore_index)
        self.normalize = bool(normalize)

    def __repr__(self) -> str:
        return (f"ProxyTransform(size={self.size}, scale={self.scale}, flip={self.flip}, train={self.train}, "
                f"normalize={self.normalize})")

    def __call__(self, image: torch.Tensor, label: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        single = image.dim() == 3
        images = image[None] if single else image
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ProxyTransform: expected an image [3, h, w] or a batch [B, 3, h, w], "
                             f"got shape {tuple(image.shape)}")
        labels = None
        if label is not None:
            labels = label[None] if single else label
            if labels.shape != (images.shape[0], *images.shape[2:]):
                raise ValueError(
                    f"ProxyTransform: label shape {tuple(label.shape)} does not match image shape "
                    f"{tuple(image.shape)}; expected {'[h, w]' if single else '[B, h, w]'}"
                )
        elif self.train:
            raise ValueError("ProxyTransform: train mode needs a label")
        if self.train:
            assert labels is not None
            pairs = [self._train_one(images[i], labels[i], generator) for i in range(images.shape[0])]
            out_img = torch.stack([p[0] for p in pairs])
            out_lab: torch.Tensor | None = torch.stack([p[1] for p in pairs])
        else:
            out_img = self._finish(_resize_image(images.to(torch.float32), self.size))
            out_lab = None if labels is None else _resize_label(labels, self.size)
        if single:
            return out_img[0], (None if out_lab is None else out_lab[0])
        return out_img, out_lab

    def _finish(self, images: torch.Tensor) -> torch.Tensor:
        """float 0..255 [B, 3, H, W] -> normalised float32, or rounded uint8 with ``normalize=False``."""
        if self.normalize:
            return normalize(images, self.mean, self.std)
        return images.round().clamp_(0, 255).to(torch.uint8)

    def _train_one(self, image: torch.Tensor, label: torch.Tensor,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        H, W = self.size
        h, w = image.shape[-2:]
        u = torch.rand(_DRAWS_PER_SAMPLE, generator=generator, dtype=torch.float64).tolist()

        def pick(n: int, v: float) -> int:  # an integer in 0..n from a uniform draw
            return min(n, int(v * (n + 1)))

        lo, hi = self.scale
        f = max(H / h, W / w) * (lo + (hi - lo) * u[0])
        ch, cw = min(H, max(1, round(h * f))), min(W, max(1, round(w * f)))  # content size in the output
        sh, sw = min(h, max(1, round(ch / f))), min(w, max(1, round(cw / f)))  # its window in the source
        sy, sx = pick(h - sh, u[1]), pick(w - sw, u[2])
        py, px = pick(H - ch, u[3]), pick(W - cw, u[4])
        img = _resize_image(image[None, :, sy:sy + sh, sx:sx + sw].to(torch.float32), (ch, cw))
        lab = _resize_label(label[None, sy:sy + sh, sx:sx + sw], (ch, cw))
        img = self._finish(img)[0]
        if (ch, cw) != (H, W):
            if self.normalize:
                out_img = img.new_zeros((3, H, W))
            else:
                fill = torch.tensor([round(255 * m) for m in self.mean], dtype=torch.uint8, device=img.device)
                out_img = fill.view(3, 1, 1).repeat(1, H, W)
            out_lab = torch.full((H, W), self.ignore_index, dtype=torch.int64, device=label.device)
            out_img[:, py:py + ch, px:px + cw] = img
            out_lab[py:py + ch, px:px + cw] = lab[0]
        else:
            out_img, out_lab = img, lab[0]
        if self.flip and u[5] < 0.5:
            out_img, out_lab = out_img.flip(-1), out_lab.flip(-1)
        return out_img, out_lab
