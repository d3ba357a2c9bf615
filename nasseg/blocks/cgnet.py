"""CGNet's context-guided block (Wu et al., "CGNet: A Light-weight Context Guided Network for Semantic
Segmentation", IEEE TIP 2021 / arXiv 1811.08201, Sec. 3 "Proposed Approach": the CG block, then the network
built of it).

Official code: wutianyiRosun/CGNet ``model/CGNet.py`` (commit cfccea3), classes ``ContextGuidedBlock``,
``ContextGuidedBlock_Down``, ``FGlo`` and ``Context_Guided_Network``.  CGNet's input-injection stages (the
image average-pooled to 1/2 and 1/4 and concatenated into stages 1 and 2, then BN + PReLU) are the genome's
``inject`` / ``concat_first`` stage flags, the same as ESPNet's input reinforcement (see the ``cgnet`` preset).
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import ConfigError
from nasseg.layers import BNAct, ConvBNAct
from nasseg.registry import Arg, register

CG_BN_EPS = 1e-3  # every BatchNorm of CGNet.py


class FGlo(nn.Module):
    """CGNet's global context f_glo(.) (official ``FGlo``): GAP -> Linear (bias) c -> c // r -> ReLU ->
    Linear (bias) c // r -> c -> sigmoid -> per-channel scale.  ``fc`` keeps the official child layout."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean((2, 3)))
        return x * w[:, :, None, None]


@register(
    "cg",
    kind="block",
    args=[
        Arg("dilation", "int", 2, "dilation rate of the surrounding-context conv f_sur (CGNet: 2 in stage 2, 4 in "
            "stage 3)", low=1, high=16),
        Arg("reduction", "int", 16, "f_glo squeeze ratio r: hidden width out // r (CGNet: 8 in stage 2, 16 in "
            "stage 3)", low=1, high=64),
    ],
    examples=[
        {"in_channels": 64, "out_channels": 64, "stride": 1, "reduction": 8},
        {"in_channels": 35, "out_channels": 64, "stride": 2, "reduction": 8},
        {"in_channels": 131, "out_channels": 128, "stride": 2, "dilation": 4},
        {"in_channels": 128, "out_channels": 128, "stride": 1, "dilation": 4},
        {"in_channels": 32, "out_channels": 48, "stride": 1, "dilation": 3, "reduction": 4},  # no residual
    ],
)
class ContextGuidedBlock(nn.Module):
    """Context-guided (CG) block of CGNet (Wu et al., IEEE TIP 2021, Sec. 3, the CG block).

    Stride 1 (official ``ContextGuidedBlock(nIn, nOut, dilation_rate, reduction, add=True)``), with m = out / 2:

    1. 1x1 conv in -> m (no bias) -> BN -> PReLU;
    2. f_loc: depthwise 3x3 conv (no bias) -- the local feature; f_sur: depthwise 3x3 conv with dilation d
       (no bias) -- the surrounding context; both on the step-1 output;
    3. f_joi: concat [f_loc, f_sur] (out channels) -> BN -> PReLU;
    4. f_glo: GAP -> Linear out -> out // r -> ReLU -> Linear -> sigmoid, scaling the joint feature;
    5. + input (global residual learning, "GRL").

    Stride 2 (official ``ContextGuidedBlock_Down(nIn, nOut, dilation_rate, reduction)``), with m = out:
    step 1 is a **3x3 stride-2** conv in -> out -> BN -> PReLU; f_loc and f_sur run on ``out`` channels; the
    joint feature (2 out) -> BN -> PReLU -> **1x1 conv 2 out -> out (no bias)**; then f_glo; no residual.

    All BatchNorms use eps 1e-3.  Submodules: ``conv_in`` (``conv``/``bn``/``act``), ``f_loc``, ``f_sur``,
    ``br`` (the joint BN + PReLU), ``reduce`` (stride 2 only, else ``Identity``), ``f_glo`` (``fc.0``, ``fc.2``).
    Parameter counts equal the official classes' (instantiated beside this one): CG(64, 64, d=2, r=8) 4,008;
    CG(128, 128, d=4, r=16) 12,104; CG_Down(35, 64, d=2, r=8) 31,176; CG_Down(131, 128, d=4, r=16) 189,320.

    Divergences from the official code: the stride-1 block adds the input only when ``in == out`` (the
    official block always adds and fails when the shapes differ); an odd ``out_channels`` at stride 1, or
    ``out_channels < reduction`` (an empty f_glo layer), is refused with a ConfigError here, where the official
    code fails later or builds a zero-width layer.  f_glo averages with ``mean`` rather than
    ``AdaptiveAvgPool2d(1)`` (the same values).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, dilation: int, reduction: int):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"block 'cg': stride = {stride!r} is not allowed; allowed: 1, 2")
        if stride == 1 and out_channels % 2:
            raise ConfigError(f"block 'cg': out_channels = {out_channels} must be even at stride 1 (f_loc and f_sur "
                              "each give out_channels / 2)")
        if out_channels < reduction:
            raise ConfigError(f"block 'cg': out_channels = {out_channels} is below reduction = {reduction}; f_glo's "
                              "hidden width out_channels // reduction must be at least 1")
        down = stride == 2
        mid = out_channels if down else out_channels // 2
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.use_residual = not down and in_channels == out_channels

        # 1. reduce (1x1) or, when downsampling, a 3x3 stride-2 conv; BN + PReLU
        self.conv_in = ConvBNAct(in_channels, mid, 3 if down else 1, stride, act="prelu", bn_eps=CG_BN_EPS)
        # 2. local feature and surrounding context, both depthwise
        self.f_loc = nn.Conv2d(mid, mid, 3, 1, 1, groups=mid, bias=False)
        self.f_sur = nn.Conv2d(mid, mid, 3, 1, dilation, dilation, groups=mid, bias=False)
        # 3. joint feature: BN + PReLU over the concatenation (then, when downsampling, a 1x1 back to out)
        self.br = BNAct(2 * mid, act="prelu", bn_eps=CG_BN_EPS)
        self.reduce = nn.Conv2d(2 * mid, out_channels, 1, bias=False) if down else nn.Identity()
        # 4. global context
        self.f_glo = FGlo(out_channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_in(x)
        joint = self.reduce(self.br(torch.cat([self.f_loc(y), self.f_sur(y)], 1)))  # f_joi
        out = self.f_glo(joint)  # refined by the global context
        return x + out if self.use_residual else out  # GRL
