import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasseg.data import SyntheticDataset, normalize, open_dataset, synthetic_batch
from nasseg.data import synthetic as syn
from nasseg.errors import DatasetError


@pytest.fixture(scope="module")
def train_items():
    ds = SyntheticDataset("train", size=(128, 256), seed=0)
    return [ds[i] for i in range(40)]


def test_items_are_pure_functions_of_seed_split_index():
    a, b = SyntheticDataset("train", seed=3), SyntheticDataset("train", seed=3, length=5)
    for i in (0, 4, 2):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    img, lab = a[4]
    assert img.dtype == torch.uint8 and img.shape == (3, 128, 256)
    assert lab.dtype == torch.int64 and lab.shape == (128, 256)
    other = SyntheticDataset("train", seed=4)[4]
    assert not torch.equal(other[0], img)
    assert not torch.equal(SyntheticDataset("val", seed=3)[4][0], img)  # splits never share a scene


def test_validation_split_ignores_the_seed():
    for i in (0, 7):
        v0, v9 = SyntheticDataset("val", seed=0)[i], SyntheticDataset("val", seed=9)[i]
        assert torch.equal(v0[0], v9[0]) and torch.equal(v0[1], v9[1])
    assert len(SyntheticDataset("val")) == syn.DEFAULT_LENGTH["val"]


def test_batch_matches_items_whatever_the_batch_holds():
    ds = SyntheticDataset("train", size=(48, 80), seed=1, length=6000)
    idx = [5, 0, 5000]
    images, labels = synthetic_batch(idx, "train", (48, 80), 1, "cpu", normalize=False)
    assert images.dtype == torch.float32 and images.shape == (3, 3, 48, 80)
    for k, i in enumerate(idx):
        img, lab = ds[i]
        assert torch.equal(images[k], img.float()) and torch.equal(labels[k], lab)
    normed, labels2 = ds.batch(idx[:2])
    assert torch.equal(normed, normalize(torch.stack([ds[5][0], ds[0][0]])))
    assert torch.equal(labels2, labels[:2])


def test_batched_renderer_equals_one_image_at_a_time():
    """The batched painter (what synthetic_batch runs on an accelerator) gives each image unchanged."""
    size = (40, 72)
    scenes = [syn._sample_scene(0, "train", i, *size) for i in range(6)]
    images, labels = syn._render(scenes, *size, torch.device("cpu"))
    for k, scene in enumerate(scenes):
        img, lab = syn._render([scene], *size, torch.device("cpu"))
        assert torch.equal(images[k], img[0]) and torch.equal(labels[k], lab[0])


@pytest.mark.parametrize("size", [(16, 16), (17, 33), (65, 64), (128, 256), (31, 200), (200, 40)])
def test_any_size_odd_or_even(size):
    img, lab = SyntheticDataset("train", size=size)[1]
    assert img.shape == (3, *size) and lab.shape == size
    assert 0 <= int(lab.min()) and int(lab.max()) < syn.NUM_CLASSES


def test_class_coverage(train_items):
    counts = np.bincount(torch.stack([lab for _, lab in train_items]).flatten().numpy(), minlength=syn.NUM_CLASSES)
    assert len(counts) == syn.NUM_CLASSES and (counts > 0).all(), counts
    present = [set(np.unique(lab.numpy())) for _, lab in train_items]
    for c in range(syn.NUM_CLASSES):  # every class in a good share of images, not once by luck
        assert sum(c in p for p in present) >= 8, (syn.CLASS_NAMES[c], sum(c in p for p in present))


def _runs(row: np.ndarray) -> np.ndarray:
    d = np.diff(np.r_[0, row.astype(np.int8), 0])
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def test_thin_structures_are_thin(train_items):
    widths = np.concatenate([_runs(row) for _, lab in train_items for row in (lab == syn.POLE).numpy()[::8]])
    assert widths.min() == 1 and np.mean(widths <= 3) > 0.9  # 1-3 px poles (adjacent ones may touch)
    wire_rows = [(lab == syn.WIRE).numpy() for _, lab in train_items]
    col_runs = np.concatenate([_runs(col) for m in wire_rows for col in m.T[::8]])
    assert col_runs.min() == 1 and np.median(col_runs) <= 2


def test_beacons_decide_the_token_class_and_tokens_are_far_from_them(train_items):
    bw = round(256 / 16)
    for img, lab in train_items:
        assert (lab[:, :bw] == syn.BEACON).all() and (lab[:, -bw:] == syn.BEACON).all()
        warm, cold = bool((lab == syn.TOKEN_WARM).any()), bool((lab == syn.TOKEN_COLD).any())
        assert warm != cold  # every image has tokens, all of one class
        beacon = img[:, lab == syn.BEACON].float().mean(1)
        assert (beacon[0] > beacon[2]) == warm  # orange beacons: red > blue; cyan: blue > red
        xs = torch.nonzero((lab == syn.TOKEN_WARM) | (lab == syn.TOKEN_COLD))[:, 1]
        assert xs.min() >= 256 // 4 and xs.max() < 3 * 256 // 4


def test_patch_class_follows_the_surrounding_region(train_items):
    seen = set()
    for _, lab in train_items:
        for cls, other_region in ((syn.PATCH_FIELD, syn.FOREST), (syn.PATCH_FOREST, syn.FIELD)):
            mask = (lab == cls).float()[None, None]
            if not mask.any():
                continue
            seen.add(cls)
            ring = (F.max_pool2d(mask, 7, 1, 3)[0, 0] > 0) & (lab != cls)
            assert not (lab[ring] == other_region).any()
    assert seen == {syn.PATCH_FIELD, syn.PATCH_FOREST}


def _colour_classifier_accuracy(train_items, test_items):
    """Nearest class-mean colour per pixel: per-class pixel accuracy on ``test_items``."""
    imgs = torch.stack([im for im, _ in train_items]).permute(0, 2, 3, 1).reshape(-1, 3).float()
    labs = torch.stack([lb for _, lb in train_items]).reshape(-1)
    means = torch.stack([imgs[labs == c].mean(0) for c in range(syn.NUM_CLASSES)])
    x = torch.stack([im for im, _ in test_items]).permute(0, 2, 3, 1).reshape(-1, 3).float()
    y = torch.stack([lb for _, lb in test_items]).reshape(-1)
    pred = torch.cdist(x, means).argmin(1)
    return {c: float((pred[y == c] == c).float().mean()) for c in range(syn.NUM_CLASSES)}, means, pred, y


def test_context_classes_defeat_a_per_pixel_colour_classifier(train_items):
    val = SyntheticDataset("val")
    acc, means, pred, y = _colour_classifier_accuracy(train_items, [val[i] for i in range(24)])
    # the pairs share their appearance: equal mean colours ...
    assert (means[syn.TOKEN_WARM] - means[syn.TOKEN_COLD]).abs().max() < 15
    assert (means[syn.PATCH_FIELD] - means[syn.PATCH_FOREST]).abs().max() < 15
    assert (means[syn.FIELD] - means[syn.FOREST]).abs().max() < 15
    # ... so the colour classifier is at best chance between the two classes of a pair
    for a, b in ((syn.TOKEN_WARM, syn.TOKEN_COLD), (syn.PATCH_FIELD, syn.PATCH_FOREST)):
        in_pair = (y == a) | (y == b)
        right = (pred[in_pair] == y[in_pair]).float().mean()
        assert right < 0.65, (syn.CLASS_NAMES[a], float(right))
    context = torch.isin(y, torch.tensor(syn.CONTEXT_CLASSES))
    assert float((pred[context] == y[context]).float().mean()) < 0.6
    # while colour alone does solve the classes that are meant to be easy (beacons are two colours, so
    # one mean colour does not describe them)
    assert acc[syn.POLE] > 0.8 and acc[syn.VEHICLE] > 0.8


def test_open_dataset_synthetic_options():
    ds = open_dataset("synthetic", "train", size=(32, 48), length=7, seed=2)
    assert isinstance(ds, SyntheticDataset) and len(ds) == 7 and ds[6][0].shape == (3, 32, 48)
    assert ds.num_classes == 11 and ds.class_names[9] == "token_warm" and ds.ignore_index == 255
    assert ds.name == "synthetic" and ds.validate() == 7
    with pytest.raises(IndexError):
        ds[7]


@pytest.mark.parametrize("kwargs,needle", [
    ({"size": (8, 64)}, "size"),
    ({"size": (32.5, 64)}, "size"),
    ({"split": "test"}, "valid splits: train, val"),
    ({"seed": -1}, "seed"),
    ({"length": 0}, "length"),
])
def test_bad_arguments(kwargs, needle):
    args = {"split": "train", **kwargs}
    with pytest.raises(DatasetError, match=needle):
        SyntheticDataset(**args)


def test_bad_batch_indices():
    with pytest.raises(DatasetError, match="negative"):
        synthetic_batch([0, -1])
    with pytest.raises(DatasetError, match="no indices"):
        synthetic_batch([])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_equals_cpu():
    idx = list(range(16))
    ci, cl = syn.render_synthetic(idx, "val", (96, 160), 0, "cpu")
    gi, gl = syn.render_synthetic(idx, "val", (96, 160), 0, "cuda")
    assert torch.equal(cl, gl.cpu())
    assert (ci.int() - gi.cpu().int()).abs().max() <= 1
