"""The generic top-down decoder: a context module on the deepest tap, then one fusion per tap."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import GenomeError


class FusionChain(nn.Module):
    """``y = context(tap[-1])``; then for taps from deepest to shallowest ``y = fusion_i(tap_i, y)``.

    This one structure expresses PP-LiteSeg's FLD (SPPM, then UAFMs at 1/32, 1/16, 1/8), STDC-Seg's
    and BiSeNet's context path (global context, ARM at 1/32 and 1/16, FFM at 1/8), ICNet-style cascades
    (CFF) and SFNet-style flow alignment (FAM); with branch taps, DDRNet's and PIDNet's final
    merges.  A three-input fusion (PIDNet's Bag) also gets its guide (``guides``: per fusion, the branch index
    or -1; ``forward`` gets the tensors).  ``fusions`` are ordered like the taps (shallow to
    deep); ``forward`` returns the shallowest level's output and every level's output (the chain
    levels that auxiliary heads may tap).  Not registered: the genome's ``chain`` decoder builds it.
    """

    emits_logits = False

    def __init__(self, tap_channels: tuple[int, ...], context: nn.Module, fusions: list[nn.Module],
                 guides: tuple[int, ...] | None = None):
        super().__init__()
        if len(fusions) != len(tap_channels):
            raise GenomeError(f"chain: {len(fusions)} fusions for {len(tap_channels)} taps")
        guides = guides if guides is not None else (-1,) * len(fusions)
        for i, f in enumerate(fusions):
            if (getattr(f, "num_inputs", 2) == 3) != (guides[i] >= 0):
                raise GenomeError(f"decoder.fusions.{i}: {type(f).__name__} takes "
                                  + ("three inputs and needs a guide (a branch of the genome, Fusion.guide)"
                                     if guides[i] < 0 else "two inputs and no guide"))
        self.context = context
        self.fusions = nn.ModuleList(fusions)
        self.level_channels = tuple(f.out_channels for f in fusions)
        self.out_channels = fusions[0].out_channels

    def forward(self, taps: list[torch.Tensor], guides: list[torch.Tensor | None] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        y = self.context(taps[-1])
        levels: list[torch.Tensor] = [y] * len(taps)
        for i in range(len(taps) - 1, -1, -1):
            g = guides[i] if guides is not None else None
            y = self.fusions[i](taps[i], y) if g is None else self.fusions[i](taps[i], y, g)
            levels[i] = y
        return y, levels
