import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg.data import SyntheticDataset
from nasseg.errors import ConfigError, NassegError
from nasseg.train import (
    Metrics,
    Recipe,
    TrainingDiverged,
    _Criterion,
    class_weights,
    evaluate,
    miou_from_confusion,
    ohem_cross_entropy,
    proxy_train,
    train_model,
)


class ToySet(torch.utils.data.Dataset):
    """Images whose red channel says the class of each 4x4 cell: learnable in a few dozen steps."""

    num_classes, ignore_index, class_names = 3, 255, ("a", "b", "c")

    def __init__(self, length: int, size=(16, 16), seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        h, w = size
        cells = torch.randint(0, 3, (length, h // 4, w // 4), generator=g)
        self.labels = cells.repeat_interleave(4, 1).repeat_interleave(4, 2)
        noise = torch.randint(0, 40, (length, 3, h, w), generator=g)
        self.images = (noise + (self.labels * 100).unsqueeze(1) * torch.tensor([1, 0, 0]).view(1, 3, 1, 1)).to(
            torch.uint8
        )
        self.labels[:, 0, 0] = 255  # one ignored pixel per image

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


class TinyNet(nn.Module):
    def __init__(self, num_classes=3, aux=True):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.cls = nn.Conv2d(8, num_classes, 1)
        self.aux = nn.Conv2d(8, num_classes, 1) if aux else None

    def forward(self, x):
        y = self.body(x)
        out = self.cls(y)
        if not self.training:
            return out
        return {"out": out, "aux": [self.aux(y)] if self.aux is not None else [], "detail": None, "boundary": None}


def _recipe(**kw):
    base = dict(resolution=(16, 16), batch_size=4, steps=12, lr=0.05, eval_every=4, log_every=2, loss="ce",
                num_workers=0)
    return Recipe(**{**base, **kw})


def _run(seed=0, **kw):
    torch.manual_seed(seed)
    model = TinyNet()
    return train_model(model, _recipe(**kw), ToySet(32), ToySet(8, seed=1), seed)


# ------------------------------------------------------------------------------------------------ recipe
def test_recipe_round_trip_and_stable_id():
    r = _recipe(lr=1, scale=(1, 2))
    assert r.lr == 1.0 and isinstance(r.lr, float) and r.scale == (1.0, 2.0)
    d = json.loads(json.dumps(r.to_dict()))
    assert list(d) == sorted(d)
    assert Recipe.from_dict(d) == r and Recipe.from_dict(d).recipe_id == r.recipe_id
    assert len(r.recipe_id) == 12 and r.recipe_id != _recipe(lr=0.5).recipe_id
    assert _recipe(lr=1).recipe_id == _recipe(lr=1.0).recipe_id


@pytest.mark.parametrize("kw,needle", [
    ({"lr": 0}, "> 0.0"),
    ({"lr": float("nan")}, "a number"),
    ({"batch_size": 0}, ">= 1"),
    ({"batch_size": 2.0}, "an integer"),
    ({"optimizer": "adam"}, "'sgd', 'adamw'"),
    ({"schedule": "step"}, "'poly', 'cosine'"),
    ({"loss": "dice"}, "'ce', 'ohem', 'wce'"),
    ({"ohem_thresh": 1.5}, "<= 1.0"),
    ({"ohem_min_kept": 0}, "> 0.0"),
    ({"resolution": (16,)}, "a pair"),
    ({"scale": (2.0, 1.0)}, "min <= max"),
    ({"amp": 1}, "true or false"),
    ({"eval_batches": 0}, "null (none) or an integer >= 1"),
    ({"warmup_steps": 12}, "fewer than steps"),
])
def test_recipe_validation_names_field_and_range(kw, needle):
    with pytest.raises(ConfigError) as e:
        _recipe(**kw)
    msg = str(e.value)
    assert f"'{next(iter(kw))}'" in msg and needle in msg


def test_recipe_from_dict_rejects_unknown_field():
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        Recipe.from_dict({"step": 3})


# ----------------------------------------------------------------------------------------------- metrics
def test_miou_from_confusion_by_hand():
    # rows: truth, columns: prediction; class 2 appears nowhere -> NaN, left out of the mean
    cm = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    miou, per_class, acc = miou_from_confusion(cm)
    iou0, iou1 = 3 / (3 + 1 + 2), 4 / (4 + 2 + 1)
    assert per_class[0] == pytest.approx(iou0) and per_class[1] == pytest.approx(iou1)
    assert math.isnan(per_class[2])
    assert miou == pytest.approx((iou0 + iou1) / 2) and acc == pytest.approx(7 / 10)


def test_evaluate_accumulates_one_confusion_over_the_split():
    class Fixed(nn.Module):  # predicts class 0 everywhere in the left half, class 1 in the right half
        def forward(self, x):
            n, _, h, w = x.shape
            logits = torch.zeros(n, 3, h, w)
            logits[:, 0, :, : w // 2] = 1
            logits[:, 1, :, w // 2 :] = 1
            return logits

    ds = ToySet(5)
    miou, per_class, acc, cm = evaluate(Fixed(), ds, batch_size=2)
    pred = torch.zeros(5, 16, 16, dtype=torch.long)
    pred[:, :, 8:] = 1
    valid = ds.labels != 255
    expected = torch.bincount(ds.labels[valid] * 3 + pred[valid], minlength=9).view(3, 3)
    assert torch.equal(cm, expected) and cm.sum() == 5 * 256 - 5
    assert (miou, per_class, acc) == miou_from_confusion(expected)


def test_metrics_round_trip_with_nan():
    m = Metrics(0.5, (0.5, math.nan), 0.9, ((2, 1.0),), ((4, 0.5),), 1.0, 8.0, 4, "cpu", 0, "completed")
    d = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    back = Metrics.from_dict(d)
    assert back.per_class_iou[0] == 0.5 and math.isnan(back.per_class_iou[1])
    assert back.to_dict() == m.to_dict()


# ------------------------------------------------------------------------------------------------ losses
def test_ohem_keeps_at_least_min_kept_pixels():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0, :4] = 255
    # confident and right everywhere: no pixel is above the threshold, so exactly the hardest min_kept are kept
    logits = F.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 10 + torch.rand(2, 3, 8, 8)
    pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")[labels != 255]
    assert (pixel < -math.log(0.7)).all()
    n_valid = pixel.numel()
    n_min = math.ceil(n_valid * 0.1)
    loss = ohem_cross_entropy(logits, labels, thresh=0.7, min_kept=0.1)
    assert loss == pytest.approx(pixel.topk(n_min).values.mean().item(), rel=1e-5)
    # unsure everywhere: every valid pixel is above the threshold and all are kept (ignored ones never)
    flat = torch.zeros(2, 3, 8, 8)
    assert ohem_cross_entropy(flat, labels, min_kept=0.1) == pytest.approx(math.log(3), rel=1e-5)


# ---------------------------------------------------------------------------------------------- training
def test_same_seed_gives_identical_metrics():
    a, b = _run(seed=3), _run(seed=3)
    assert a.loss_curve == b.loss_curve and a.miou == b.miou and a.per_class_iou == b.per_class_iou
    assert a.eval_history == b.eval_history and a.status == "completed" and a.steps_done == 12
    assert [s for s, _ in a.loss_curve] == [2, 4, 6, 8, 10, 12] and [s for s, _ in a.eval_history] == [4, 8, 12]
    assert a.images_per_second > 0 and a.device == "cpu" and a.seed == 3
    assert a.loss_curve[-1][1] < a.loss_curve[0][1]
    assert _run(seed=4).loss_curve != a.loss_curve


def test_training_learns_the_toy_task():
    m = _run(steps=60, eval_every=0, log_every=10, loss="ohem")
    assert m.miou > 0.8 and len(m.per_class_iou) == 3 and m.pixel_acc > 0.9


def test_callback_stops_early():
    seen = []

    def callback(step, metrics):
        seen.append((step, metrics.status, metrics.miou))
        return step < 8

    m = train_model(TinyNet(), _recipe(eval_batches=1), ToySet(32), ToySet(8, seed=1), 0, callback=callback)
    assert m.status == "stopped" and m.steps_done == 8 and [s for s, *_ in seen] == [4, 8]
    assert m.miou == seen[-1][2] and m.eval_history[-1] == (8, m.miou)


def test_nan_loss_raises_training_diverged():
    class Exploding(TinyNet):
        def forward(self, x):
            out = super().forward(x)
            out["out"] = out["out"] * (math.inf if self.calls >= 2 else 1.0)
            self.calls += 1
            return out

    model = Exploding()
    model.calls = 0
    with pytest.raises(TrainingDiverged) as e:
        train_model(model, _recipe(), ToySet(32), ToySet(8, seed=1), 0)
    assert e.value.step == 3 and isinstance(e.value, NassegError) and "step 3" in str(e.value)


def test_dataloader_workers_path_is_repeatable():
    a, b = _run(steps=4, eval_every=0, num_workers=1), _run(steps=4, eval_every=0, num_workers=1)
    assert a.loss_curve == b.loss_curve and a.miou == b.miou


def test_deterministic_algorithms_setting_is_restored():
    before = torch.are_deterministic_algorithms_enabled()
    _run(steps=2, eval_every=0)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_batch_larger_than_train_set_raises():
    with pytest.raises(ConfigError, match="batch_size"):
        train_model(TinyNet(), _recipe(batch_size=8), ToySet(4), ToySet(4), 0)


class HeadsNet(TinyNet):
    """TinyNet with STDC-style detail and PIDNet-style boundary logits at 1/2 resolution."""

    def __init__(self):
        super().__init__(num_classes=SyntheticDataset.num_classes)
        self.detail = nn.Conv2d(8, 1, 1)
        self.boundary = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            y = F.avg_pool2d(self.body(x), 2)
            out["detail"], out["boundary"] = self.detail(y), self.boundary(y)
        return out


def test_synthetic_data_with_detail_and_boundary_heads():
    size = (32, 64)
    train, val = SyntheticDataset("train", size, 16, seed=1), SyntheticDataset("val", size, 8)
    recipe = _recipe(resolution=size, steps=6, eval_every=3, loss="ohem")

    def run():
        torch.manual_seed(0)
        return train_model(HeadsNet(), recipe, train, val, 0)

    a, b = run(), run()
    assert a.loss_curve == b.loss_curve and a.miou == b.miou and len(a.per_class_iou) == 11
    assert all(math.isfinite(v) for _, v in a.loss_curve)


def test_criterion_adds_each_head_term():
    labels = SyntheticDataset("train", (32, 64), 2).batch([0, 1])[1]
    out = {"out": torch.randn(2, 11, 32, 64), "aux": [], "detail": torch.randn(2, 1, 16, 32),
           "boundary": torch.randn(2, 1, 16, 32)}
    def total(**w):
        return _Criterion(_recipe(**w), 255, torch.device("cpu"))(out, labels).item()

    plain = total(detail_weight=0, boundary_weight=0, bas_weight=0)
    assert plain == pytest.approx(F.cross_entropy(out["out"], labels, ignore_index=255).item())
    assert total(boundary_weight=0, bas_weight=0) > plain
    assert total(detail_weight=0, bas_weight=0) > plain
    assert total(detail_weight=0, boundary_weight=0) > plain


def test_resolution_must_match_batch_rendered_data():
    with pytest.raises(ConfigError, match="resolution"):
        train_model(TinyNet(11), _recipe(resolution=(32, 32)), SyntheticDataset("train", (32, 64), 8),
                    SyntheticDataset("val", (32, 64), 4), 0)


def test_proxy_train_builds_and_trains_a_genome():
    from nasseg import presets

    recipe = Recipe(resolution=(32, 64), batch_size=2, steps=2, train_length=4, val_length=2, num_workers=0)
    genome = presets.get("stdc1_seg").genome  # main, two auxiliary and a detail output
    a = proxy_train(genome, recipe, "synthetic", seed=5)
    b = proxy_train(genome, recipe, seed=5)
    same_timing = dataclasses.replace(b, train_seconds=a.train_seconds, images_per_second=a.images_per_second)
    assert a.to_dict() == same_timing.to_dict()  # to_dict: NaN (a class seen nowhere) becomes None
    assert a.status == "completed" and a.steps_done == 2 and len(a.per_class_iou) == 11


def test_classifier_output_is_refused():
    class Classifier(nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    with pytest.raises(NassegError, match=r"\[N, C, H, W\]"):
        train_model(Classifier(), _recipe(), ToySet(8), ToySet(4), 0)


def test_progress_bar_only_when_asked(capsys):
    train_model(TinyNet(), _recipe(steps=4), ToySet(8), ToySet(4), 0)
    assert capsys.readouterr() == ("", "")
    train_model(TinyNet(), _recipe(steps=4), ToySet(8), ToySet(4), 0, progress=True)
    assert "4/4" in capsys.readouterr().out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last_training():
    m = train_model(TinyNet(), _recipe(amp=True, channels_last=True, steps=20), ToySet(32), ToySet(8, seed=1), 0,
                    device="cuda")
    assert m.device.startswith("cuda") and math.isfinite(m.miou)


# ------------------------------------------------------------------------------------ class-weighted loss
class CountSet(torch.utils.data.Dataset):
    """Labels with known class shares: 4 classes, one ignored pixel, a class (3) never present."""

    num_classes, ignore_index = 5, 255

    def __init__(self, pixels_of_class: dict[int, int], length: int = 3):
        flat = torch.cat([torch.full((n,), c) for c, n in pixels_of_class.items()] + [torch.tensor([255])])
        side = int(math.isqrt(len(flat)))
        assert side * side == len(flat)
        self.label = flat.view(side, side)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return torch.zeros(3, *self.label.shape, dtype=torch.uint8), self.label


def test_class_weights_are_median_frequency_with_a_floor_of_one():
    # 63 labelled pixels (and one ignored): shares 32, 16, 4, 0 and 11 / 63; the median over the present
    # classes is the lower middle, 11 / 63
    ds = CountSet({0: 32, 1: 16, 2: 4, 4: 11}, length=3)  # 63 + 1 ignored = 64 = 8 x 8
    w = class_weights(ds, (8, 8), 255)
    f = torch.tensor([32, 16, 4, 0, 11], dtype=torch.float64) / 63
    median = torch.tensor([32, 16, 4, 11], dtype=torch.float64).div(63).median()  # lower middle: 11/63
    expect = (median / f.clamp(min=1e-12)).clamp(1, 10)
    expect[3] = 1.0  # absent
    assert torch.allclose(w.double(), expect, atol=1e-6)
    assert w[0] == 1 and w[1] == 1 and w[2] == pytest.approx(11 / 4) and w[3] == 1 and w[4] == 1
    # labels are resized by nearest neighbour to the training size first: the same shares at 16 x 16
    assert torch.allclose(class_weights(ds, (16, 16), 255), w)


def test_class_weights_are_capped_and_the_wce_loss_uses_them():
    ds = CountSet({0: 62, 1: 1}, length=1)  # 63 + 1 ignored; class 1 is 62x rarer than the median (lower middle)
    w = class_weights(ds, (8, 8), 255)
    assert w[1] == 1.0 and w[0] == 1.0  # median of [62/63, 1/63] is the lower one: class 1 itself
    ds = CountSet({0: 60, 1: 1, 2: 1, 4: 1}, length=1)
    w = class_weights(ds, (8, 8), 255)
    assert w[0] == 1.0 and w[1] == w[2] == w[4] == 1.0
    ds = CountSet({0: 40, 1: 20, 2: 2, 4: 1}, length=1)  # median 2/63: class 4 gets 2, class 0 and 1 stay 1
    w = class_weights(ds, (8, 8), 255)
    assert w.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 2.0])
    capped = class_weights(CountSet({0: 21, 1: 21, 2: 20, 4: 1}, length=1), (8, 8), 255)  # 20x rarer: capped
    assert capped.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 10.0])
    logits, labels = torch.randn(2, 5, 8, 8), ds[0][1].expand(2, 8, 8).clone()
    crit = _Criterion(_recipe(loss="wce"), 255, torch.device("cpu"), w)
    assert crit.segmentation(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels, weight=w, ignore_index=255).item())
    plain = _Criterion(_recipe(loss="ce"), 255, torch.device("cpu"), w)  # weights only under "wce"
    assert plain.segmentation(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels, ignore_index=255).item())


def test_synthetic_class_weights_lift_the_thin_and_context_classes_only():
    from nasseg.data.synthetic import BACKGROUND, CONTEXT_CLASSES, FIELD, FOREST, VEHICLE

    w = class_weights(SyntheticDataset("train", (64, 128), 256, 0), (64, 128))
    assert all(w[c] == 1.0 for c in (BACKGROUND, FIELD, FOREST, VEHICLE))
    assert all(2.0 <= w[c] <= 10.0 for c in CONTEXT_CLASSES)


def test_wce_recipe_trains_and_is_deterministic():
    a, b = _run(loss="wce"), _run(loss="wce")
    assert a.loss_curve == b.loss_curve and a.per_class_iou == b.per_class_iou and math.isfinite(a.miou)
    assert a.loss_curve != _run(loss="ce").loss_curve
    assert _recipe(loss="wce").recipe_id != _recipe(loss="ce").recipe_id
