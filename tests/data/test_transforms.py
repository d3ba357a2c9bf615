import pytest
import torch

from nasseg.data import IMAGENET_MEAN, IMAGENET_STD, ProxyTransform, normalize
from nasseg.errors import ConfigError

PALETTE = torch.tensor([[200, 10, 10], [10, 200, 10], [10, 10, 200], [240, 240, 0], [0, 120, 240]],
                       dtype=torch.uint8)


def _blocky(h, w, seed=0, block=8):
    """Labels in 0..4 made of block x block squares, and the image that paints them with PALETTE."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 5, (-(-h // block), -(-w // block)), generator=g)
    label = small.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w].contiguous()
    label[0, 0] = 255  # an ignored pixel must stay ignored
    image = PALETTE[label.clamp(max=4)].permute(2, 0, 1).contiguous()
    return image, label


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("in_size", [(64, 128), (37, 53), (200, 90), (16, 16)])
@pytest.mark.parametrize("train", [True, False])
def test_shapes_dtypes_and_label_values(in_size, train):
    t = ProxyTransform((48, 96), train=train)
    image, label = _blocky(*in_size)
    for seed in range(4):
        img, lab = t(image, label, _gen(seed))
        assert img.shape == (3, 48, 96) and img.dtype == torch.float32
        assert lab.shape == (48, 96) and lab.dtype == torch.int64
        assert set(lab.unique().tolist()) <= {0, 1, 2, 3, 4, 255}


def test_batches_give_the_same_as_items_in_turn():
    t = ProxyTransform((32, 64))
    pairs = [_blocky(40, 80, seed=s) for s in range(3)]
    images, labels = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    bi, bl = t(images, labels, _gen(5))
    assert bi.shape == (3, 3, 32, 64) and bl.shape == (3, 32, 64)
    g = _gen(5)
    for k, (im, lb) in enumerate(pairs):
        oi, ol = t(im, lb, g)
        assert torch.equal(oi, bi[k]) and torch.equal(ol, bl[k])
    ei, el = ProxyTransform((32, 64), train=False)(images, labels)
    assert ei.shape == (3, 3, 32, 64) and el.shape == (3, 32, 64)


def test_seeded_generator_is_deterministic():
    t = ProxyTransform((48, 96))
    image, label = _blocky(70, 150)
    a, b = t(image, label, _gen(11)), t(image, label, _gen(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outs = {t(image, label, _gen(s))[1].sum().item() for s in range(8)}
    assert len(outs) > 1  # different seeds, different crops
    torch.manual_seed(3)
    c = t(image, label)
    torch.manual_seed(3)
    d = t(image, label)
    assert torch.equal(c[0], d[0])  # without a generator: torch's global one


@pytest.mark.parametrize("scale", [(1.0, 1.0), (2.0, 2.0), (0.5, 0.5), (0.5, 2.0)])
def test_image_and_label_stay_aligned_through_crop_pad_and_flip(scale):
    """Every labelled output pixel inside a block still has its block's colour (after normalisation)."""
    t = ProxyTransform((64, 128), scale=scale)
    image, label = _blocky(64, 128, block=16)
    expect = normalize(PALETTE.T[:, :, None])[:, :, 0].T  # [5, 3] normalised palette
    for seed in range(6):
        img, lab = t(image, label, _gen(seed))
        inner = (lab != 255)
        # a pixel whose 3x3 neighbourhood has one label is away from block edges (no bilinear mixing)
        padded = torch.nn.functional.pad(lab[None, None].float(), (1, 1, 1, 1), mode="replicate")
        nb = padded.unfold(2, 3, 1).unfold(3, 3, 1).reshape(64, 128, 9)
        inner &= (nb == lab[:, :, None]).all(-1)
        assert inner.sum() > 100
        got = img.permute(1, 2, 0)[inner]
        assert torch.allclose(got, expect[lab[inner]], atol=1e-4)


def test_flip_mirrors_image_and_label_together():
    image, label = _blocky(48, 96)
    flips = 0
    for seed in range(12):
        a = ProxyTransform((48, 96), scale=(1, 1.5), flip=True)(image, label, _gen(seed))
        b = ProxyTransform((48, 96), scale=(1, 1.5), flip=False)(image, label, _gen(seed))
        if torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]):
            continue
        assert torch.equal(a[1], b[1].flip(-1)) and torch.equal(a[0], b[0].flip(-1))
        flips += 1
    assert 2 <= flips <= 10


def test_small_images_are_padded_with_ignore_and_mean():
    t = ProxyTransform((64, 128), scale=(0.5, 0.5), flip=False)
    image, label = _blocky(64, 128)
    img, lab = t(image, label, _gen(0))
    labelled = lab != 255
    assert labelled.sum() == 32 * 64  # the half-size content, the rest padding
    assert (img[:, ~labelled] == 0).all()  # 0 after normalisation is the mean colour


def test_eval_resizes_to_size_with_nearest_labels():
    t = ProxyTransform((32, 64), train=False)
    image, label = _blocky(64, 128, block=2)
    img, lab = t(image, label)
    assert img.shape == (3, 32, 64) and lab.shape == (32, 64)
    assert torch.equal(lab, label[1::2, 1::2])  # nearest-exact: output pixel i samples source pixel 2i + 1
    same = ProxyTransform((64, 128), train=False)(image, label)
    assert torch.equal(same[1], label) and torch.equal(same[0], normalize(image))
    only_image, none = t(image)
    assert none is None and torch.equal(only_image, img)


def test_normalize():
    x = torch.full((2, 3, 4, 5), 255, dtype=torch.uint8)
    out = normalize(x)
    for c in range(3):
        assert torch.allclose(out[:, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


@pytest.mark.parametrize("kwargs,needle", [
    ({"size": (0, 10)}, "size"),
    ({"size": 128}, "size"),
    ({"scale": (2.0, 1.0)}, "scale"),
    ({"scale": (0.0, 1.0)}, "scale"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        ProxyTransform(**kwargs)


def test_bad_inputs():
    t = ProxyTransform((16, 16))
    image, label = _blocky(20, 20)
    with pytest.raises(ValueError, match="label shape"):
        t(image, label[:10])
    with pytest.raises(ValueError, match="needs a label"):
        t(image)
    with pytest.raises(ValueError, match=r"expected an image \[3, h, w\]"):
        t(image[:2], label)


@pytest.mark.parametrize("train", [True, False])
def test_uint8_output_normalises_to_the_float_output(train):
    image, label = _blocky(50, 90)
    kw = dict(size=(32, 64), scale=(0.5, 1.0), train=train)
    f_img, f_lab = ProxyTransform(**kw)(image, label, _gen(4))
    u_img, u_lab = ProxyTransform(**kw, normalize=False)(image, label, _gen(4))
    assert u_img.dtype == torch.uint8 and torch.equal(u_lab, f_lab)
    assert (normalize(u_img) - f_img).abs().max() < 0.5 / 255 / min(IMAGENET_STD) + 1e-5  # rounding only
