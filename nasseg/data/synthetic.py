"""Procedural street-like scenes: the embedded default dataset (no files, any size, deterministic).

Image ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` and the requested size.  The
validation split ignores ``seed``: it always uses :data:`VAL_SEED`, so every proxy-training run is
scored on the same images.  The train and validation splits never share a scene (the split is part of
the random key).

A scene is a sky-like background above a tilted horizon and ground below it, split by an oblique line
into two large texture regions; on top of that are check-textured patches, wires, poles, vehicles of
three sizes, two coloured beacon bars at the left and right edges, and ring-shaped tokens.  Every
colour is jittered per image, multiplied by a per-image illumination field (linear ramps in x and y
plus a low-frequency wave, 0.5-1.5) and a per-channel colour cast (0.88-1.12), and zero-mean
per-pixel noise (sigma 5-12 grey levels) is added.  Sizes in the table are for a 128 x 256 image;
object sizes scale with the image height, line and pole widths and texture periods are in pixels.

====  ============  ==========================================================  ===============================
 id   name          what it is                                                  what it tests
====  ============  ==========================================================  ===============================
  0   background    smooth sky-like area above the horizon                      background / large flat region
  1   field         ground region, horizontal stripes (period 6-9 px)           texture, not colour: same mean
                                                                                colour as ``forest``
  2   forest        ground region, diagonal stripes (period 2.5-4 px along      texture frequency/orientation
                    x + y), same colour as ``field``
  3   pole          vertical bars 1-3 px wide, 13-122 px long                   thin structures, spatial detail
  4   wire          oblique lines 1-2 px wide across the image (+-35 deg)       thin, non-axis-aligned detail
  5   vehicle       axis-aligned ellipses (aspect 1-2): small r 2.5-6 px,       objects at several scales
                    medium 8-15 px, large 19-36 px; bluish colours
  6   beacon        full-height bars (W/16 wide) at both side edges, orange     a large, easy cue that the
                    or cyan per image                                           token classes depend on
  7   patch_field   checked squares (10-19 px) with a >= 5 px margin of          mid-range context: locally
                    ``field`` around them                                       identical to ``patch_forest``;
                                                                                the surrounding texture decides
  8   patch_forest  the same squares lying inside ``forest``                    (receptive field > patch size)
  9   token_warm    light ring with dark centre (r 6-12 px) in the central      long-range context: locally
                    half of the width when the beacons are orange              identical to ``token_cold``;
 10   token_cold    the same rings when the beacons are cyan                    only the beacons, >= W/4 - W/16
                                                                                (48 px) away, decide
====  ============  ==========================================================  ===============================

Tokens and patches are drawn from the same appearance distribution whatever their class, so a
per-pixel (or small-window) classifier cannot do better than chance between ``token_warm`` and
``token_cold`` or between ``patch_field`` and ``patch_forest``; ``field`` and ``forest`` share their
colour and differ only in texture.  (A nearest-class-mean colour classifier fitted on 40 training
images labels 8 % of the token pixels and 23 % of the patch pixels of 24 validation images correctly
within their pair, 33 % of field/forest; it gets poles and vehicles 99 % right.)

Horizontal flips keep every label valid (the beacons are at both edges).  Random crops that cut both
beacon bars off leave the token classes undecidable: train the synthetic set at its native size
without crop, e.g. with :func:`synthetic_batch` (the data are unlimited, so augmentation buys
nothing).

Speed (CPU time on one core, ``torch.set_num_threads(1)``, measured with
``python -c "from nasseg.data.synthetic import benchmark; benchmark()"`` on a 2-core CI-class VM
that other jobs were loading): 1.6-1.8 ms per 128 x 256 item (``SyntheticDataset.__getitem__``: about
0.3 ms drawing the scene with numpy, the rest painting it with torch), 4.0-4.5 ms per 256 x 512 item;
``synthetic_batch`` of 64 at 128 x 256 on the CPU 140-190 ms including normalisation.  On an
accelerator :func:`synthetic_batch` paints the whole batch with batched torch ops; only the scene
parameters (a few 1-D arrays per image) are drawn on the CPU.  On the CPU it paints one image at a time,
which is faster there.

Labels are meant to be bit-identical on every device, and images equal up to rounding: the painter
uses only additions, multiplications, comparisons and gathers on float32 values that are computed on
the CPU, and the pixel noise is cut from a fixed table with per-image cyclic shifts, not drawn from a
device random generator.  ``test_cuda_batch_equals_cpu`` checks this where a GPU is present.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from nasseg.errors import DatasetError

CLASS_NAMES: tuple[str, ...] = (
    "background",
    "field",
    "forest",
    "pole",
    "wire",
    "vehicle",
    "beacon",
    "patch_field",
    "patch_forest",
    "token_warm",
    "token_cold",
)
NUM_CLASSES = len(CLASS_NAMES)
(BACKGROUND, FIELD, FOREST, POLE, WIRE, VEHICLE, BEACON, PATCH_FIELD, PATCH_FOREST, TOKEN_WARM,
 TOKEN_COLD) = range(NUM_CLASSES)
#: classes that cannot be told apart from their own pixels (pairs: 7/8 mid-range, 9/10 long-range).
CONTEXT_CLASSES: tuple[int, ...] = (PATCH_FIELD, PATCH_FOREST, TOKEN_WARM, TOKEN_COLD)
IGNORE_INDEX = 255
#: the seed of the validation split, whatever ``seed`` is given.
VAL_SEED = 20_240_607
DEFAULT_LENGTH = {"train": 1024, "val": 256}
MIN_SIZE = 16
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 1, "val": 2}

# Slot layout: every image has the same fixed list of paint slots; unused ones are inactive.
_N_PATCH, _N_WIRE, _N_POLE, _N_VEHICLE, _N_TOKEN = 3, 2, 4, 6, 3
_S_PATCH = 3
_S_WIRE = _S_PATCH + _N_PATCH
_S_POLE = _S_WIRE + _N_WIRE
_S_VEHICLE = _S_POLE + _N_POLE
_S_BEACON = _S_VEHICLE + _N_VEHICLE
_S_TOKEN = _S_BEACON + 2  # outer, inner, outer, inner, ...
N_SLOTS = _S_TOKEN + 2 * _N_TOKEN
_FIRST_PRIM = _S_PATCH  # slots 0..2 (background, field, forest) are the region layer
_N_PRIM = N_SLOTS - _FIRST_PRIM

_BG_RGB = (150.0, 165.0, 185.0)
_GROUND_RGB = (105.0, 120.0, 80.0)
_PATCH_RGB = (175.0, 150.0, 95.0)
_POLE_RGB = (55.0, 55.0, 60.0)
_WIRE_RGB = (230.0, 225.0, 205.0)
_VEHICLE_RGB = (60.0, 70.0, 190.0)
_WARM_RGB = (240.0, 145.0, 25.0)
_COLD_RGB = (35.0, 205.0, 225.0)
_TOKEN_OUTER_RGB = (232.0, 232.0, 232.0)
_TOKEN_INNER_RGB = (70.0, 70.0, 70.0)
_NOISE_TABLE_SEED = 0x5EED


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
        ok = all(int(v) == v for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < MIN_SIZE or w < MIN_SIZE:
        raise DatasetError(
            f"synthetic: size={size!r} is not allowed; expected (H, W), integers >= {MIN_SIZE}"
        )
    return h, w


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DatasetError(f"synthetic: split {split!r} does not exist; valid splits: {', '.join(SPLITS)}")
    return split


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"synthetic: seed={seed!r} is not allowed; expected an integer >= 0")
    return int(seed)


def _tri(t: np.ndarray) -> np.ndarray:
    """Triangle wave in [-1, 1] with period 1."""
    return 4.0 * np.abs(t - np.floor(t) - 0.5) - 1.0


def _rect(n: int, lo: float, hi: float) -> np.ndarray:
    """0 for the pixels whose centre (j + 0.5) lies in [lo, hi), 2 elsewhere."""
    out = np.full(n, 2.0)
    out[max(0, math.ceil(lo - 0.5)):max(0, math.ceil(hi - 0.5))] = 0.0
    return out


@functools.lru_cache(maxsize=8)
def _centres(n: int) -> np.ndarray:
    return np.arange(n) + 0.5


def _sample_scene(seed: int, split: str, index: int, h: int, w: int) -> dict[str, np.ndarray]:
    """All per-image parameters as small arrays (1-D per axis; the renderer combines them).

    Slot ``s >= 3`` paints its class and colour where ``|fx[s - 3, x] + fy[s - 3, y]| <= 1``: a rectangle
    has 0 inside / 2 outside on each axis, an ellipse ``((x - cx) / a)^2`` and ``((y - cy) / b)^2``, a
    line its signed distance divided by the half width.  Slots 0-2 are the background / field / forest
    layer (ground where ``hx + hy > 0``, forest where ``sx + sy > 0``).
    """
    key = VAL_SEED if split == "val" else seed
    rng = np.random.default_rng([key, _SPLIT_CODE[split], index])
    rand = rng.random

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * rand()

    def integer(lo: int, hi: int) -> int:  # lo..hi inclusive
        return lo + min(hi - lo, int(rand() * (hi - lo + 1)))

    def jitter(rgb: tuple[float, float, float], amount: float) -> np.ndarray:
        return np.asarray(rgb) + amount * (2.0 * rand(3) - 1.0)

    xs, ys = _centres(w), _centres(h)
    fx = np.full((_N_PRIM, w), 2.0)  # 2 + 2 > 1: an unused slot paints nothing
    fy = np.full((_N_PRIM, h), 2.0)
    cls = np.zeros(N_SLOTS, np.int64)
    col = np.zeros((N_SLOTS, 3))

    # region layer: background above the horizon, field / forest below it
    col[0], cls[0] = jitter(_BG_RGB, 30), BACKGROUND
    ground_rgb = jitter(_GROUND_RGB, 25)
    col[1], cls[1] = ground_rgb, FIELD
    col[2], cls[2] = ground_rgb, FOREST
    yh, slope = h * uniform(0.2, 0.5), uniform(-0.15, 0.15)
    hx, hy = -yh - slope * (xs - w / 2), ys
    if rand() < 0.8:  # an oblique line splits the ground
        t = uniform(-0.9, 0.9)
        sgn = 1.0 if rand() < 0.5 else -1.0
        nx, ny = sgn * math.cos(t), sgn * math.sin(t)
        px, py = w * uniform(0.25, 0.75), uniform(yh, h)
        sx, sy = nx * (xs - px), ny * (ys - py)
    else:  # all field or all forest
        nx, ny, px, py = 0.0, 0.0, 0.0, 0.0
        sx, sy = np.full(w, 1.0 if rand() < 0.5 else -1.0), np.zeros(h)
    whole = sx[0] > 0

    # patches (context pair 1): squares inside one ground region, with a margin of that region
    patch_rgb = jitter(_PATCH_RGB, 12)
    for k in range(integer(1, _N_PATCH)):
        for _ in range(30):
            side = max(4.0, h * uniform(0.08, 0.15))
            margin = max(5.0, 0.5 * side)
            x0, y0 = uniform(0, w - side), uniform(yh, h - side)
            if x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h:
                continue
            cx = np.array([x0 - margin, x0 + side + margin] * 2)
            cy = np.array([y0 - margin] * 2 + [y0 + side + margin] * 2)
            if not (cy - yh - slope * (cx - w / 2) > 0).all():
                continue
            forest = nx * (cx - px) + ny * (cy - py) > 0 if nx or ny else np.full(4, whole)
            if forest.all() or not forest.any():
                s = _S_PATCH + k - _FIRST_PRIM
                fx[s], fy[s] = _rect(w, x0, x0 + side), _rect(h, y0, y0 + side)
                cls[s + _FIRST_PRIM] = PATCH_FOREST if forest[0] else PATCH_FIELD
                col[s + _FIRST_PRIM] = patch_rgb
                break

    # wires: oblique lines 1-2 px wide
    for k in range(integer(0, _N_WIRE)):
        theta, half = uniform(-0.6, 0.6), integer(1, 2) / 2
        p0x, p0y = uniform(0, w), uniform(0.05 * h, 0.95 * h)
        s = _S_WIRE + k - _FIRST_PRIM
        fx[s] = (-math.sin(theta) / half) * (xs - p0x)
        fy[s] = (math.cos(theta) / half) * (ys - p0y)
        cls[s + _FIRST_PRIM], col[s + _FIRST_PRIM] = WIRE, jitter(_WIRE_RGB, 15)

    # poles: vertical bars 1-3 px wide
    for k in range(integer(1, _N_POLE)):
        pw = integer(1, 3)
        x0 = integer(0, w - pw)
        s = _S_POLE + k - _FIRST_PRIM
        fx[s], fy[s] = _rect(w, x0, x0 + pw), _rect(h, h * uniform(0.05, 0.5), h * uniform(0.6, 1.0))
        cls[s + _FIRST_PRIM], col[s + _FIRST_PRIM] = POLE, jitter(_POLE_RGB, 15)

    # vehicles: large first so that smaller ones stay visible on top of them
    radii = [h * uniform(0.15, 0.28)] if rand() < 0.5 else []
    radii += [h * uniform(0.06, 0.12) for _ in range(integer(0, 2))]
    radii += [max(1.5, h * uniform(0.02, 0.045)) for _ in range(integer(1, 3))]
    for k, r in enumerate(radii):
        a = r * uniform(1.0, 2.0)
        cx, cy = uniform(0, w), uniform(yh, h)
        s = _S_VEHICLE + k - _FIRST_PRIM
        fx[s], fy[s] = ((xs - cx) / a) ** 2, ((ys - cy) / r) ** 2
        cls[s + _FIRST_PRIM], col[s + _FIRST_PRIM] = VEHICLE, jitter(_VEHICLE_RGB, 35)

    # beacons at both side edges (flip-invariant); their colour decides the token class
    warm = rand() < 0.5
    beacon_rgb = jitter(_WARM_RGB if warm else _COLD_RGB, 15)
    bw = max(2, round(w / 16))
    for k, (lo, hi) in enumerate(((0.0, bw), (w - bw, w))):
        s = _S_BEACON + k - _FIRST_PRIM
        fx[s], fy[s] = _rect(w, lo, hi), 0.0
        cls[s + _FIRST_PRIM], col[s + _FIRST_PRIM] = BEACON, beacon_rgb

    # tokens (context pair 2): rings in the central half of the width, class from the beacon colour
    for k in range(integer(1, _N_TOKEN)):
        r = max(2.5, h * uniform(0.05, 0.09))
        lo, hi = w / 4 + r, 3 * w / 4 - r
        cx = uniform(lo, hi) if hi > lo else w / 2
        cy = uniform(r, h - r)
        for part, (scale, rgb) in enumerate(((1.0, _TOKEN_OUTER_RGB), (0.5, _TOKEN_INNER_RGB))):
            s = _S_TOKEN + 2 * k + part - _FIRST_PRIM
            fx[s], fy[s] = ((xs - cx) / (r * scale)) ** 2, ((ys - cy) / (r * scale)) ** 2
            cls[s + _FIRST_PRIM] = TOKEN_WARM if warm else TOKEN_COLD
            col[s + _FIRST_PRIM] = jitter(rgb, 10)

    # textures (grey-level offsets), illumination, noise
    field_tex = 25.0 * _tri(ys / uniform(6.0, 9.0) + rand())
    forest_tex = 25.0 * _tri(np.arange(h + w - 1) / uniform(2.5, 4.0) + rand())
    period = integer(2, 3)
    chk_x = np.where(((np.arange(w) + integer(0, period - 1)) // period) % 2 == 0, 30.0, -30.0)
    chk_y = np.where(((np.arange(h) + integer(0, period - 1)) // period) % 2 == 0, 1.0, -1.0)
    ax, ay, bx, by = uniform(-0.35, 0.35), uniform(-0.35, 0.35), uniform(0.0, 0.08), uniform(0.0, 0.08)
    gx = 1.0 + ax * (xs / w - 0.5) + bx * np.cos(2 * np.pi * (uniform(0.5, 1.5) * xs / w + rand()))
    gy = ay * (ys / h - 0.5) + by * np.cos(2 * np.pi * (uniform(0.5, 1.5) * ys / h + rand()))
    f32 = np.float32
    return {
        "fx": fx.astype(f32), "fy": fy.astype(f32), "cls": cls, "col": col.astype(f32),
        "hx": hx.astype(f32), "hy": hy.astype(f32), "sx": sx.astype(f32), "sy": sy.astype(f32),
        "field_tex": field_tex.astype(f32), "forest_tex": forest_tex.astype(f32),
        "chk_x": chk_x.astype(f32), "chk_y": chk_y.astype(f32), "gx": gx.astype(f32), "gy": gy.astype(f32),
        "cast": (0.88 + 0.24 * rand(3)).astype(f32),
        "sigma": np.array([uniform(5.0, 12.0) / math.sqrt(2.0)], f32),
        "shift": np.array([integer(0, h - 1), integer(0, w - 1), integer(0, h - 1), integer(0, w - 1)]),
    }


@functools.lru_cache(maxsize=4)
def _noise_table_np(h: int, w: int) -> np.ndarray:
    table = np.random.default_rng(_NOISE_TABLE_SEED).standard_normal((2, 3, h, w), dtype=np.float32)
    return np.tile(table, (1, 1, 2, 2))  # cyclic shifts become plain slices


_TABLES: dict[tuple[int, int, str], torch.Tensor] = {}


def _noise_table(h: int, w: int, device: torch.device) -> torch.Tensor:
    key = (h, w, str(device))
    if key not in _TABLES:
        if len(_TABLES) >= 4:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = torch.from_numpy(_noise_table_np(h, w)).to(device)
    return _TABLES[key]


def _render(scenes: list[dict[str, np.ndarray]], h: int, w: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint a batch of scenes: uint8 images [B, 3, H, W] and int64 labels [B, H, W] on ``device``."""
    b = len(scenes)
    t = {k: torch.from_numpy(np.stack([s[k] for s in scenes])).to(device) for k in scenes[0] if k != "shift"}
    hw = h * w
    ground = (t["hx"][:, None, :] + t["hy"][:, :, None]) > 0
    forest = (t["sx"][:, None, :] + t["sy"][:, :, None]) > 0
    slot = torch.where(ground, torch.where(forest, 2, 1), 0).to(torch.uint8)
    fx_np, fy_np = np.stack([s["fx"] for s in scenes]), np.stack([s["fy"] for s in scenes])
    fx, fy = t["fx"], t["fy"]
    for p in range(_N_PRIM):
        # paint only inside the union (over the batch) of the slot's bounding boxes: a pixel is inside
        # when |fx + fy| <= 1; for ellipses and rectangles (fx, fy >= 0) that needs fx <= 1 and fy <= 1
        cols, rows = (fx_np[:, p] <= 1).any(0), (fy_np[:, p] <= 1).any(0)
        if fx_np[:, p].min() < 0 or fy_np[:, p].min() < 0:  # a line: no box from one axis
            if not (np.abs(fx_np[:, p]) <= 1 + np.abs(fy_np[:, p]).max()).any():
                continue
            c0, c1, r0, r1 = 0, w, 0, h
        else:
            if not cols.any() or not rows.any():
                continue
            c0, c1 = int(cols.argmax()), w - int(cols[::-1].argmax())
            r0, r1 = int(rows.argmax()), h - int(rows[::-1].argmax())
        v = fx[:, p, None, c0:c1] + fy[:, p, r0:r1, None]
        slot[:, r0:r1, c0:c1].masked_fill_(v.abs_() <= 1, p + _FIRST_PRIM)
    slot = slot.to(torch.int64)
    flat = slot.view(b, hw)
    labels = t["cls"].gather(1, flat).view(b, h, w)

    # texture offsets (grey levels): the texture follows the class
    forest_tex = t["forest_tex"].as_strided((b, h, w), (h + w - 1, 1, 1))  # [b, y, x] = tex[b, x + y]
    mod = torch.where(labels == FIELD, t["field_tex"][:, :, None], 0.0)
    mod = torch.where(labels == FOREST, forest_tex, mod)
    checker = (labels == PATCH_FIELD) | (labels == PATCH_FOREST)
    mod = torch.where(checker, t["chk_x"][:, None, :] * t["chk_y"][:, :, None], mod)

    base = t["col"].transpose(1, 2).gather(2, flat[:, None, :].expand(b, 3, hw)).view(b, 3, h, w)
    gain = (t["gx"][:, None, :] + t["gy"][:, :, None])[:, None] * t["cast"][:, :, None, None]
    img = (base + mod[:, None]) * gain

    # noise: two fixed standard-normal tables (tiled 2 x 2), each cyclically shifted per image
    table = _noise_table(h, w, device)
    noise = torch.stack([
        table[0, :, dy1:dy1 + h, dx1:dx1 + w] + table[1, :, dy2:dy2 + h, dx2:dx2 + w]
        for dy1, dx1, dy2, dx2 in (s["shift"].tolist() for s in scenes)
    ])
    img = img + noise * t["sigma"][:, :, None, None]
    images = img.round_().clamp_(0, 255).to(torch.uint8)
    return images, labels


def render_synthetic(indices: Sequence[int], split: str = "train", size: Sequence[int] = (128, 256),
                     seed: int = 0, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [B, 3, H, W] and int64 labels [B, H, W] of synthetic items ``indices`` on ``device``."""
    h, w = _check_size(size)
    split, seed = _check_split(split), _check_seed(seed)
    idx = [int(i) for i in indices]
    if not idx:
        raise DatasetError("synthetic: no indices given; expected a non-empty list of integers >= 0")
    if min(idx) < 0:
        raise DatasetError(f"synthetic: index {min(idx)} is negative; expected integers >= 0")
    dev = torch.device(device)
    if dev.type == "cpu":  # one image at a time: tighter paint boxes, faster on a CPU
        parts = [_render([_sample_scene(seed, split, i, h, w)], h, w, dev) for i in idx]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return _render([_sample_scene(seed, split, i, h, w) for i in idx], h, w, dev)


def synthetic_batch(indices: Sequence[int], split: str = "train", size: Sequence[int] = (128, 256),
                    seed: int = 0, device: str | torch.device = "cpu", *,
                    normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch rendered directly on ``device``: float images [B, 3, H, W] and int64 labels [B, H, W].

    Item ``k`` equals ``SyntheticDataset(split, size, seed=seed)[indices[k]]``; images are normalised with
    the ImageNet mean/std (as :class:`nasseg.data.transforms.ProxyTransform` does) unless
    ``normalize=False``, which gives floats in 0..255.  Indices may exceed any dataset length.
    """
    from nasseg.data.transforms import normalize as _normalize

    images, labels = render_synthetic(indices, split, size, seed, device)
    return (_normalize(images) if normalize else images.float()), labels


class SyntheticDataset(torch.utils.data.Dataset):
    """The procedural scenes of this module as a map-style dataset of (uint8 [3,H,W], int64 [H,W]).

    ``length`` defaults to 1024 (train) or 256 (val).  ``seed`` selects the training scenes; the
    validation split is fixed (it uses :data:`VAL_SEED` whatever ``seed`` is).
    """

    name = "synthetic"
    class_names = CLASS_NAMES
    num_classes = NUM_CLASSES
    ignore_index = IGNORE_INDEX

    def __init__(self, split: str = "train", size: Sequence[int] = (128, 256), length: int | None = None,
                 seed: int = 0):
        self.split = _check_split(split)
        self.size = _check_size(size)
        self.seed = _check_seed(seed)
        if length is None:
            length = DEFAULT_LENGTH[split]
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise DatasetError(f"synthetic: length={length!r} is not allowed; expected an integer >= 1")
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"synthetic {self.split}: index {index} out of range 0..{self.length - 1}")
        index = int(index) % self.length
        images, labels = _render([_sample_scene(self.seed, self.split, index, *self.size)], *self.size,
                                 torch.device("cpu"))
        return images[0], labels[0]

    def batch(self, indices: Sequence[int], device: str | torch.device = "cpu", *,
              normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`synthetic_batch` for this dataset's split, size and seed."""
        return synthetic_batch(indices, self.split, self.size, self.seed, device, normalize=normalize)

    def validate(self, limit: int | None = None) -> int:
        """Nothing can be wrong with generated data; returns the number of items (for API symmetry)."""
        return self.length if limit is None else min(self.length, int(limit))

    def __repr__(self) -> str:
        return (f"SyntheticDataset(split={self.split!r}, size={self.size}, length={self.length}, "
                f"seed={self.seed})")


def benchmark(sizes: Sequence[Sequence[int]] = ((128, 256), (256, 512)), n: int = 300) -> None:
    """Print the CPU time per item and per batch of 64 on one core (the figures in the module docstring).

    CPU time of this process (``time.process_time``), so other load on the machine hardly changes it.
    """
    import time

    torch.set_num_threads(1)
    for size in sizes:
        ds = SyntheticDataset("train", size=size, length=n + 20)
        for i in range(20):
            ds[i]
        t0 = time.process_time()
        for i in range(n):
            ds[i]
        per_item = (time.process_time() - t0) / n * 1e3
        t0 = time.process_time()
        for k in range(4):
            synthetic_batch(range(64 * k, 64 * k + 64), "train", size)
        per_batch = (time.process_time() - t0) / 4 * 1e3
        print(f"{size[0]}x{size[1]}: {per_item:.2f} ms CPU per item; synthetic_batch of 64 on CPU: "
              f"{per_batch:.0f} ms")
