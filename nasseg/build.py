"""Genome -> nn.Module.

``build(genome, num_classes)`` wires channels from each module's ``out_channels``; no genome or YAML
holds a hand-summed channel count.  It imports no optuna and does no I/O.

The returned :class:`Network`:

* eval mode: ``net(x)`` returns logits ``(N, C, H, W)`` at the input size (a classifier genome returns
  ``(N, C)``);
* train mode: a dict ``{"out": logits, "aux": [logits, ...], "detail": logits | None,
  "boundary": logits | None}``; ``out`` and ``aux`` at input size, ``detail`` / ``boundary`` at the
  resolution of the feature they tap (their losses resize);
* ``inference_parameters()``: the parameters used at inference (not the auxiliary, detail or boundary
  heads), which is what parameter counts report;
* ``output_stride``: the product of the stage strides; inputs whose sides are multiples of it give
  exact shapes everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nasseg import registry
from nasseg.errors import ConfigError, GenomeError
from nasseg.genome import Genome, Module, Stage, resolve
from nasseg.heads.chain import FusionChain
from nasseg.layers import BNAct, resize_to


class StageModule(nn.Module):
    """The blocks of one :class:`~nasseg.genome.Stage`, plus ESPNet-style concatenations.

    With ``concat_first`` / ``inject`` the output is ``BR(cat(parts))`` with parts ``[last, first, image]``,
    or ``[first, last, image]`` when the stage sets ``first_leads`` (the order of the official code's
    concatenations, which the BR's per-channel weights and the next layer's input channels depend on).
    """

    def __init__(self, in_channels: int, spec: Stage, image_channels: int, path: str):
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_channels
        if spec.down is not None:
            blocks.append(_create_block(spec.down, c, spec.width, spec.stride, f"{path}.down"))
            c = blocks[-1].out_channels
        entry = registry.get(spec.block, "block")
        shared = dict(spec.args)
        for j in range(spec.depth):
            stride = spec.stride if (j == 0 and spec.down is None) else 1
            args = {**shared, **dict(spec.block_args[j])} if spec.block_args else shared
            blocks.append(_create_block(Module(entry.name, tuple(args.items())), c, spec.width, stride,
                                        f"{path}.block{j}"))
            c = blocks[-1].out_channels
        self.blocks = nn.ModuleList(blocks)
        self.concat_first, self.inject, self.first_leads = spec.concat_first, spec.inject, spec.first_leads
        out = c + (blocks[0].out_channels if spec.concat_first else 0) + (image_channels if spec.inject else 0)
        # ESPNet's "BR" after each concatenation: BN (eps 1e-3) + PReLU
        self.merge = BNAct(out, act="prelu", bn_eps=1e-3) if (spec.inject or spec.concat_first) else nn.Identity()
        self.out_channels = out
        self.stride = spec.stride
        self.relu_in = spec.relu_in

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        if self.relu_in:  # DDRNet / PIDNet: self.layer4(self.relu(x)) after a fusion sum
            x = F.relu(x)
        first = None
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i == 0:
                first = x
        parts = [x]
        if self.concat_first:  # ESPNet: [last, first] (level 2) or, with first_leads, [first, last] (level 3)
            parts = [first, x] if self.first_leads else [x, first]
        if self.inject:
            parts.append(image)
        return self.merge(torch.cat(parts, 1)) if len(parts) > 1 else x


# A constructor that refuses its channels (BlockArgumentError, or a module's own ConfigError / ValueError,
# e.g. a decoder given the wrong number of taps) becomes a GenomeError naming the genome path.
def _create_block(m: Module, c_in: int, c_out: int, stride: int, path: str) -> nn.Module:
    try:
        return registry.get(m.name, "block").create(c_in, c_out, stride, **m.kwargs)
    except (ConfigError, ValueError) as e:
        raise GenomeError(f"{path} ({c_in}->{c_out}, stride {stride}): {e}") from None


def _create(kind: str, m: Module, positional: tuple, path: str) -> nn.Module:
    try:
        return registry.get(m.name, kind).create(*positional, **m.kwargs)
    except (ConfigError, ValueError) as e:
        raise GenomeError(f"{path}: {e}") from None


class OutputResize(nn.Module):
    """Logits to the input size, bilinear: a module of its own so that a cost table times it as one unit."""

    def __init__(self, align_corners: bool | None):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        return resize_to(x, size, "bilinear", self.align_corners)


class BranchModule(nn.Module):
    """The stages and links of one :class:`~nasseg.genome.Branch` (the network runs them beside the main path)."""

    def __init__(self, stages: list[StageModule], links: list[nn.Module], link_at: tuple[int, ...]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.links = nn.ModuleList(links)
        self.link_at = link_at
        self.out_channels = stages[-1].out_channels


class Network(nn.Module):
    """A segmentation network built from a genome (see the module docstring for its outputs)."""

    def __init__(self, genome: Genome, num_classes: int, in_channels: int = 3):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise GenomeError(f"num_classes = {num_classes!r} must be a positive integer")
        g = resolve(genome)
        self.genome, self.num_classes = g, num_classes
        stages, c, stride = [], in_channels, 1
        self.stage_strides: list[int] = []
        for i, s in enumerate(g.stages):
            stages.append(StageModule(c, s, in_channels, f"stages.{i}"))
            c = stages[-1].out_channels
            stride *= s.stride
            self.stage_strides.append(stride)
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(s.out_channels for s in stages)
        self.output_stride = stride
        self._inject = any(s.inject for s in g.stages)
        self.branches = nn.ModuleList(self._build_branch(b, br, in_channels) for b, br in enumerate(g.branches))

        d = g.decoder
        taps = [self.branches[b].out_channels for b in d.branch_taps] + [self.stage_channels[t] for t in d.taps]
        context = _create("context", d.context, (taps[-1], d.context_width or taps[-1]), "decoder.context")
        ctx_out = context.out_channels
        if d.kind == "chain":
            fusions, high = [None] * len(taps), ctx_out
            for i in range(len(taps) - 1, -1, -1):
                f = d.fusions[i]
                fusions[i] = _create("fusion", Module(f.name, f.args), (taps[i], high, f.width),
                                     f"decoder.fusions.{i}")
                if f.guide >= 0 and fusions[i].guide_channels != self.branches[f.guide].out_channels:
                    need, have = fusions[i].guide_channels, self.branches[f.guide].out_channels
                    raise GenomeError(f"decoder.fusions.{i}: {f.name!r} takes a {need}-channel guide, but branch "
                                      f"{f.guide} ends with {have} channels; allowed: a branch of {need} channels")
                high = fusions[i].out_channels
            self.decoder = FusionChain(tuple(taps), context, fusions, tuple(f.guide for f in d.fusions))
            self.context = nn.Identity()
        else:
            self.context = context
            taps[-1] = ctx_out
            self.decoder = _create("decoder", Module(d.kind, d.args), (tuple(taps), num_classes), "decoder")
        self.is_classifier = bool(getattr(self.decoder, "is_classifier", False))
        if g.heads.main is not None:
            self.head = _create("head", g.heads.main, (self.decoder.out_channels, num_classes), "heads.main")
        else:
            self.head = nn.Identity()
        self.align_corners = g.heads.align_corners
        self.resize = OutputResize(self.align_corners)

        extra = []
        for i, t in enumerate(g.heads.extra):
            if t.source == "branch":
                ch = self.branches[t.branch].stages[t.index].out_channels
            else:
                ch = self.stage_channels[t.index] if t.source == "stage" else self.decoder.level_channels[t.index]
            n = num_classes if t.role == "aux" else 1
            extra.append(_create("head", t.head, (ch, n), f"heads.extra.{i}"))
        self.train_heads = nn.ModuleList(extra)

    def _build_branch(self, b: int, br, image_channels: int) -> BranchModule:
        path = f"branches.{b}"
        c = image_channels if br.source == -1 else self.stage_channels[br.source]
        stride = 1 if br.source == -1 else self.stage_strides[br.source]
        stages, strides = [], []
        for j, s in enumerate(br.stages):
            stages.append(StageModule(c, s, image_channels, f"{path}.stages.{j}"))
            c = stages[-1].out_channels
            stride *= s.stride
            strides.append(stride)
        links = []
        for i, link in enumerate(br.links):
            j = link.at - br.source - 1
            main_c, main_s, branch_c = self.stage_channels[link.at], self.stage_strides[link.at], stages[j].out_channels
            if main_s % strides[j] or (main_s // strides[j]) & (main_s // strides[j] - 1):
                raise GenomeError(f"{path}.links.{i}: main stage {link.at} runs at stride {main_s} and branch stage "
                                  f"{j} at stride {strides[j]}; a link needs the main path at the branch's stride "
                                  "times a power of two (1, 2, 4 ...)")
            lp = f"{path}.links.{i} (main {main_c} ch at stride {main_s}, branch {branch_c} ch at stride {strides[j]})"
            m = _create("link", link.module, (main_c, branch_c, main_s // strides[j]), lp)
            if (m.main_channels, m.branch_channels) != (main_c, branch_c):
                raise GenomeError(f"{lp}: {link.module.name!r} changes the widths it exchanges "
                                  f"({main_c}, {branch_c}) -> ({m.main_channels}, {m.branch_channels})")
            links.append(m)
        return BranchModule(stages, links, tuple(link.at for link in br.links))

    def stage_parts(self) -> list[tuple[str, nn.Module]]:
        """Every stage's blocks and (ESPNet's) merge with their paths: the main stages, then each branch's.

        The order the weight plans list official encoder modules in, and the stage units of a cost table."""
        stages = [(f"stages.{i}", s) for i, s in enumerate(self.stages)]
        stages += [(f"branches.{b}.stages.{j}", s) for b, br in enumerate(self.branches)
                   for j, s in enumerate(br.stages)]
        out: list[tuple[str, nn.Module]] = []
        for path, stage in stages:
            out += [(f"{path}.blocks.{j}", block) for j, block in enumerate(stage.blocks)]
            if not isinstance(stage.merge, nn.Identity):
                out.append((f"{path}.merge", stage.merge))
        return out

    # ---------------------------------------------------------------------------------------------
    def inference_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters used at inference: everything but the auxiliary, detail and boundary heads."""
        for name, p in self.named_parameters():
            if not name.startswith("train_heads."):
                yield p

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every main stage (after its links, where the genome has branches)."""
        return self._run(x)[0]

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Main stage outputs, and for every branch its stage outputs (each after that stage's links)."""
        feats, image, img_stride, stride = [], x, 1, 1
        input_image = x
        specs = self.genome.branches
        branch_outs: list[list[torch.Tensor]] = [[] for _ in specs]
        for k, stage in enumerate(self.stages):
            stride *= stage.stride
            if stage.inject:
                # ESPNet input reinforcement: the image average-pooled (3x3, s2, p1) once per halving
                while img_stride < stride:
                    image = F.avg_pool2d(image, 3, 2, 1)
                    img_stride *= 2
                x = stage(x, image)
            else:
                x = stage(x)
            for b, spec in enumerate(specs):  # each branch's stage beside main stage k, then its link there
                j = k - spec.source - 1
                if not 0 <= j < len(spec.stages):
                    continue
                module = self.branches[b]
                y = module.stages[j](branch_outs[b][-1] if j else
                                     (input_image if spec.source == -1 else feats[spec.source]))
                if k in module.link_at:
                    x, y = module.links[module.link_at.index(k)](x, y)
                branch_outs[b].append(y)
            feats.append(x)
        return feats, branch_outs

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        feats, branch_outs = self._run(x)
        d = self.genome.decoder
        taps = [branch_outs[b][-1] for b in d.branch_taps] + [feats[t] for t in d.taps]
        levels: list[torch.Tensor] = []
        if isinstance(self.decoder, FusionChain):
            y, levels = self.decoder(taps, [branch_outs[f.guide][-1] if f.guide >= 0 else None for f in d.fusions])
        else:
            taps[-1] = self.context(taps[-1])
            y = self.decoder(taps)
        logits = self.head(y)
        if self.is_classifier:
            logits = torch.flatten(logits, 1)
        else:
            logits = self.resize(logits, size)
        if not self.training:
            return logits
        out = {"out": logits, "aux": [], "detail": None, "boundary": None}
        for t, head in zip(self.genome.heads.extra, self.train_heads):
            if t.source == "branch":
                src = branch_outs[t.branch][t.index]
            else:
                src = feats[t.index] if t.source == "stage" else levels[t.index]
            z = head(src)
            if t.role == "aux":
                out["aux"].append(resize_to(z, size, "bilinear", self.align_corners))
            else:
                out[t.role] = z
        return out


def build(genome: Genome, num_classes: int, in_channels: int = 3) -> Network:
    """Build the network a genome describes (validates the genome first)."""
    return Network(genome, num_classes, in_channels)
