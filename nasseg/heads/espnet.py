"""ESPNet's light-weight RUM decoder and the ESPNet-C classifier (Mehta et al., ECCV 2018).

Official code: sacmehta/ESPNet ``train/Model.py``, classes ``ESPNet`` (decoder) and ``ESPNet_Encoder``
(ESPNet-C).  The encoder taps they read are, for the paper's network:

* level 1: concat(CBR 3x3 s2 3->16, image/2) -> BR, 19 channels at 1/2;
* level 2: concat(last ESP(64), first strided ESP output, image/4) -> BR, 131 channels at 1/4;
* level 3: concat(strided ESP(128) output, last ESP(128)) -> BR, 256 channels at 1/8.

The ``espnet`` preset concatenates in these orders (its level-3 stage sets ``first_leads``).  Checkpoints of
``train/Model.py``'s ``ESPNet(classes, 2, 8)`` import into it with ``nasseg weights import espnet``
(``nasseg.weights``; ``encoder.classifier`` becomes this decoder's ``classifier_l3``), e.g. the released
``pretrained/decoder/espnet_p_2_q_8_camvid.pth``.  The released Cityscapes ``espnet_p_2_q_*.pth`` were written
by ``test/Model.py``, whose last CBR reads the level-1 conv output before the image concatenation (16 + C
input channels, not 19 + C): they do not fit this decoder, and the import says so.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.blocks.espnet import ESP, ESP_BN_EPS
from nasseg.errors import ConfigError
from nasseg.layers import BNAct, ConvBNAct
from nasseg.registry import register

_ESP_BRANCHES = 5  # the decoder's ESP is the paper's K = 5 module


def _crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop a 2x transposed-conv output to ``ref``'s size.

    Every ESPNet down-sampling maps n to ceil(n / 2), so 2 * ceil(n / 2) exceeds n by at most one row or
    column, which is cut off at the bottom/right.  The official code only runs on sizes divisible by 8.
    """
    h, w = ref.shape[-2:]
    return x[..., :h, :w]


def _up2(channels: int) -> nn.ConvTranspose2d:
    """ESPNet's RUM up-sampling: a 2x2 stride-2 transposed conv without bias."""
    return nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=False)


def _check_taps(name: str, in_channels: tuple[int, ...], count: int | None) -> None:
    if count is not None and len(in_channels) != count:
        raise ConfigError(
            f"decoder '{name}': in_channels = {tuple(in_channels)!r} has {len(in_channels)} taps; it needs "
            f"exactly {count} (ESPNet levels 1, 2, 3 at strides 2, 4, 8)"
        )
    if not in_channels:
        raise ConfigError(f"decoder '{name}': in_channels is empty; it needs at least the deepest tap")


@register(
    "espnet_decoder",
    kind="decoder",
    examples=[{"in_channels": (19, 131, 256), "num_classes": 20, "tap_strides": (2, 4, 8)}],
)
class ESPNetDecoder(nn.Module):
    """ESPNet's RUM-based decoder (Mehta et al., ECCV 2018; official class ``ESPNet``).

    Taps (shallow -> deep) ``f1`` (1/2), ``f2`` (1/4), ``f3`` (1/8); with C = ``num_classes``:
    1. f3 -> 1x1 conv -> C (no bias; ESPNet-C's classifier) -> BN -> 2x2 s2 transposed conv (RUM)  [1/4]
    2. f2 -> 1x1 conv -> C (no bias); concat(it, step 1) -> BR(2C) -> ESP(2C -> C, no residual)
       -> 2x2 s2 transposed conv -> BR(C)  [1/2]
    3. concat(step 2, f1) -> CBR 3x3 (C + c1 -> C)  [1/2]
    4. 2x2 s2 transposed conv -> logits  [2x the f1 tap, i.e. full resolution]
    BN eps 1e-3 and PReLU throughout, as in the official code.  The official network counts the ignore
    label as a 20th class on Cityscapes; this decoder takes ``num_classes`` as given.

    Divergences from the official code: the 1x1 conv of step 1 belongs to the encoder there (ESPNet-C's
    classifier, reused by the decoder) and to this decoder here, so for 20 classes this decoder holds
    20,780 parameters = the official decoder's 15,660 + the classifier's 5,120.  Inputs whose size is not
    divisible by 8 work here (up-sampled maps are cropped to the skip's size); the logits come out at
    2x the 1/2 tap, i.e. the image size rounded up to even.
    """

    emits_logits = True

    def __init__(self, in_channels: tuple[int, ...], num_classes: int):
        super().__init__()
        in_channels = tuple(in_channels)
        _check_taps("espnet_decoder", in_channels, 3)
        if num_classes < _ESP_BRANCHES:
            raise ConfigError(
                f"decoder 'espnet_decoder': num_classes = {num_classes} is too few; its ESP module splits C "
                f"channels into {_ESP_BRANCHES} branches, so num_classes must be >= {_ESP_BRANCHES}"
            )
        c1, c2, c3 = in_channels
        c = num_classes
        self.in_channels, self.out_channels = in_channels, num_classes

        # level 3 (1/8): classify, BN, RUM up to 1/4
        self.classifier_l3 = nn.Conv2d(c3, c, 1, bias=False)
        self.bn_l3 = nn.BatchNorm2d(c, eps=ESP_BN_EPS)
        self.up_l3 = _up2(c)
        # level 2 (1/4): project, merge with level 3, ESP, RUM up to 1/2
        self.proj_l2 = nn.Conv2d(c2, c, 1, bias=False)
        self.br_l2 = BNAct(2 * c, act="prelu", bn_eps=ESP_BN_EPS)
        self.esp_l2 = ESP(2 * c, c, 1, branches=_ESP_BRANCHES, hff=True, residual=False)
        self.up_l2 = _up2(c)
        self.br_up_l2 = BNAct(c, act="prelu", bn_eps=ESP_BN_EPS)
        # level 1 (1/2): merge with the level-1 concat, CBR 3x3, up to full resolution
        self.fuse_l1 = ConvBNAct(c + c1, c, 3, act="prelu", bn_eps=ESP_BN_EPS)
        self.up_l1 = _up2(c)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        # 1. ESPNet-C classifier on the deepest tap, then RUM to 1/4
        y = _crop_to(self.up_l3(self.bn_l3(self.classifier_l3(f3))), f2)
        # 2. concat with the projected level-2 tap (official order: projection first), ESP, RUM to 1/2
        y = torch.cat([self.proj_l2(f2), y], 1)
        y = self.br_up_l2(_crop_to(self.up_l2(self.esp_l2(self.br_l2(y))), f1))
        # 3. concat with the level-1 tap, CBR
        y = self.fuse_l1(torch.cat([y, f1], 1))
        # 4. up to full resolution
        return self.up_l1(y)


@register(
    "espnet_c_decoder",
    kind="decoder",
    examples=[
        {"in_channels": (19, 131, 256), "num_classes": 20, "tap_strides": (2, 4, 8)},
        {"in_channels": (256,), "num_classes": 3, "tap_strides": (8,)},
    ],
)
class ESPNetCDecoder(nn.Module):
    """ESPNet-C's classifier (Mehta et al., ECCV 2018; official ``ESPNet_Encoder``).

    A 1x1 conv without bias from the deepest tap to ``num_classes``; the logits stay at that tap's
    resolution (1/8 for ESPNet-C), to be up-sampled by whoever compares them with the labels.  Shallower
    taps, if given, are ignored.  Identical to the official classifier (256 * C parameters).
    """

    emits_logits = True

    def __init__(self, in_channels: tuple[int, ...], num_classes: int):
        super().__init__()
        in_channels = tuple(in_channels)
        _check_taps("espnet_c_decoder", in_channels, None)
        self.in_channels, self.out_channels = in_channels, num_classes
        self.classifier = nn.Conv2d(in_channels[-1], num_classes, 1, bias=False)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(feats[-1])
