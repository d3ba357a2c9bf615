"""STDC module: Short-Term Dense Concatenate (Fan et al., "Rethinking BiSeNet for Real-time Semantic
Segmentation", CVPR 2021, Sec. 3.1, Fig. 3).

Follows the official ``MichaelFan01/STDC-Seg`` ``nets/stdcnet.py`` (``CatBottleneck`` / ``AddBottleneck``)
layer for layer, with the official submodule names (``conv_list``, ``avd_layer``, ``skip``), so a module's
tensors have the official names inside the module.  STDC-Seg checkpoints (``BiSeNet('STDCNet813' or
'STDCNet1446', ...)``) import into the ``stdc1_seg`` / ``stdc2_seg`` presets with ``nasseg weights import``
(``nasseg.weights``; ``cp.backbone.features.K`` -> ``stages.S.blocks.M``).  The ImageNet ``STDCNet813`` /
``STDCNet1446`` checkpoints have no preset (their classifier head is not built here) and no importer.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register

STDC_VARIANTS: tuple[str, ...] = ("cat", "add")


def stdc_widths(out_channels: int, num_blocks: int) -> list[int]:
    """Output widths of the ``num_blocks`` ConvX blocks; they sum to ``out_channels`` when it divides.

    Block 1 (1x1) gives N/2, block i (1 <= i < n-1) gives N/2^(i+1), the last block keeps the previous
    width N/2^(n-1) (for n = 2: N/2, N/2).  Same integer divisions as the official code.
    """
    widths = [out_channels // 2]
    for idx in range(1, num_blocks):
        widths.append(out_channels // 2 ** (idx + 1) if idx < num_blocks - 1 else out_channels // 2**idx)
    return widths


@register(
    "stdc",
    kind="block",
    args=[
        Arg("num_blocks", "int", 4, low=2, high=5,
            doc="ConvX blocks per module (n); STDC1/STDC2 use 4"),
        Arg("variant", "str", "cat", choices=STDC_VARIANTS,
            doc="'cat' (CatBottleneck, the released models) or 'add' (AddBottleneck: concat + input)"),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 64, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2},
        {"in_channels": 64, "out_channels": 64, "stride": 1, "num_blocks": 2},
        {"in_channels": 32, "out_channels": 64, "stride": 2, "num_blocks": 5},
        {"in_channels": 64, "out_channels": 64, "stride": 1, "variant": "add"},
        {"in_channels": 32, "out_channels": 64, "stride": 2, "variant": "add", "num_blocks": 3},
        {"in_channels": 32, "out_channels": 64, "stride": 1, "variant": "add"},
    ],
)
class STDCModule(nn.Module):
    """STDC module (STDC-Seg, CVPR 2021, Sec. 3.1 / Fig. 3): n ConvX blocks of shrinking width, concatenated.

    ``variant='cat'`` is the official ``CatBottleneck`` used by STDC1/STDC2:
    block 1 is a 1x1 ConvX (conv-BN-ReLU) in -> N/2, blocks 2..n are 3x3 ConvX of widths N/4, N/8, ...
    with the last block keeping the previous width; the output is concat(block1..blockn) = N channels and
    there is **no residual** (block 1's output in the concat is the skip path).  With stride 2 a depthwise
    3x3 stride-2 conv + BN (no ReLU, ``avd_layer``) follows block 1 and feeds block 2 (blocks 2..n run at
    the reduced size), and block 1's output enters the concat through AvgPool 3x3 s2 p1 (``skip``).

    ``variant='add'`` is the official ``AddBottleneck``: the same concat plus the input; at stride 2 the
    input goes through ``skip`` = depthwise 3x3 s2 + BN + 1x1 conv + BN.

    ``out_channels`` must be a multiple of 2^(num_blocks-1) so the block widths add up to it.

    Divergences from the official code: the official ``AddBottleneck`` cannot run at stride 1 with
    in != out (the sum fails); here that case gets ``skip`` = 1x1 conv + BN (the pointwise half of the
    official stride-2 skip).  Everything else, including parameter counts, matches the official classes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        num_blocks: int = 4,
        variant: str = "cat",
    ):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("stdc", "stride", stride, "allowed: 1, 2")
        if variant not in STDC_VARIANTS:
            allowed = "allowed: " + ", ".join(map(repr, STDC_VARIANTS))
            raise BlockArgumentError("stdc", "variant", variant, allowed)
        if num_blocks < 2:
            raise BlockArgumentError("stdc", "num_blocks", num_blocks, "allowed: an integer >= 2")
        unit = 2 ** (num_blocks - 1)
        if out_channels % unit or out_channels <= 0:
            raise BlockArgumentError(
                "stdc", "out_channels", out_channels,
                f"allowed: a positive multiple of 2^(num_blocks-1) = {unit} for num_blocks={num_blocks}, "
                "so that the block widths N/2, N/4, ... add up to N",
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.variant = variant
        widths = stdc_widths(out_channels, num_blocks)
        half = widths[0]

        # stride 2: the downsampling sits after block 1 (depthwise 3x3 s2 + BN, no ReLU)
        if stride == 2:
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False),
                nn.BatchNorm2d(half),
            )
        else:
            self.avd_layer = nn.Identity()

        if variant == "cat":
            self.skip = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        elif stride == 2:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        elif in_channels != out_channels:
            self.skip = nn.Sequential(  # not in the official code, see the docstring
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.skip = nn.Identity()

        convs = [ConvBNAct(in_channels, half, 1, act="relu")]
        for idx in range(1, num_blocks):
            convs.append(ConvBNAct(widths[idx - 1], widths[idx], 3, act="relu"))
        self.conv_list = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # block 1: 1x1 ConvX at the input resolution
        out1 = self.conv_list[0](x)
        # stride 2: depthwise 3x3 s2 conv + BN on block 1's output; it feeds block 2
        first = self.avd_layer(out1)
        outs = []
        out = first
        # blocks 2..n: a chain of 3x3 ConvX, each on the previous block's output
        for conv in self.conv_list[1:]:
            out = conv(out)
            outs.append(out)
        if self.variant == "cat":
            # concat with block 1's output (through AvgPool 3x3 s2 when downsampling); no residual
            return torch.cat([self.skip(out1), *outs], dim=1)
        # add: concat (block 1's member is the depthwise-downsampled tensor) plus the (projected) input
        return torch.cat([first, *outs], dim=1) + self.skip(x)
