"""Tiny fixture trees (16x32 images) in each exact layout, built with Pillow in tmp_path."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasseg.data import (
    ADE20K_CLASSES,
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    LayoutDataset,
    SyntheticDataset,
    describe_spec,
    open_dataset,
)
from nasseg.errors import DatasetError

H, W = 16, 32

# labelId -> trainId, typed from the table in cityscapesscripts/helpers/labels.py (ids 0..33)
CITYSCAPES_TRAIN_IDS = [
    255, 255, 255, 255, 255, 255, 255,  # 0 unlabeled, ego vehicle, rectification border, out of roi, static,
    # dynamic, ground
    0, 1, 255, 255,  # 7 road, sidewalk, parking, rail track
    2, 3, 4, 255, 255, 255,  # 11 building, wall, fence, guard rail, bridge, tunnel
    5, 255, 6, 7,  # 17 pole, polegroup, traffic light, traffic sign
    8, 9, 10, 11, 12,  # 21 vegetation, terrain, sky, person, rider
    13, 14, 15, 255, 255, 16, 17, 18,  # 26 car, truck, bus, caravan, trailer, train, motorcycle, bicycle
]


def _image(path: Path, seed: int = 0, size=(H, W), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)
    return path


def _mask(path: Path, values: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(values.astype(np.uint8), mode="L")
    if mode == "P":
        im = im.convert("P")
        im.putpalette(sum(([i, 255 - i, (7 * i) % 256] for i in range(256)), []))
        im.putdata(values.astype(np.uint8).flatten().tolist())
    im.save(path)
    return path


def _fill(values, size=(H, W)) -> np.ndarray:
    """A mask that holds every value of ``values`` (cycled over the pixels)."""
    flat = np.resize(np.asarray(values), size[0] * size[1])
    return flat.reshape(size)


def _loaded(ds, index=0):
    img, lab = ds[index]
    assert img.dtype == torch.uint8 and img.shape == (3, H, W)
    assert lab.dtype == torch.int64 and lab.shape == (H, W)
    return img, lab


# ---------------------------------------------------------------------------------------------- cityscapes
def _cityscapes(root: Path, raw: np.ndarray | None = None) -> Path:
    raw = _fill(list(range(34)) + [255]) if raw is None else raw
    for split, cities in (("train", {"aachen": 2, "bremen": 1}), ("val", {"lindau": 1})):
        for city, n in cities.items():
            for k in range(n):
                stem = f"{city}_{k:06d}_000019"
                _image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", k)
                _mask(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
                _mask(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", raw)  # not read
    return root


def test_cityscapes_maps_all_34_label_ids_like_cityscapesscripts(tmp_path):
    root = _cityscapes(tmp_path / "cs")
    train, val = open_dataset(f"cityscapes:{root}", "train"), open_dataset(f"cityscapes:{root}", "val")
    assert len(train) == 3 and len(val) == 1
    assert train.num_classes == 19 and train.class_names == CITYSCAPES_CLASSES and train.ignore_index == 255
    assert train.name == "cityscapes" and isinstance(train, LayoutDataset)
    raw = _fill(list(range(34)) + [255])
    expected = np.array(CITYSCAPES_TRAIN_IDS + [255] * 222)[raw]  # 255 is id -1 (license plate)
    _, lab = _loaded(train)
    assert np.array_equal(lab.numpy(), expected)
    assert sorted(set(lab.unique().tolist())) == list(range(19)) + [255]
    assert train.items[0][1].name == "aachen_000000_000019_gtFine_labelIds.png"
    assert train.validate() == 3


def test_cityscapes_rejects_ids_beyond_33(tmp_path):
    root = _cityscapes(tmp_path / "cs", _fill([7, 34, 40]))
    ds = open_dataset(f"cityscapes:{root}", "train")
    with pytest.raises(DatasetError, match=r"gtFine_labelIds\.png: label values 34, 40 are not allowed; "
                                           r"expected Cityscapes labelIds 0\.\.33"):
        ds[0]


def test_cityscapes_missing_directory_and_missing_mask(tmp_path):
    with pytest.raises(DatasetError, match=r"directory .*leftImg8bit/train does not exist; expected"):
        open_dataset(f"cityscapes:{tmp_path / 'nowhere'}", "train")
    root = _cityscapes(tmp_path / "cs")
    (root / "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError) as e:
        open_dataset(f"cityscapes:{root}", "train")
    assert "bremen_000000_000019_leftImg8bit.png: the image has no mask; expected" in str(e.value)
    assert "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png" in str(e.value)


# -------------------------------------------------------------------------------------------------- camvid
def _camvid(root: Path) -> Path:
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for k in range(n):
            _image(root / split / f"0001TP_{k:06d}.png", k)
            _mask(root / f"{split}annot" / f"0001TP_{k:06d}.png", _fill(list(range(12)) + [255]))
    return root


def test_camvid_segnet_layout(tmp_path):
    root = _camvid(tmp_path / "CamVid")
    ds = open_dataset(f"camvid:{root}", "train")
    assert len(ds) == 2 and ds.num_classes == 11 and ds.class_names == CAMVID_CLASSES
    assert ds.class_names[:4] == ("sky", "building", "pole", "road") and ds.class_names[-1] == "bicyclist"
    _, lab = _loaded(ds)
    raw = _fill(list(range(12)) + [255])
    assert np.array_equal(lab.numpy(), np.where(raw >= 11, 255, raw))  # 11 = void -> ignore
    assert len(open_dataset(f"camvid:{root}", "test")) == 1


def test_camvid_value_outside_class_list(tmp_path):
    root = _camvid(tmp_path / "CamVid")
    _mask(root / "valannot" / "0001TP_000000.png", _fill([3, 12]))
    with pytest.raises(DatasetError, match=r"valannot/0001TP_000000\.png: label values 12 are not allowed"):
        open_dataset(f"camvid:{root}", "val")[0]


# -------------------------------------------------------------------------------------------------- ade20k
def _ade(root: Path, nested: bool = True) -> Path:
    base = root / "ADEChallengeData2016" if nested else root
    for sub, n in (("training", 2), ("validation", 1)):
        for k in range(n):
            _image(base / "images" / sub / f"ADE_{sub[:5]}_{k:08d}.jpg", k, fmt="JPEG")
            _mask(base / "annotations" / sub / f"ADE_{sub[:5]}_{k:08d}.png", _fill(list(range(151)), (H, W)))
    return root


@pytest.mark.parametrize("nested", [True, False])
def test_ade20k_reduce_zero_label(tmp_path, nested):
    root = _ade(tmp_path / "ade", nested)
    ds = open_dataset(f"ade20k:{root}", "train")
    assert len(ds) == 2 and len(open_dataset(f"ade20k:{root}", "val")) == 1
    assert ds.num_classes == 150 and ds.class_names == ADE20K_CLASSES and len(set(ADE20K_CLASSES)) == 150
    assert ds.class_names[0] == "wall" and ds.class_names[7] == "bed" and ds.class_names[-1] == "flag"
    _, lab = _loaded(ds)
    raw = _fill(list(range(151)))
    assert np.array_equal(lab.numpy(), np.where(raw == 0, 255, raw - 1))


def test_ade20k_value_151_is_rejected(tmp_path):
    root = _ade(tmp_path / "ade")
    _mask(root / "ADEChallengeData2016/annotations/validation/ADE_valid_00000000.png", _fill([0, 151, 200]))
    with pytest.raises(DatasetError, match=r"ADE_valid_00000000\.png: label values 151, 200 are not allowed; "
                                           r"expected ADE20K annotation values 0\.\.150"):
        open_dataset(f"ade20k:{root}", "val")[0]


# ----------------------------------------------------------------------------------------------------- voc
def _voc(base: Path, ids=("2007_000032", "2007_000033", "2007_000039"), val=("2007_000039",)) -> Path:
    seg = base / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "train.txt").write_text("\n".join(i for i in ids if i not in val) + "\n")
    (seg / "val.txt").write_text("\n".join(val) + "\n")
    for k, image_id in enumerate(ids):
        _image(base / "JPEGImages" / f"{image_id}.jpg", k, fmt="JPEG")
        _mask(base / "SegmentationClass" / f"{image_id}.png", _fill(list(range(21)) + [255]), mode="P")
    return base


@pytest.mark.parametrize("where", ["VOC2012", "VOCdevkit/VOC2012", "."])
def test_voc_palette_indices(tmp_path, where):
    base = _voc(tmp_path / "voc" / where)
    assert Image.open(base / "SegmentationClass/2007_000032.png").mode == "P"
    root = tmp_path / "voc"
    ds = open_dataset(f"voc:{root}", "train")
    assert len(ds) == 2 and len(open_dataset(f"voc:{root}", "val")) == 1
    assert ds.num_classes == 21 and ds.class_names == VOC_CLASSES and ds.class_names[15] == "person"
    _, lab = _loaded(ds)
    assert np.array_equal(lab.numpy(), _fill(list(range(21)) + [255]))


def test_voc_missing_list_and_missing_image(tmp_path):
    base = _voc(tmp_path / "voc" / "VOC2012")
    with pytest.raises(DatasetError, match=r"list file .*Segmentation/trainval\.txt does not exist"):
        open_dataset(f"voc:{tmp_path / 'voc'}", "trainval")
    (base / "JPEGImages/2007_000033.jpg").unlink()
    with pytest.raises(DatasetError, match=r"train\.txt: lists id '2007_000033' but .*2007_000033\.jpg does not"):
        open_dataset(f"voc:{tmp_path / 'voc'}", "train")
    with pytest.raises(DatasetError, match=r"voc: directory .*ImageSets/Segmentation does not exist"):
        open_dataset(f"voc:{tmp_path}/empty", "train")


def test_voc_colour_mask_is_rejected(tmp_path):
    base = _voc(tmp_path / "voc" / "VOC2012")
    _image(base / "SegmentationClass/2007_000039.png", 3)  # an RGB "colour" mask
    with pytest.raises(DatasetError, match=r"2007_000039\.png: the mask has image mode RGB; expected a single"):
        open_dataset(f"voc:{tmp_path / 'voc'}", "val")[0]


# -------------------------------------------------------------------------------------------------- folder
def _folder(root: Path, n: int = 6, classes=("road", "car", "tree")) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n\n")
    for k in range(n):
        _image(root / "images" / f"img{k}.{'png' if k % 2 else 'jpg'}", k, fmt=None)
        _mask(root / "masks" / f"img{k}.png", _fill([0, 1, 2, 255]))
    return root


def test_folder_layout_and_default_holdout(tmp_path):
    root = _folder(tmp_path / "f", n=6)
    train, val = open_dataset(f"folder:{root}", "train"), open_dataset(f"folder:{root}", "val")
    assert [p.stem for p, _ in train.items] == ["img0", "img1", "img2", "img3", "img5"]
    assert [p.stem for p, _ in val.items] == ["img4"]
    assert train.class_names == ("road", "car", "tree") and train.num_classes == 3 and train.name == "folder"
    _, lab = _loaded(val)
    assert np.array_equal(lab.numpy(), _fill([0, 1, 2, 255]))


def test_folder_prefers_png_masks_and_explains_an_empty_holdout(tmp_path):
    root = _folder(tmp_path / "f", n=3)
    _mask(root / "masks" / "img0.bmp", _fill([9]))  # would be out of range if it were read
    train = open_dataset(f"folder:{root}", "train")
    assert train.items[0][1].name == "img0.png" and len(train) == 3
    with pytest.raises(DatasetError, match=r"split 'val' of .* holds no images \(without train.txt / val.txt "
                                           r"every 5th image .* holds 3\)"):
        open_dataset(f"folder:{root}", "val")


def test_folder_split_lists(tmp_path):
    root = _folder(tmp_path / "f", n=4)
    (root / "train.txt").write_text("img0\nimg2\n")
    (root / "val.txt").write_text("img3\n")
    assert [p.stem for p, _ in open_dataset(f"folder:{root}", "train").items] == ["img0", "img2"]
    assert [p.stem for p, _ in open_dataset(f"folder:{root}", "val").items] == ["img3"]
    (root / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"list file .*val\.txt does not exist"):
        open_dataset(f"folder:{root}", "val")
    (root / "train.txt").write_text("img0\nimg9\n")
    with pytest.raises(DatasetError, match=r"train\.txt: lists 'img9' but .*images has no image with that stem"):
        open_dataset(f"folder:{root}", "train")


def test_folder_errors(tmp_path):
    root = _folder(tmp_path / "f", n=5)
    with pytest.raises(DatasetError, match=r"folder: directory .*missing does not exist"):
        open_dataset(f"folder:{tmp_path / 'missing'}", "train")
    (root / "masks/img2.png").unlink()
    with pytest.raises(DatasetError, match=r"img2\.jpg: the image has no mask; expected .*masks/img2\.png"):
        open_dataset(f"folder:{root}", "train")
    _mask(root / "masks/img2.png", _fill([0, 3]))
    with pytest.raises(DatasetError, match=r"img2\.png: label values 3 are not allowed; expected class indices "
                                           r"0\.\.2 \(.*classes\.txt lists 3\) or 255"):
        open_dataset(f"folder:{root}", "train")[2]
    (root / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match=r"classes\.txt: class names \['a'\] appear more than once"):
        open_dataset(f"folder:{root}", "train")
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match=r"class list .*classes\.txt does not exist"):
        open_dataset(f"folder:{root}", "train")


# ------------------------------------------------------------------------------- bad files found on loading
def test_size_mismatch_names_the_mask_and_its_image(tmp_path):
    root = _folder(tmp_path / "f", n=2)
    _mask(root / "masks/img0.png", _fill([0], (H, W + 1)))
    with pytest.raises(DatasetError) as e:
        open_dataset(f"folder:{root}", "train")[0]
    msg = str(e.value)
    assert "masks/img0.png: the mask is 33x16 (WxH) but its image" in msg and "img0.jpg is 32x16" in msg
    assert "expected the same size" in msg


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image(tmp_path, damage):
    root = _ade(tmp_path / "ade")
    path = root / "ADEChallengeData2016/images/training/ADE_train_00000001.jpg"
    data = path.read_bytes()
    path.write_bytes(b"this is not a jpeg" if damage == "garbage" else data[: len(data) // 2])
    ds = open_dataset(f"ade20k:{root}", "train")
    _loaded(ds, 0)
    with pytest.raises(DatasetError, match=r"ADE_train_00000001\.jpg: cannot read the image .*expected a readable"):
        ds[1]


def test_validate_reports_every_bad_file(tmp_path):
    root = _folder(tmp_path / "f", n=6)
    ds = open_dataset(f"folder:{root}", "train")
    assert ds.validate() == 5 and ds.validate(limit=2) == 2
    _mask(root / "masks/img0.png", _fill([7]))
    (root / "images/img3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError) as e:
        ds.validate()
    msg = str(e.value)
    assert "2 of 5 items are bad" in msg and "img0.png: label values 7" in msg and "img3.png: cannot read" in msg
    assert ds.validate(limit=0) == 0


# ----------------------------------------------------------------------------------------------- the specs
def test_describe_spec_checks_the_string_only(tmp_path):
    s = describe_spec("cityscapes:/no/such/dir")
    assert s.layout == "cityscapes" and s.root == Path("/no/such/dir") and s.num_classes == 19
    assert s.splits == ("train", "val") and "cityscapes at /no/such/dir" in str(s)
    assert describe_spec("synthetic").root is None and describe_spec(" Synthetic ").num_classes == 11
    f = describe_spec(f"folder:{tmp_path}")
    assert f.num_classes is None and f.class_names is None
    assert describe_spec("ade20k:~/data").root == Path.home() / "data"
    assert describe_spec("voc:C:/data/voc").root == Path("C:/data/voc")  # only the first ':' separates


@pytest.mark.parametrize("spec,needle", [
    ("cityscape:/data", "unknown layout 'cityscape' (did you mean cityscapes?)"),
    ("imagenet:/data", "unknown layout 'imagenet'"),
    ("cityscapes", "layout cityscapes needs a path"),
    ("camvid:  ", "layout camvid needs a path"),
    ("synthetic:/data", "synthetic takes no path"),
    ("", "is not allowed"),
])
def test_bad_specs_name_the_spec_and_the_valid_layouts(spec, needle):
    with pytest.raises(DatasetError) as e:
        describe_spec(spec)
    msg = str(e.value)
    assert needle in msg and repr(spec) in msg
    assert "synthetic, cityscapes:PATH, camvid:PATH, ade20k:PATH, voc:PATH, folder:PATH" in msg


def test_open_dataset_checks_split_and_options(tmp_path):
    root = _camvid(tmp_path / "cv")
    with pytest.raises(DatasetError, match=r"split 'training' does not exist; valid splits for camvid: train, "
                                           r"val, test"):
        open_dataset(f"camvid:{root}", "training")
    with pytest.raises(DatasetError, match=r"unknown option\(s\) seed; valid options for camvid: none"):
        open_dataset(f"camvid:{root}", "train", seed=1)
    with pytest.raises(DatasetError, match=r"unknown option\(s\) resolution; valid options for synthetic: size, "):
        open_dataset("synthetic", "train", resolution=(64, 64))
    assert isinstance(open_dataset("synthetic", "val", size=(16, 16)), SyntheticDataset)
