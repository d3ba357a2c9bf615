"""Real dataset layouts on disk (Pillow only) and the dataset spec strings that name them.

A dataset spec is ``"synthetic"`` or ``"LAYOUT:PATH"``; :func:`describe_spec` checks one without touching
the disk and :func:`open_dataset` opens a split of it.  Every layout gives a map-style dataset of
``(uint8 image [3, H, W], int64 label [H, W])`` with ``num_classes``, ``class_names``,
``ignore_index = 255`` and ``name``; raw mask values are mapped through a 256-entry lookup table.

==========  =====================================================================  ==========================
layout      files (``ROOT`` is the spec's path)                                     labels
==========  =====================================================================  ==========================
cityscapes  ``ROOT/leftImg8bit/{split}/<city>/<stem>_leftImg8bit.png`` and          labelIds 0..33 -> the 19
            ``ROOT/gtFine/{split}/<city>/<stem>_gtFine_labelIds.png``;              trainIds of cityscapes-
            splits train, val                                                       scripts; 255 (-1, license
                                                                                    plate) -> 255
camvid      ``ROOT/{split}/<name>`` and ``ROOT/{split}annot/<name>`` (SegNet's      0..10 as is, 11 (void)
            CamVid); splits train, val, test                                        -> 255
ade20k      ``ROOT[/ADEChallengeData2016]/images/{training,validation}/*.jpg`` and  0 (other) -> 255,
            ``.../annotations/{training,validation}/*.png``; splits train, val      1..150 -> 0..149
voc         ``ROOT[/VOCdevkit][/VOC2012]/ImageSets/Segmentation/{split}.txt``,      0..20, 255 (boundary)
            ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette        ignored
            PNG, indices read as is); splits train, val, trainval
folder      ``ROOT/images/<stem>.*``, ``ROOT/masks/<stem>.png`` (or .bmp/.tif),     0..N-1, 255 ignored
            ``ROOT/classes.txt`` (one class name per line, N lines); the split is
            the stems listed in ``ROOT/{split}.txt`` if ``train.txt`` or
            ``val.txt`` exists, else a fixed hold-out: every 5th stem in sorted
            order is val, the others train
==========  =====================================================================  ==========================

Every problem is a :class:`nasseg.errors.DatasetError` naming the file or directory and what was
expected: a missing directory or list file, an image without its mask, an unreadable or corrupt
image, a mask whose size differs from its image's, a mask that is not single-channel, a label value
outside the class list (other than 255).  Missing masks are found when the dataset is opened; the rest
when an item is loaded (the check is a table lookup) or by ``dataset.validate()``, which loads every
item (or the first ``limit``) and reports all bad files at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nasseg.data import synthetic
from nasseg.errors import DatasetError

IGNORE_INDEX = 255
LAYOUTS: tuple[str, ...] = ("cityscapes", "camvid", "ade20k", "voc", "folder")
SPEC_KINDS: tuple[str, ...] = ("synthetic", *LAYOUTS)

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)
#: labelId -> trainId, as cityscapesscripts/helpers/labels.py (mcordts/cityscapesScripts); 255 = ignore.
#: Id -1 (license plate) has trainId -1, i.e. ignore; as a uint8 mask value it reads 255.
CITYSCAPES_LABEL_TO_TRAIN: dict[int, int] = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255,  # unlabeled .. ground (void)
    7: 0, 8: 1, 9: 255, 10: 255,  # road, sidewalk, parking, rail track
    11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255,  # building, wall, fence, guard rail, bridge, tunnel
    17: 5, 18: 255, 19: 6, 20: 7,  # pole, polegroup, traffic light, traffic sign
    21: 8, 22: 9, 23: 10,  # vegetation, terrain, sky
    24: 11, 25: 12,  # person, rider
    26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,  # car .. bicycle
    -1: 255,  # license plate
}

#: SegNet's CamVid class order (mask value 11 is "unlabelled" -> ignore).
CAMVID_CLASSES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car", "pedestrian",
    "bicyclist",
)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

#: ADE20K SceneParsing 150 classes, in annotation order 1..150 (trained as 0..149).
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
    "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
_SPLITS: dict[str, tuple[str, ...]] = {
    "synthetic": synthetic.SPLITS,
    "cityscapes": ("train", "val"),
    "camvid": ("train", "val", "test"),
    "ade20k": ("train", "val"),
    "voc": ("train", "val", "trainval"),
    "folder": ("train", "val"),
}
_NUM_CLASSES = {"synthetic": synthetic.NUM_CLASSES, "cityscapes": 19, "camvid": 11, "ade20k": 150, "voc": 21}
_CLASS_NAMES = {"synthetic": synthetic.CLASS_NAMES, "cityscapes": CITYSCAPES_CLASSES, "camvid": CAMVID_CLASSES,
                "ade20k": ADE20K_CLASSES, "voc": VOC_CLASSES}


def _lut(mapping: dict[int, int]) -> np.ndarray:
    """256-entry table raw value -> train id, -1 where the raw value is not allowed."""
    lut = np.full(256, -1, np.int16)
    for raw, train in mapping.items():
        lut[raw % 256] = train
    return lut


def cityscapes_lut() -> np.ndarray:
    return _lut(CITYSCAPES_LABEL_TO_TRAIN)


def camvid_lut() -> np.ndarray:
    return _lut({**{i: i for i in range(11)}, 11: IGNORE_INDEX, 255: IGNORE_INDEX})


def ade20k_lut() -> np.ndarray:
    return _lut({0: IGNORE_INDEX, **{i: i - 1 for i in range(1, 151)}, 255: IGNORE_INDEX})


def identity_lut(num_classes: int) -> np.ndarray:
    return _lut({**{i: i for i in range(num_classes)}, 255: IGNORE_INDEX})


# ------------------------------------------------------------------------------------------- file reading
def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file, or DatasetError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path}: cannot read the image ({e}); expected a readable image file") from None
    return rgb


def read_mask(path: Path) -> np.ndarray:
    """Raw class values [H, W] of a single-channel mask (mode L, P, 1 or I); P gives palette indices."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "P"):
                return np.asarray(im)
            if mode == "1":
                return np.asarray(im, dtype=np.uint8)
            if mode.startswith("I"):
                return np.asarray(im).astype(np.int64)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path}: cannot read the mask ({e}); expected a readable PNG of class "
                           "indices") from None
    raise DatasetError(f"{path}: the mask has image mode {mode}; expected a single-channel label image of "
                       "class indices (mode L or P), not a colour-coded one")


# -------------------------------------------------------------------------------------------- the dataset
class LayoutDataset(torch.utils.data.Dataset):
    """Image/mask file pairs with a raw-value lookup table: the common base of every real layout.

    ``items`` lists ``(image path, mask path)``; ``lut`` maps each raw mask value 0..255 to a train id
    (0..num_classes-1 or 255) or to -1 when the value is not allowed; ``expected`` says in words what
    raw values are allowed (used in error messages).
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, name: str, split: str, root: Path, items: Sequence[tuple[Path, Path]],
                 class_names: Sequence[str], lut: np.ndarray, expected: str):
        self.name, self.split, self.root = name, split, Path(root)
        self.items = list(items)
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.lut = np.asarray(lut, np.int16)
        self.expected = expected
        if self.lut.shape != (256,):
            raise ValueError("lut must have 256 entries")

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, split={self.split!r}, root={str(self.root)!r}, n={len(self)})"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.items[index]
        image = read_image(image_path)
        label = self.map_mask(read_mask(mask_path), mask_path)
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"{mask_path}: the mask is {label.shape[1]}x{label.shape[0]} (WxH) but its image {image_path} "
                f"is {image.shape[1]}x{image.shape[0]}; expected the same size"
            )
        return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                torch.from_numpy(label.astype(np.int64)))

    def map_mask(self, raw: np.ndarray, path: Path | str = "<mask>") -> np.ndarray:
        """Raw mask values -> train ids (int16 [H, W]); a value the layout does not allow raises."""
        if raw.dtype != np.uint8:
            outside = (raw < 0) | (raw > 255)
            if outside.any():
                values = np.unique(raw[outside])
                raise DatasetError(f"{path}: label values {_listed(values)} are not allowed; "
                                   f"expected {self.expected}")
            raw = raw.astype(np.uint8)
        label = self.lut[raw]
        bad = label < 0
        if bad.any():
            values = np.unique(raw[bad])
            raise DatasetError(f"{path}: label values {_listed(values)} are not allowed; expected {self.expected}")
        return label

    def validate(self, limit: int | None = None) -> int:
        """Load every item (the first ``limit``); raise one DatasetError listing all bad files, else the count."""
        n = len(self) if limit is None else min(len(self), max(0, int(limit)))
        problems = []
        for i in range(n):
            try:
                self[i]
            except DatasetError as e:
                problems.append(str(e))
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise DatasetError(f"{self.name} {self.split} at {self.root}: {len(problems)} of {n} items are bad:"
                               f"\n  {shown}{more}")
        return n


def _listed(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:10])
    return shown + (f" (and {len(values) - 10} more)" if len(values) > 10 else "")


# ------------------------------------------------------------------------------------------------ layouts
def _need_dir(path: Path, layout: str, expected: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{layout}: directory {path} does not exist; expected {expected}")
    return path


def _files(directory: Path, extensions: Sequence[str]) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def _no_mask(image: Path, mask: Path | str) -> DatasetError:
    return DatasetError(f"{image}: the image has no mask; expected {mask}")


def open_cityscapes(root: Path, split: str) -> LayoutDataset:
    images_dir = _need_dir(root / "leftImg8bit" / split, "cityscapes",
                           f"{root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png")
    gt_dir = _need_dir(root / "gtFine" / split, "cityscapes",
                       f"{root}/gtFine/{split}/<city>/*_gtFine_labelIds.png")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetError(f"cityscapes: {images_dir} holds no <city>/*_leftImg8bit.png files")
    items = []
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        mask = gt_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not mask.is_file():
            raise _no_mask(image, mask)
        items.append((image, mask))
    return LayoutDataset("cityscapes", split, root, items, CITYSCAPES_CLASSES, cityscapes_lut(),
                         "Cityscapes labelIds 0..33 (or 255 for id -1)")


def open_camvid(root: Path, split: str) -> LayoutDataset:
    images_dir = _need_dir(root / split, "camvid", f"SegNet's layout {root}/{split}/*.png")
    masks_dir = _need_dir(root / f"{split}annot", "camvid", f"SegNet's layout {root}/{split}annot/*.png")
    images = _files(images_dir, IMAGE_EXTENSIONS)
    if not images:
        raise DatasetError(f"camvid: {images_dir} holds no images")
    items = []
    for image in images:
        mask = masks_dir / image.name
        if not mask.is_file():
            mask = masks_dir / f"{image.stem}.png"
            if not mask.is_file():
                raise _no_mask(image, masks_dir / image.name)
        items.append((image, mask))
    return LayoutDataset("camvid", split, root, items, CAMVID_CLASSES, camvid_lut(),
                         "CamVid class indices 0..10, 11 (void) or 255")


def open_ade20k(root: Path, split: str) -> LayoutDataset:
    base = root / "ADEChallengeData2016"
    if not base.is_dir() and (root / "images").is_dir():
        base = root
    sub = {"train": "training", "val": "validation"}[split]
    images_dir = _need_dir(base / "images" / sub, "ade20k", f"{root}/ADEChallengeData2016/images/{sub}/*.jpg")
    masks_dir = _need_dir(base / "annotations" / sub, "ade20k",
                          f"{root}/ADEChallengeData2016/annotations/{sub}/*.png")
    images = _files(images_dir, (".jpg", ".jpeg"))
    if not images:
        raise DatasetError(f"ade20k: {images_dir} holds no *.jpg images")
    items = []
    for image in images:
        mask = masks_dir / f"{image.stem}.png"
        if not mask.is_file():
            raise _no_mask(image, mask)
        items.append((image, mask))
    return LayoutDataset("ade20k", split, root, items, ADE20K_CLASSES, ade20k_lut(),
                         "ADE20K annotation values 0..150 (0 = other, ignored)")


def open_voc(root: Path, split: str) -> LayoutDataset:
    candidates = (root / "VOC2012", root / "VOCdevkit" / "VOC2012", root)
    base = next((c for c in candidates if (c / "ImageSets" / "Segmentation").is_dir()), None)
    if base is None:
        raise DatasetError(f"voc: directory {root}/VOC2012/ImageSets/Segmentation does not exist (nor under "
                           f"{root}/VOCdevkit/VOC2012 or {root}); expected the Pascal VOC 2012 layout")
    list_file = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise DatasetError(f"voc: list file {list_file} does not exist; expected one image id per line")
    images_dir = _need_dir(base / "JPEGImages", "voc", f"{base}/JPEGImages/<id>.jpg")
    masks_dir = _need_dir(base / "SegmentationClass", "voc", f"{base}/SegmentationClass/<id>.png")
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"voc: list file {list_file} is empty; expected one image id per line")
    items = []
    for image_id in ids:
        image, mask = images_dir / f"{image_id}.jpg", masks_dir / f"{image_id}.png"
        if not image.is_file():
            raise DatasetError(f"{list_file}: lists id {image_id!r} but {image} does not exist")
        if not mask.is_file():
            raise _no_mask(image, mask)
        items.append((image, mask))
    return LayoutDataset("voc", split, root, items, VOC_CLASSES, identity_lut(21),
                         "VOC class indices 0..20 or 255 (boundary)")


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names of a folder dataset: one per line, blank lines skipped."""
    if not path.is_file():
        raise DatasetError(f"folder: class list {path} does not exist; expected one class name per line")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names:
        raise DatasetError(f"{path}: no class names; expected one class name per line")
    if len(names) > 255:
        raise DatasetError(f"{path}: {len(names)} classes; expected at most 255 (255 is the ignore label)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{path}: class names {dup} appear more than once; expected unique names")
    return names


def open_folder(root: Path, split: str) -> LayoutDataset:
    _need_dir(root, "folder", f"{root} with images/, masks/ and classes.txt")
    images_dir = _need_dir(root / "images", "folder", f"{root}/images/<stem>.<ext>")
    masks_dir = _need_dir(root / "masks", "folder", f"{root}/masks/<stem>.png")
    names = read_classes(root / "classes.txt")
    images: dict[str, Path] = {}
    for p in _files(images_dir, IMAGE_EXTENSIONS):
        if p.stem in images:
            raise DatasetError(f"{p}: stem {p.stem!r} is also {images[p.stem]}; expected one image per stem")
        images[p.stem] = p
    masks: dict[str, Path] = {}
    for p in sorted(_files(masks_dir, MASK_EXTENSIONS), key=lambda p: -MASK_EXTENSIONS.index(p.suffix.lower())):
        masks[p.stem] = p  # .png wins over .bmp / .tif of the same stem
    lists = {s: root / f"{s}.txt" for s in ("train", "val")}
    if any(p.is_file() for p in lists.values()):
        list_file = lists[split]
        if not list_file.is_file():
            raise DatasetError(f"folder: list file {list_file} does not exist; expected one image stem per line "
                               f"(because {root} has {' and '.join(p.name for p in lists.values() if p.is_file())})")
        stems = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        for stem in stems:
            if stem not in images:
                raise DatasetError(f"{list_file}: lists {stem!r} but {images_dir} has no image with that stem")
    else:
        ordered = sorted(images)
        stems = [s for i, s in enumerate(ordered) if (i % 5 == 4) == (split == "val")]
    if not stems:
        how = (f"{root / f'{split}.txt'} lists none" if any(p.is_file() for p in lists.values()) else
               f"without train.txt / val.txt every 5th image (sorted by name) is val, and {images_dir} holds "
               f"{len(images)}")
        raise DatasetError(f"folder: split {split!r} of {root} holds no images ({how}); expected images in "
                           f"{images_dir}")
    items = []
    for stem in stems:
        if stem not in masks:
            raise _no_mask(images[stem], f"{masks_dir}/{stem}.png")
        items.append((images[stem], masks[stem]))
    return LayoutDataset("folder", split, root, items, names, identity_lut(len(names)),
                         f"class indices 0..{len(names) - 1} ({root / 'classes.txt'} lists {len(names)}) or 255")


_OPENERS = {"cityscapes": open_cityscapes, "camvid": open_camvid, "ade20k": open_ade20k, "voc": open_voc,
            "folder": open_folder}


# ----------------------------------------------------------------------------------------------- the specs
@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``layout`` (``synthetic`` or a real layout) and ``root`` (None for synthetic).

    ``num_classes`` / ``class_names`` are known without the disk for every layout but ``folder``.
    """

    spec: str
    layout: str
    root: Path | None
    splits: tuple[str, ...]
    num_classes: int | None
    class_names: tuple[str, ...] | None

    def __str__(self) -> str:
        where = "" if self.root is None else f" at {self.root}"
        classes = "classes from classes.txt" if self.num_classes is None else f"{self.num_classes} classes"
        return f"{self.layout}{where} ({classes}; splits {', '.join(self.splits)})"


def _valid_specs() -> str:
    return "synthetic, " + ", ".join(f"{name}:PATH" for name in LAYOUTS)


def describe_spec(spec: str) -> DatasetSpec:
    """Parse and check a spec string (``synthetic`` or ``LAYOUT:PATH``) without touching the disk."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"dataset spec {spec!r} is not allowed; expected one of: {_valid_specs()}")
    text = spec.strip()
    layout, sep, path = text.partition(":")
    layout = layout.strip().lower()
    if layout not in SPEC_KINDS:
        close = difflib.get_close_matches(layout, SPEC_KINDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise DatasetError(f"dataset spec {spec!r}: unknown layout {layout!r}{hint}; valid layouts: "
                           f"{_valid_specs()}")
    if layout == "synthetic":
        if path.strip():
            raise DatasetError(f"dataset spec {spec!r}: synthetic takes no path; write just 'synthetic' "
                               f"(valid layouts: {_valid_specs()})")
        return DatasetSpec(spec, layout, None, _SPLITS[layout], _NUM_CLASSES[layout], _CLASS_NAMES[layout])
    if not sep or not path.strip():
        raise DatasetError(f"dataset spec {spec!r}: layout {layout} needs a path, e.g. '{layout}:/data/{layout}' "
                           f"(valid layouts: {_valid_specs()})")
    root = Path(path.strip()).expanduser()
    return DatasetSpec(spec, layout, root, _SPLITS[layout], _NUM_CLASSES.get(layout),
                       _CLASS_NAMES.get(layout))


_SYNTHETIC_OPTIONS = ("size", "length", "seed")


def open_dataset(spec: str, split: str, **opts: Any) -> torch.utils.data.Dataset:
    """Open split ``split`` of the dataset ``spec``.

    ``synthetic`` takes the options ``size=(H, W)``, ``length`` and ``seed`` (see
    :class:`nasseg.data.synthetic.SyntheticDataset`); the real layouts take none.
    """
    parsed = describe_spec(spec)
    if split not in parsed.splits:
        raise DatasetError(f"dataset {spec!r}: split {split!r} does not exist; valid splits for {parsed.layout}: "
                           f"{', '.join(parsed.splits)}")
    allowed = _SYNTHETIC_OPTIONS if parsed.layout == "synthetic" else ()
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise DatasetError(f"dataset {spec!r}: unknown option(s) {', '.join(unknown)}; valid options for "
                           f"{parsed.layout}: {valid}")
    if parsed.layout == "synthetic":
        return synthetic.SyntheticDataset(split, **opts)
    assert parsed.root is not None
    return _OPENERS[parsed.layout](parsed.root, split)
