"""Fast-SCNN's pyramid pooling module (Poudel et al., "Fast-SCNN", BMVC 2019, Sec. 3.2.2, Table 1: "PPM" at the
end of the global feature extractor; after PSPNet, Zhao et al., CVPR 2017)."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import ConfigError
from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import register


@register("fastscnn_ppm", kind="context", examples=[
    {"in_channels": 128, "out_channels": 128},
    {"in_channels": 64, "out_channels": 96},
    {"in_channels": 6, "out_channels": 8},  # branch width 6 // 4 = 1
])
class FastSCNNPyramidPooling(nn.Module):
    """Fast-SCNN's pyramid pooling (BMVC 2019, Table 1), as Tramac/Fast-SCNN-pytorch's ``PyramidPooling``.

    There is no code from the paper's authors; the reference is Tramac/Fast-SCNN-pytorch ``models/fast_scnn.py``
    (commit 0638517).  For bins 1, 2, 3, 6: AdaptiveAvgPool(b) -> 1x1 conv in -> in // 4 (no bias) -> BN ->
    ReLU -> bilinear upsample (align_corners=True); concat **[input, branches]** -> **1x1** conv (no bias) ->
    BN -> ReLU to ``out_channels``.  ``PyramidPooling(128, 128)`` has 49,664 parameters, as this module.

    It differs from ``ppm`` (PSPNet, semseg) in its 1x1 (not 3x3) output conv and its branch width fixed at
    in // 4; a separate entry because ``ppm``'s argument table is pinned by stored genomes.
    Divergence: none for ``in_channels`` divisible by 4 (Tramac's ``int(in / 4)`` equals ``in // 4``).
    Like every module with a bin-1 branch, training needs a batch of at least 2.
    Submodules: ``conv1`` ... ``conv4`` (the branches, ConvBNAct) and ``out``, in the official order.
    """

    bins = (1, 2, 3, 6)

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        inter = in_channels // 4
        if inter < 1:
            raise ConfigError(f"context 'fastscnn_ppm': in_channels = {in_channels} is too few; each of its four "
                              "branches gets in_channels // 4 channels, so in_channels must be >= 4")
        self.conv1 = ConvBNAct(in_channels, inter, 1)
        self.conv2 = ConvBNAct(in_channels, inter, 1)
        self.conv3 = ConvBNAct(in_channels, inter, 1)
        self.conv4 = ConvBNAct(in_channels, inter, 1)
        self.out = ConvBNAct(in_channels + 4 * inter, out_channels, 1)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x]
        for b, conv in zip(self.bins, (self.conv1, self.conv2, self.conv3, self.conv4)):
            # pool to b x b, 1x1 ConvBNReLU, back to the input size
            feats.append(resize_to(conv(nn.functional.adaptive_avg_pool2d(x, b)), size, "bilinear", True))
        return self.out(torch.cat(feats, 1))  # 1x1 ConvBNReLU over [input, branches]
