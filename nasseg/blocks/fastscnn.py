"""Fast-SCNN's learning-to-downsample module (Poudel, Liwicki and Cipolla, "Fast-SCNN: Fast Semantic Segmentation
Network", BMVC 2019, arXiv 1902.04502, Sec. 3.2.1 and Table 1) and the depthwise-separable conv it is built of.

There is no code from the paper's authors.  The reference is the widely used PyTorch re-implementation
Tramac/Fast-SCNN-pytorch ``models/fast_scnn.py`` (commit 0638517), classes ``LearningToDownsample`` and
``_DSConv``; the rest of Fast-SCNN lives in ``nasseg.context.fastscnn`` (pyramid pooling),
``nasseg.fusion.fastscnn`` (feature fusion module) and ``nasseg.heads.fastscnn`` (classifier); its global
feature extractor's bottlenecks are ``mbconv`` blocks with ``act=relu`` (``LinearBottleneck`` there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import ConfigError
from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register


class DSConv(nn.Module):
    """Depthwise-separable conv (Fast-SCNN ``DSConv``; Tramac ``_DSConv``): depthwise 3x3 (stride here, no bias)
    -> BN -> ReLU -> 1x1 conv in -> out (no bias) -> BN -> ReLU.  Submodules ``dw`` and ``pw`` (ConvBNAct)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pw = ConvBNAct(in_channels, out_channels, 1)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


# unit strides for each block stride: conv, dsconv1, dsconv2
_UNIT_STRIDES = {8: (2, 2, 2), 4: (2, 2, 1)}


@register(
    "ltd",
    kind="block",
    args=[
        Arg("channels", "ints", (32, 48), "widths of the stem conv and the first DSConv (Fast-SCNN: 32, 48)",
            low=1, high=1024, min_len=2, max_len=2),
        Arg("stem_padding", "str", "valid", "padding of the 3x3 stride-2 stem conv: 'valid' (none, as Tramac's "
            "re-implementation) or 'same' (1)", choices=("valid", "same")),
    ],
    examples=[
        {"in_channels": 3, "out_channels": 64, "stride": 8},
        {"in_channels": 3, "out_channels": 32, "stride": 8, "channels": (16, 24), "stem_padding": "same"},
        {"in_channels": 3, "out_channels": 48, "stride": 4},
        {"in_channels": 3, "out_channels": 96, "stride": 4, "channels": (24, 32), "stem_padding": "same"},
    ],
)
class LearningToDownsample(nn.Module):
    """Fast-SCNN's learning-to-downsample module (Poudel et al., BMVC 2019, Sec. 3.2.1, Table 1).

    1. 3x3 conv in -> c1, stride 2 (no bias) -> BN -> ReLU;
    2. DSConv c1 -> c2, stride 2;
    3. DSConv c2 -> out, stride 2 (stride 1 when the block's stride is 4);
    with (c1, c2) = ``channels`` = (32, 48) and out = 64 in Fast-SCNN; BN eps 1e-5, ReLU everywhere.

    There is no code from the paper's authors; the reference is Tramac/Fast-SCNN-pytorch
    (``LearningToDownsample(32, 48, 64)``, 6,640 parameters, equal to this block's).  Its stem conv has **no
    padding** (``_ConvBNReLU``'s default ``padding=0``), which ``stem_padding='valid'`` (the default) keeps,
    so that imported Tramac weights give Tramac's outputs; ``'same'`` pads by 1 (the paper does not say).

    Divergences: stride 4 (the last DSConv at stride 1) is an extension; the official module is 1/8 only.
    With ``'valid'`` an input side that is not a multiple of the stride is first padded at the bottom/right
    with zeros to the next multiple, so the output is ceil(H / s) x ceil(W / s) as every block's (the
    official module gives floor((H - 1) / 2) after the stem, which loses a row at 1/8 for such sides);
    for multiples of the stride nothing is padded and the output equals the official one.
    Submodules: ``conv`` (``conv``/``bn``/``act``), ``dsconv1``, ``dsconv2`` (each ``dw``, ``pw``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 8, *, channels: tuple[int, ...],
                 stem_padding: str):
        super().__init__()
        if stride not in _UNIT_STRIDES:
            raise ConfigError(f"block 'ltd': stride = {stride!r} is not allowed; allowed: 8 (Fast-SCNN), 4")
        c1, c2 = channels
        s1, s2, s3 = _UNIT_STRIDES[stride]
        self.valid = stem_padding == "valid"
        self.conv = ConvBNAct(in_channels, c1, 3, s1, padding=0 if self.valid else 1)
        self.dsconv1 = DSConv(c1, c2, s2)
        self.dsconv2 = DSConv(c2, out_channels, s3)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.valid:  # pad a side that is not a multiple of the stride (see the docstring)
            s = self.stride
            ph, pw = (-x.shape[-2]) % s, (-x.shape[-1]) % s
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph))
        return self.dsconv2(self.dsconv1(self.conv(x)))
