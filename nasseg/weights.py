"""Official checkpoints into nasseg presets: key mappings, checked tensor by tensor.

``import_checkpoint(preset, checkpoint)`` reads a checkpoint written by a paper's official PyTorch code
and returns ``(state_dict, report)``: a state dict that ``build(preset.genome, report.num_classes)``
loads with ``load_state_dict(strict=True)``, and what went where.  The class count is read from the
checkpoint (the official classifier's shape).

How a mapping is derived.  Each preset has a :class:`Plan`: which official module corresponds to each
module of ours.  For the encoder that is one list of official module names in forward order, zipped with
our stage blocks (and ESPNet's concatenation BRs) in order; decoder and head modules are listed as pairs.
Inside a pair of modules, tensors are matched by their names relative to the module when those are
identical (nasseg's blocks reuse the official submodule names where it can), then, for the rest, the
official key order against ours among tensors of the same kind (BatchNorm or not), leaf name and shape.
Every official tensor must land in exactly one place with exactly its shape; every tensor of ours must
get one.  A plan also lists the official tensors with no place in the preset (an ImageNet classifier,
training-only heads the preset has no counterpart for), which the report names, and official aliases
(the same module registered twice, as STDCNet does), which must hold identical values.

What is not in a checkpoint and cannot be exact:

* ``num_batches_tracked`` of BatchNorms the official code builds without it (STDC-Seg's InPlaceABN): set
  to 0 (it only matters to BatchNorm with ``momentum=None``), and listed;
* training-only heads of a preset that the official network computes on a different feature (STDC-Seg's
  auxiliary heads): initialised as ``build`` does under seed 0, and listed.

A checkpoint is loaded with ``torch.load(..., weights_only=True)`` only: a pickle that holds anything but
tensors and plain containers is refused.  It may be a bare state dict or one wrapped in ``state_dict`` or
``model``, with or without DataParallel's ``module.`` prefix; a preset whose official training saves its wrapper
(PIDNet's ``FullModel``, ``utils/utils.py``: the network under ``model.``, beside the losses' buffers; the
released PIDNet checkpoints are loaded with that prefix cut) also takes that form (``Plan.wrapper``).
A multi-branch preset's ``Plan.encoder`` lists the main stages' official blocks, then each branch's; the links
between them are ``pairs``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasseg import presets
from nasseg.build import build
from nasseg.errors import NassegError


class WeightsError(NassegError, ValueError):
    """A checkpoint that cannot be read, or that does not fit the preset it is imported into."""


# ------------------------------------------------------------------------------------------ plans
@dataclass(frozen=True)
class Plan:
    """Where each official tensor of one preset goes (see the module docstring)."""

    source: str  # official repository (commit), file and class with its arguments
    encoder: tuple[str, ...]  # official module of each of our stage blocks / stage BRs, in forward order
    pairs: tuple[tuple[str, str], ...]  # (official module, our module) beyond the encoder
    classes: tuple[str, int]  # official tensor and dimension that give the class count
    unused: tuple[tuple[str, str], ...] = ()  # (official module, why it has no place in the preset)
    aliases: tuple[tuple[str, str], ...] = ()  # (regex on official keys, replacement): a second name of a tensor
    fresh: tuple[tuple[str, str], ...] = ()  # (our module, why the checkpoint cannot give it)
    # (prefix in the backbone's own ImageNet checkpoint, prefix of the same tensors in the full network): such a
    # checkpoint imports into the encoder only.  STDC-Seg: ("", "cp.backbone."), ERFNet: ("features.encoder.",
    # "encoder.")
    backbone: tuple[str, str] | None = None
    # (prefix, why the rest has no place): the official training wrapper saves the network under ``prefix``
    # (PIDNet's ``FullModel.model``) beside its losses' buffers; when any key carries the prefix, it is cut from
    # those keys and the others are listed unused with ``why``
    wrapper: tuple[str, str] | None = None


def _seq(fmt: str, n: int, start: int = 0) -> tuple[str, ...]:
    return tuple(fmt.format(k) for k in range(start, start + n))


def _regseg() -> Plan:
    return Plan(
        source="RolandGao/RegSeg@0f61c66 model.py RegSeg('exp48_decoder26', num_classes)",
        encoder=("stem", "body.stage4", *_seq("body.stage8.{}", 3), *_seq("body.stage16.{}", 14)),
        pairs=(("decoder", "decoder"),),
        classes=("decoder.classifier.weight", 0),
    )


def _erfnet() -> Plan:
    return Plan(
        source="Eromera/erfnet_pytorch@d4a46fa train/erfnet.py Net(num_classes)",
        encoder=("encoder.initial_block", *_seq("encoder.layers.{}", 15)),
        pairs=(("decoder", "decoder"),),
        classes=("decoder.output_conv.weight", 1),
        unused=(("encoder.output_conv", "ERFNet's encoder-only classifier, used only when the encoder is "
                 "trained alone (predict=True); the full network never runs it"),
                ("classifier", "the ImageNet classifier of the encoder's pretraining (imagenet/erfnet_imagenet.py)")),
        # train/main.py takes ERFNet_imagenet(1000).features.encoder from the ImageNet checkpoint
        backbone=("features.encoder.", "encoder."),
    )


def _lednet() -> Plan:
    return Plan(
        source="xiaoyufenfei/LEDNet@5d900d9 train/lednet.py Net(num_classes)",
        encoder=("encoder.initial_block", *_seq("encoder.layers.{}", 15)),
        pairs=(("decoder.apn", "decoder"),),
        classes=("decoder.apn.mid.0.conv.0.weight", 0),
        unused=(("encoder.output_conv", "LEDNet's encoder-only classifier (only_encode=True); the full network "
                 "never runs it"),),
    )


def _espnet() -> Plan:
    return Plan(
        source="sacmehta/ESPNet@afe71c3 train/Model.py ESPNet(classes, p=2, q=8)",
        encoder=("encoder.level1", "encoder.b1",
                 "encoder.level2_0", *_seq("encoder.level2.{}", 2), "encoder.b2",
                 "encoder.level3_0", *_seq("encoder.level3.{}", 8), "encoder.b3"),
        pairs=(("encoder.classifier.conv", "decoder.classifier_l3"), ("br", "decoder.bn_l3"),
               ("up_l3.0", "decoder.up_l3"), ("level3_C.conv", "decoder.proj_l2"),
               ("combine_l2_l3.0", "decoder.br_l2"), ("combine_l2_l3.1", "decoder.esp_l2"),
               ("up_l2.0", "decoder.up_l2"), ("up_l2.1", "decoder.br_up_l2"),
               ("conv", "decoder.fuse_l1"), ("classifier", "decoder.up_l1")),
        classes=("classifier.weight", 1),
    )


def _espnet_c() -> Plan:
    """ESPNet_Encoder alone: the same modules as ESPNet's ``encoder.*``, without that prefix."""
    full = _espnet()
    return Plan(
        source="sacmehta/ESPNet@afe71c3 train/Model.py ESPNet_Encoder(classes, p=2, q=8)",
        encoder=tuple(m.removeprefix("encoder.") for m in full.encoder),
        pairs=(("classifier.conv", "decoder.classifier"),),
        classes=("classifier.conv.weight", 0),
    )


def _fasternet(variant: str, depths: tuple[int, int, int, int]) -> Plan:
    enc: list[str] = ["patch_embed"]
    for i, d in enumerate(depths):
        if i:
            enc.append(f"stages.{2 * i - 1}")  # PatchMerging
        enc.extend(_seq(f"stages.{2 * i}.blocks.{{}}", d))
    return Plan(
        source=f"JierunChen/FasterNet@e8fba44 models/fasternet.py FasterNet(**cfg/fasternet_{variant}.yaml)",
        encoder=tuple(enc),
        pairs=(("avgpool_pre_head.1", "decoder.pre_head.0"), ("head", "decoder.fc")),
        classes=("head.weight", 0),
    )


def _stdc_seg(backbone: str, repeats: tuple[int, int, int]) -> Plan:
    n = 2 + sum(repeats)
    return Plan(
        source=f"MichaelFan01/STDC-Seg@59ff37f models/model_stages.py BiSeNet('{backbone}', n_classes, "
               "use_boundary_8=True)",
        encoder=_seq("cp.backbone.features.{}", n),
        pairs=(("cp.conv_avg", "decoder.context.conv"),
               ("cp.arm32", "decoder.fusions.2.arm"),
               ("cp.arm16", "decoder.fusions.1.arm"), ("cp.conv_head32", "decoder.fusions.1.refine"),
               ("cp.conv_head16", "decoder.fusions.0.refine"), ("ffm", "decoder.fusions.0.ffm"),
               ("conv_out", "head"),
               ("conv_out_sp8", "train_heads.2")),  # the 1/8 detail head, on the same stage-3 feature
        classes=("conv_out.conv_out.weight", 0),
        unused=tuple((f"cp.backbone.{m}", f"{backbone}'s ImageNet classifier (use_conv_last=False: STDC-Seg never "
                      "runs it)") for m in ("conv_last", "fc", "bn", "linear"))
        + tuple((m, f"training-only auxiliary head on the context path's {where}; the preset's auxiliary heads tap "
                 "the chain levels, a different feature") for m, where in (("conv_out16", "1/8 conv_head16 output"),
                                                                             ("conv_out32", "1/16 conv_head32 output")))
        + tuple((f"conv_out_sp{s}", f"detail head at 1/{s}, not used by the released training (use_boundary_8 only)")
                for s in (16, 4, 2)),
        aliases=((r"^cp\.backbone\.x(?:2|4|8|16|32)\.0\.", "cp.backbone.features."),),
        backbone=("", "cp.backbone."),  # STDCNet.init_weight loads an ImageNet checkpoint with the module's own keys
        fresh=(("train_heads.0", "auxiliary head on chain level 1: the official one sees another feature"),
               ("train_heads.1", "auxiliary head on chain level 2: the official one sees another feature")),
    )


def _ghostnet_1x() -> Plan:
    blocks = (1, 1, 1, 1, 1, 1, 5, 1, 4)  # the official blocks.K groups; blocks.9 is the 1x1 ConvBnAct
    return Plan(
        source="huawei-noah/Efficient-AI-Backbones@f90e129 ghostnet_pytorch/ghostnet.py ghostnet(num_classes)",
        encoder=("conv_stem", *(m for k, n in enumerate(blocks) for m in _seq(f"blocks.{k}.{{}}", n)), "blocks.9.0"),
        # the stem's BN is a module of its own officially (bn1); its tensors join conv_stem's in our stem block
        pairs=(("bn1", "stages.0.blocks.0"), ("conv_head", "decoder.hidden"), ("classifier", "decoder.fc")),
        classes=("classifier.weight", 0),
    )


def _shufflenetv2_1x() -> Plan:
    return Plan(
        source="pytorch/vision@0248e36 torchvision/models/shufflenetv2.py shufflenet_v2_x1_0(num_classes)",
        encoder=("conv1", "maxpool", *_seq("stage2.{}", 4), *_seq("stage3.{}", 8), *_seq("stage4.{}", 4), "conv5"),
        pairs=(("fc", "decoder.fc"),),
        classes=("fc.weight", 0),
    )


def _mobilenetv3_large() -> Plan:
    return Plan(
        source="pytorch/vision@00542d9 torchvision/models/mobilenetv3.py mobilenet_v3_large(num_classes)",
        encoder=_seq("features.{}", 17),
        pairs=(("classifier.0", "decoder.hidden"), ("classifier.3", "decoder.fc")),
        classes=("classifier.3.weight", 0),
    )


def _cgnet() -> Plan:
    return Plan(
        source="wutianyiRosun/CGNet@cfccea3 model/CGNet.py Context_Guided_Network(classes, M=3, N=21)",
        encoder=("level1_0", "level1_1", "level1_2", "b1",
                 "level2_0", *_seq("level2.{}", 2), "bn_prelu_2",
                 "level3_0", *_seq("level3.{}", 20), "bn_prelu_3"),
        pairs=(("classifier.0.conv", "decoder.classifier"),),
        classes=("classifier.0.conv.weight", 0),
    )


def _fast_scnn() -> Plan:
    gfe = "global_feature_extractor"
    return Plan(
        source="Tramac/Fast-SCNN-pytorch@0638517 models/fast_scnn.py FastSCNN(num_classes) (no code from the "
               "paper's authors)",
        encoder=("learning_to_downsample", *(f"{gfe}.bottleneck{i}.{j}" for i in (1, 2, 3) for j in range(3))),
        pairs=((f"{gfe}.ppm", "decoder.context"), ("feature_fusion", "decoder.fusions.0"), ("classifier", "head")),
        classes=("classifier.conv.1.weight", 0),
        unused=(("auxlayer", "training-only auxiliary head (aux=True), off by default in Tramac's train.py"),),
    )


def _enet() -> Plan:
    """The PyTorch port's ENet: its blocks one to one with ours, names inside each block identical."""
    stage2 = ("regular{0}_1", "dilated{0}_2", "asymmetric{0}_3", "dilated{0}_4", "regular{0}_5", "dilated{0}_6",
              "asymmetric{0}_7", "dilated{0}_8")
    stage3 = ("regular3_0", "dilated3_1", "asymmetric3_2", "dilated3_3", "regular3_4", "dilated3_5",
              "asymmetric3_6", "dilated3_7")
    return Plan(
        source="davidtvs/PyTorch-ENet@e17d404 models/enet.py ENet(num_classes)",
        encoder=("initial_block", "downsample1_0", *_seq("regular1_{}", 4, 1), "downsample2_0",
                 *(m.format(2) for m in stage2), *stage3),
        pairs=(("upsample4_0", "decoder.stages.0.up"), ("regular4_1", "decoder.stages.0.blocks.0"),
               ("regular4_2", "decoder.stages.0.blocks.1"), ("upsample5_0", "decoder.stages.1.up"),
               ("regular5_1", "decoder.stages.1.blocks.0"), ("transposed_conv", "decoder.transposed_conv")),
        classes=("transposed_conv.weight", 1),
    )


def _seaformer_tiny() -> Plan:
    """SeaFormer-T in mmsegmentation's EncoderDecoder (``backbone.*``, ``decode_head.*``): the official backbone
    builds all its MobileNetV2 stacks before its transformer stages, nasseg orders them by depth."""
    b = "backbone."
    return Plan(
        source="fudan-zvg/SeaFormer@9718d05 seaformer-seg (SeaFormer + LightHead, local_configs/seaformer/"
               "seaformer_tiny.py)",
        encoder=(b + "smb1.stem_block", *(f"{b}smb1.layer{i}" for i in (1, 2, 3)), b + "smb2.layer1",
                 b + "smb2.layer2", b + "smb3.layer1", b + "smb3.layer2",
                 b + "smb4.layer1", *_seq(b + "trans1.transformer_blocks.{}", 2),
                 b + "smb5.layer1", *_seq(b + "trans2.transformer_blocks.{}", 2)),
        pairs=(("decode_head.fuse1", "decoder.fuse1"), ("decode_head.fuse2", "decoder.fuse2"),
               ("decode_head.linear_fuse", "decoder.linear_fuse"), ("decode_head.conv_seg", "decoder.conv_seg")),
        classes=("decode_head.conv_seg.weight", 0),
    )


def _topformer_tiny() -> Plan:
    """TopFormer-T in mmsegmentation's EncoderDecoder (``backbone.*``, ``decode_head.*``)."""
    b = "backbone."
    return Plan(
        source="hustvl/TopFormer@cc0f436 (Topformer + SimpleHead, local_configs/topformer/topformer_tiny.py)",
        encoder=(b + "tpm.stem", *(f"{b}tpm.layer{i}" for i in range(1, 10))),
        pairs=((b + "trans", "decoder.trans"), (b + "SIM", "decoder.SIM"),
               ("decode_head.linear_fuse", "decoder.linear_fuse"), ("decode_head.conv_seg", "decoder.conv_seg")),
        classes=("decode_head.conv_seg.weight", 0),
    )


def _layers(*layers: tuple[str, int]) -> tuple[str, ...]:
    """Official ``nn.Sequential`` layers of ResNet blocks, block by block: ``("layer1", 2)`` -> layer1.0, layer1.1."""
    return tuple(m for name, n in layers for m in _seq(f"{name}.{{}}", n))


def _ddrnet(variant: str, planes: int, head_planes: int) -> Plan:
    """DDRNet-23(-slim): main blocks, then the high-resolution branch's; bilateral fusions as the branch's links."""
    link = "branches.0.links.{}"
    return Plan(
        source=f"ydhongHIT/DDRNet@de0db31 segmentation/{variant}.py DualResNet(BasicBlock, [2, 2, 2, 2], num_classes, "
               f"planes={planes}, spp_planes=128, head_planes={head_planes}, augment=True)",
        encoder=("conv1", *_layers(("layer1", 2), ("layer2", 2), ("layer3", 2), ("layer4", 2), ("layer5", 1)),
                 *_layers(("layer3_", 2), ("layer4_", 2), ("layer5_", 1))),
        pairs=(("compression3", link.format(0) + ".compress"), ("down3", link.format(0) + ".down"),
               ("compression4", link.format(1) + ".compress"), ("down4", link.format(1) + ".down"),
               ("spp", "decoder.context"), ("final_layer", "head"),
               ("seghead_extra", "train_heads.0")),  # the same feature: the branch after the stage-3 fusion
        classes=("final_layer.conv2.weight", 0),
        # DDRNet's training code is not in its repository; a checkpoint saved from an HRNet-style FullModel
        # (``model.`` + the loss) imports the same way as PIDNet's
        wrapper=("model.", "a training wrapper's loss, no part of the network"),
    )


def _pidnet(m: int, n: int, planes: int, large: bool) -> Plan:
    """PIDNet-S/M/L: I path blocks, then the P branch's and the D branch's; Pag and diff as the branches' links."""
    size = {32: "s", 64: "l" if large else "m"}[planes]
    p, d = "branches.0.links.{}", "branches.1.links.{}"
    return Plan(
        source=f"XuJiacong/PIDNet@4c158cf models/pidnet.py PIDNet(m={m}, n={n}, num_classes, planes={planes}, "
               f"ppm_planes={112 if large else 96}, head_planes={256 if large else 128}, augment=True) (pidnet_{size})",
        encoder=("conv1", *_layers(("layer1", m), ("layer2", m), ("layer3", n), ("layer4", n), ("layer5", 2)),
                 *_layers(("layer3_", m), ("layer4_", m), ("layer5_", 1)),
                 # _make_single_layer: a lone block, not a Sequential
                 "layer3_d", "layer4_d" if large else "layer4_d.0", "layer5_d.0"),
        pairs=(("compression3", p.format(0) + ".compress"), ("pag3", p.format(0) + ".pag"),
               ("compression4", p.format(1) + ".compress"), ("pag4", p.format(1) + ".pag"),
               ("diff3", d.format(0) + ".diff"), ("diff4", d.format(1) + ".diff"),
               ("spp", "decoder.context"), ("dfm", "decoder.fusions.0"), ("final_layer", "head"),
               ("seghead_p", "train_heads.0"),  # P after Pag 3
               ("seghead_d", "train_heads.1")),  # D after stage 4
        classes=("final_layer.conv2.weight", 0),
        wrapper=("model.", "the training wrapper's losses (FullModel.sem_loss, bd_loss): no part of the network"),
    )


def _bisenetv1() -> Plan:
    """BiSeNet V1 R18 in the authors' TorchSeg: ResNet-18 context path, spatial path as branch 0."""
    cp = "context_path."
    return Plan(
        source="ycszen/TorchSeg@62eeb15 model/bisenet/cityscapes.bisenet.R18.speed/network.py BiSeNet(out_planes, "
               "is_training=True)",
        encoder=(cp + "conv1", cp + "maxpool", *(f"{cp}layer{i}.{j}" for i in (1, 2, 3, 4) for j in (0, 1)),
                 *(f"spatial_path.{m}" for m in ("conv_7x7", "conv_3x3_1", "conv_3x3_2", "conv_1x1"))),  # branch 0
        # the stem's BN is a module of its own officially (bn1); its tensors join conv1's in our stem block
        pairs=((cp + "bn1", "stages.0.blocks.0"),
               ("global_context.1", "decoder.context.conv"),
               ("arms.0", "decoder.fusions.2.arm"), ("arms.1", "decoder.fusions.1.arm"),
               ("refines.0", "decoder.fusions.1.refine"), ("refines.1", "decoder.fusions.0.refine"),
               ("ffm", "decoder.fusions.0.ffm"), ("heads.2", "head")),
        classes=("heads.2.conv_1x1.weight", 0),
        unused=tuple((f"heads.{i}", f"training-only auxiliary head on the context path's refined {where}; the "
                      "preset's auxiliary heads tap the chain levels, a different feature")
                     for i, where in ((0, "1/16 feature"), (1, "1/8 feature"))),
        fresh=(("train_heads.0", "auxiliary head on chain level 1: the official one sees another feature"),
               ("train_heads.1", "auxiliary head on chain level 2: the official one sees another feature")),
    )


def _bisenetv2() -> Plan:
    """BiSeNet V2 in CoinCheung's re-implementation: semantic branch = main path, detail branch = branch 0."""
    detail = ((0, "S1", 2), (1, "S2", 3), (2, "S3", 3))
    return Plan(
        source="CoinCheung/BiSeNet@6b4b67a lib/models/bisenetv2.py BiSeNetV2(n_classes, aux_mode='train') (no code "
               "from the paper's authors)",
        encoder=("segment.S1S2", *_seq("segment.S3.{}", 2), *_seq("segment.S4.{}", 2), *_seq("segment.S5_4.{}", 4),
                 *(f"detail.{name}.{k}" for _, name, n in detail for k in range(n))),  # then branch 0
        pairs=(("segment.S5_5", "decoder.context"), ("bga", "decoder.fusions.0"), ("head", "head"),
               *((f"aux{a}", f"train_heads.{i}") for i, a in enumerate(("2", "3", "4", "5_4")))),
        classes=("head.conv_out.1.weight", 0),
    )


_PLANS = {
    "regseg": _regseg,
    "erfnet": _erfnet,
    "lednet": _lednet,
    "espnet": _espnet,
    "espnet_c": _espnet_c,
    "fasternet_t0": lambda: _fasternet("t0", (1, 2, 8, 2)),
    "fasternet_t1": lambda: _fasternet("t1", (1, 2, 8, 2)),
    "fasternet_t2": lambda: _fasternet("t2", (1, 2, 8, 2)),
    "stdc1_seg": lambda: _stdc_seg("STDCNet813", (2, 2, 2)),
    "stdc2_seg": lambda: _stdc_seg("STDCNet1446", (4, 5, 3)),
    "ghostnet_1x": _ghostnet_1x,
    "shufflenetv2_1x": _shufflenetv2_1x,
    "mobilenetv3_large": _mobilenetv3_large,
    "cgnet": _cgnet,
    "fast_scnn": _fast_scnn,
    "enet": _enet,
    "seaformer_tiny": _seaformer_tiny,
    "topformer_tiny": _topformer_tiny,
    "ddrnet_23_slim": lambda: _ddrnet("DDRNet_23_slim", 32, 64),
    "ddrnet_23": lambda: _ddrnet("DDRNet_23", 64, 128),
    "pidnet_s": lambda: _pidnet(2, 3, 32, False),
    "pidnet_m": lambda: _pidnet(2, 3, 64, False),
    "pidnet_l": lambda: _pidnet(3, 4, 64, True),
    "bisenetv1": _bisenetv1,
    "bisenetv2": _bisenetv2,
}


def names() -> list[str]:
    """Presets whose official PyTorch checkpoints import (PP-LiteSeg's are Paddle's; DWRSeg has no code)."""
    return sorted(_PLANS)


def plan(preset: str) -> Plan:
    presets.get(preset)  # an unknown name: the presets' own message with close matches
    if preset not in _PLANS:
        raise WeightsError(f"preset {preset!r} has no official PyTorch checkpoint to import; presets that do: "
                           + ", ".join(names()))
    return _PLANS[preset]()


# ------------------------------------------------------------------------------------------ report
Shape = tuple[int, ...]


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_checkpoint` did, tensor by tensor."""

    preset: str
    num_classes: int
    source: str
    loaded: tuple[tuple[str, str], ...]  # (official key, our key), in our state-dict order
    unused: tuple[tuple[str, Shape, str], ...]  # (official key, shape, why it has no place)
    aliases: tuple[tuple[str, str], ...]  # (official key, the official key it duplicates)
    fresh: tuple[tuple[str, str], ...]  # (our key, why): initialised here, not from the checkpoint
    zeroed: tuple[str, ...]  # our num_batches_tracked keys the checkpoint lacks, set to 0
    cast: tuple[tuple[str, str], ...]  # (our key, the checkpoint's dtype) converted to ours

    def lines(self) -> list[str]:
        out = [f"{self.preset}: {len(self.loaded)} tensors loaded from the checkpoint of {self.source}; "
               f"{self.num_classes} classes"]
        if self.aliases:
            out.append(f"  {len(self.aliases)} tensors are second names of loaded ones (identical values), "
                       f"e.g. {self.aliases[0][0]} = {self.aliases[0][1]}")
        if self.zeroed:
            out.append(f"  {len(self.zeroed)} BatchNorm num_batches_tracked counters absent from the checkpoint "
                       "(set to 0; inference does not read them)")
        for key, dtype in self.cast:
            out.append(f"  cast to float32: {key} (was {dtype})")
        if self.fresh:
            why: dict[str, list[str]] = {}
            for key, reason in self.fresh:
                why.setdefault(reason, []).append(key)
            for reason, keys in why.items():
                mods = sorted({k.split(".")[0] for k in keys})
                where = f"{_common_prefix(keys)}*" if len(mods) == 1 else ", ".join(f"{m}.*" for m in mods)
                kind = "training only" if mods == ["train_heads"] else "the network outside the backbone"
                out.append(f"  initialised here, not from the checkpoint ({len(keys)} tensors, {kind}): "
                           f"{where} - {reason}")
        if self.unused:
            out.append(f"  unused: {len(self.unused)} official tensors have no place in the preset:")
            by_reason: dict[str, list[str]] = {}
            for key, shape, reason in self.unused:
                by_reason.setdefault(reason, []).append(f"{key} {list(shape)}")
            for reason, keys in by_reason.items():
                out.append(f"    {reason}:")
                out.extend(f"      {k}" for k in keys)
        else:
            out.append("  unused: none (every official tensor was loaded)")
        return out


def _common_prefix(keys: list[str]) -> str:
    parts = [k.split(".") for k in keys]
    common = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return ".".join(common) + "." if common else ""


# ------------------------------------------------------------------------------------------ reading
def _fmt_shape(t: torch.Tensor | Shape) -> str:
    return str(list(t.shape if isinstance(t, torch.Tensor) else t))


def load_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a checkpoint file (or mapping), unwrapped; and a name for messages.

    Loads with ``weights_only=True``; unwraps ``state_dict`` / ``model`` and DataParallel's ``module.``.
    """
    if not isinstance(source, (str, os.PathLike)):  # already loaded
        return _unwrap(source, "the checkpoint"), "the checkpoint"
    path = Path(source)
    name = str(path)
    if not path.is_file():
        raise WeightsError(f"{name}: cannot read the checkpoint (no such file)" if not path.exists()
                           else f"{name}: cannot read the checkpoint (not a file)")
    if path.stat().st_size == 0:
        raise WeightsError(f"{name}: the checkpoint is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on stderr; the CLI speaks once
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        with open(path, "rb") as f:
            head = f.read(4)
        if not (head.startswith(b"\x80") or head.startswith(b"PK\x03\x04")):  # neither a pickle nor torch's zip
            raise WeightsError(f"{name}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)") \
                from None
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            what = f" (it holds a {found.group(1)})" if found else ""
            raise WeightsError(f"{name}: not a checkpoint of tensors: torch.load(weights_only=True) refuses it"
                               f"{what}; nasseg loads only tensors and plain containers") from None
        raise WeightsError(f"{name}: not a PyTorch checkpoint ({text.splitlines()[0] if text else 'unreadable'})") \
            from None
    except (EOFError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, EOFError) or "PytorchStreamReader" in first or "central directory" in first:
            raise WeightsError(f"{name}: the checkpoint is truncated or corrupt ({first.split('. ')[0]})") from None
        raise WeightsError(f"{name}: not a PyTorch checkpoint ({first})") from None
    except OSError as e:
        raise WeightsError(f"{name}: cannot read the checkpoint ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - any other unpickling failure of a file that is not a checkpoint
        first = str(e).splitlines()[0] if str(e) else ""
        raise WeightsError(f"{name}: not a PyTorch checkpoint (unpickling failed: {type(e).__name__}"
                           f"{' ' + first if first else ''})") from None
    return _unwrap(obj, name), name


def _unwrap(obj: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping) and not isinstance(obj.get(key), torch.Tensor):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        what = "an empty mapping" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise WeightsError(f"{name}: not a checkpoint: it holds {what}, not a state dict of tensors")
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise WeightsError(f"{name}: not a state dict: entry {k!r} holds a {type(v).__name__}, not a tensor")
        out[k] = v
    if all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


# ------------------------------------------------------------------------------------------ matching
def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _suffix(key: str, prefix: str) -> str:
    return key[len(prefix) + 1:] if prefix else key


def _kind(key: str, keys: set[str] | dict[str, Any]) -> str:
    """'bn' for a BatchNorm's tensors (its module has running statistics), else 'other'."""
    module = key.rsplit(".", 1)[0] if "." in key else ""
    return "bn" if f"{module}.running_mean" in keys or f"{module}.running_var" in keys else "other"


@dataclass
class _Misfit:
    order: int  # position in the checkpoint (official) or len(checkpoint) + our position (ours)
    message: str


def import_checkpoint(preset: str, checkpoint: str | os.PathLike | Mapping[str, Any]
                      ) -> tuple[dict[str, torch.Tensor], ImportReport]:
    """An official checkpoint as a state dict of ``build(preset genome, report.num_classes)``.

    ``checkpoint`` is a path or an already loaded mapping.  For the STDC-Seg and ERFNet presets it may also be the
    backbone's own ImageNet checkpoint (STDCNet813 / STDCNet1446, e.g. ``STDCNet813M_73.91.tar``; ERFNet's
    ``erfnet_encoder_pretrained.pth.tar``): its tensors fill the encoder stages, the decoder and heads stay as
    built (seed 0, listed as fresh), its ImageNet classifier is listed unused; ``nasseg search --init`` then
    warm-starts the stages a candidate shares with the preset.  Raises :class:`WeightsError` with one line for a
    file that is not a readable checkpoint and for a checkpoint of another network (naming the first official
    key, with its shape, that does not fit).
    """
    p = plan(preset)
    pr = presets.get(preset)
    ck, name = load_checkpoint(checkpoint)
    backbone_only = False
    if p.backbone is not None:  # the backbone's own (ImageNet) checkpoint: re-prefix its keys as the full network's
        theirs, full = p.backbone
        backbone_only = not any(k.startswith(full) for k in ck) and any(k.startswith(theirs or "features.")
                                                                          for k in ck)
        if backbone_only:
            ck = {(full + k[len(theirs):]) if k.startswith(theirs) else k: v for k, v in ck.items()}
    wrapped: list[tuple[str, Shape, str]] = []
    if p.wrapper is not None and any(k.startswith(p.wrapper[0]) for k in ck):
        prefix, why = p.wrapper
        wrapped = [(k, tuple(v.shape), why) for k, v in ck.items() if not k.startswith(prefix)]
        ck = {k[len(prefix):]: v for k, v in ck.items() if k.startswith(prefix)}
    order = {k: i for i, k in enumerate(ck)}

    key, dim = p.classes
    cls = ck.get(key)
    num_classes = int(cls.shape[dim]) if isinstance(cls, torch.Tensor) and cls.dim() > dim else pr.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            net = build(pr.genome, num_classes)
        except NassegError as e:
            raise WeightsError(f"{name}: {key} {_fmt_shape(cls)} gives {num_classes} classes, which preset "
                               f"{preset} cannot be built with: {e}") from None
    ours = net.state_dict()

    mine = [path for path, _ in net.stage_parts()]  # our encoder modules, in the order Plan.encoder lists
    if len(mine) != len(p.encoder):  # a plan that does not describe its preset: a bug, not the user's input
        raise AssertionError(f"plan {preset}: {len(p.encoder)} official encoder modules for {len(mine)} of ours")
    pairs = list(zip(p.encoder, mine)) + ([] if backbone_only else list(p.pairs))

    misfits: list[_Misfit] = []
    source_of: dict[str, str] = {}  # our key -> official key
    aliases: list[tuple[str, str]] = []
    unused: list[tuple[str, Shape, str]] = list(wrapped)

    # every official key is a second name of another, unused, or inside exactly one paired module
    for k, v in ck.items():
        canonical = k
        for pattern, repl in p.aliases:
            canonical = re.sub(pattern, repl, canonical)
        if canonical != k:
            if canonical not in ck or ck[canonical].shape != v.shape or not torch.equal(ck[canonical], v):
                misfits.append(_Misfit(order[k], f"{k} {_fmt_shape(v)} should be a second name of {canonical}, "
                                                 "which the checkpoint lacks or holds with other values"))
            aliases.append((k, canonical))
            continue
        why = next((r for m, r in p.unused if _under(k, m)), None)
        if why is not None:
            unused.append((k, tuple(v.shape), why))
        elif not any(_under(k, off) for off, _ in pairs):
            misfits.append(_Misfit(order[k], f"{k} {_fmt_shape(v)} has no place in preset {preset} (the official "
                                             "network has no module of that name)"))
    skip = {k for k, _ in aliases} | {k for k, _, _ in unused}

    for off, mod in pairs:
        mine_k = [k for k in ours if _under(k, mod)]
        if not mine_k and not any(_under(k, off) for k in ck):
            continue  # a module without tensors on both sides (ShuffleNet V2's max pool)
        if not mine_k:  # a plan pair naming a module we do not have: a bug in the plan, not the user's input
            raise AssertionError(f"plan {preset}: our module {mod!r} holds no tensors")
        _match(off, mod, [k for k in ck if _under(k, off) and k not in skip], mine_k, ck, ours, source_of,
               misfits, order)

    zeroed: list[str] = []
    fresh: list[tuple[str, str]] = []
    for i, k in enumerate(ours):
        if k in source_of:
            continue
        module = next((m for m in dict(p.fresh) if _under(k, m)), None)
        if module is not None:
            fresh.append((k, dict(p.fresh)[module]))
            continue
        if backbone_only and not any(_under(k, m) for _, m in pairs):
            fresh.append((k, "not in a backbone checkpoint: as built (seed 0)"))
            continue
        off = next((o for o, m in pairs if _under(k, m)), None)
        if k.endswith(".num_batches_tracked") and off is not None \
                and not any(t.endswith(".num_batches_tracked") for t in ck if _under(t, off)):
            zeroed.append(k)  # the official module's BatchNorms keep no counter (InPlaceABN)
            continue
        misfits.append(_Misfit(len(ck) + i, f"the checkpoint has nothing for {k} {_fmt_shape(ours[k])}"
                                            + (f" (looked under official {off}.*)" if off else "")))
    if misfits:
        first = min(misfits, key=lambda m: m.order)
        raise WeightsError(f"{name} does not fit preset {preset} ({p.source.split(' ')[0]}): {first.message}")

    state: dict[str, torch.Tensor] = {}
    cast: list[tuple[str, str]] = []
    for k, t in ours.items():
        if k not in source_of:  # initialised here, or a zeroed counter
            state[k] = t.detach().clone() if k not in zeroed else torch.zeros_like(t)
            continue
        v = ck[source_of[k]]
        if v.dtype != t.dtype:
            if v.is_floating_point() and t.is_floating_point():
                cast.append((k, str(v.dtype).removeprefix("torch.")))
            elif v.is_floating_point() or t.is_floating_point():
                raise WeightsError(f"{name}: {source_of[k]} holds {v.dtype}, {k} needs {t.dtype}")
            v = v.to(t.dtype)
        state[k] = v.detach().clone().contiguous()
    net.load_state_dict(state, strict=True)  # the contract, checked: exactly our keys and shapes
    report = ImportReport(
        preset=preset, num_classes=num_classes, source=p.source,
        loaded=tuple((source_of[k], k) for k in ours if k in source_of),
        unused=tuple(unused), aliases=tuple(aliases), fresh=tuple(fresh), zeroed=tuple(zeroed), cast=tuple(cast),
    )
    return state, report


def _match(off: str, mod: str, theirs: list[str], mine: list[str], ck: Mapping[str, torch.Tensor],
           ours: Mapping[str, torch.Tensor], source_of: dict[str, str], misfits: list[_Misfit],
           order: Mapping[str, int]) -> None:
    """Pair the tensors of one official module with those of ours (see the module docstring)."""
    left_t = {_suffix(k, off): k for k in theirs}
    left_m = {_suffix(k, mod): k for k in mine}
    # 1. identical relative names and shapes
    for s in list(left_m):
        if s in left_t and ck[left_t[s]].shape == ours[left_m[s]].shape:
            source_of[left_m.pop(s)] = left_t.pop(s)

    # 2. the rest in order, among tensors of the same kind, leaf name and shape
    def group(keys: dict[str, str], sd: Mapping[str, torch.Tensor]) -> dict[tuple, list[str]]:
        out: dict[tuple, list[str]] = {}
        for k in keys.values():
            out.setdefault((_kind(k, sd), k.rsplit(".", 1)[-1], tuple(sd[k].shape)), []).append(k)
        return out

    gt, gm = group(left_t, ck), group(left_m, ours)
    for g, ks in gt.items():
        mk = gm.get(g, [])
        for a, b in zip(ks, mk):
            source_of[b] = a
        for a in ks[len(mk):]:
            free = ", ".join(f"{_suffix(k, mod)} {_fmt_shape(ours[k])}" for k in left_m.values()
                             if k not in source_of and k.rsplit(".", 1)[-1] == a.rsplit(".", 1)[-1])
            misfits.append(_Misfit(order[a], f"{a} {_fmt_shape(ck[a])} does not fit {mod}"
                                             + (f" (free there: {free})" if free else "")))


# ------------------------------------------------------------------------------------------ warm start
def preset_state(preset: str, checkpoint: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The preset's state dict from ``checkpoint``: either what ``nasseg weights import`` wrote (our key names,
    which ``build(preset genome)`` loads as is) or the official checkpoint itself (imported here).  Returns the
    state dict and a one-line description of what was read."""
    state, name = load_checkpoint(checkpoint)
    p = presets.get(preset)
    ours = build(p.genome, p.num_classes).state_dict()
    stage_keys = [k for k in ours if k.startswith("stages.")]
    if stage_keys and all(k in state and tuple(state[k].shape) == tuple(ours[k].shape) for k in stage_keys):
        return dict(state), f"{name} (nasseg weights of {preset})"
    imported, report = import_checkpoint(preset, state)
    return imported, f"{name} (official {preset} checkpoint, imported: {len(report.loaded)} tensors)"


def shared_stages(genome: Any, preset_genome: Any) -> tuple[int, ...]:
    """Indices of the leading stages of ``genome`` that are structurally identical to ``preset_genome``'s (same
    block, depth, width, stride, arguments, per-block arguments and downsampling; the stages before them too,
    so their input channels agree): the stages a warm start can fill."""
    n = 0
    while n < min(len(genome.stages), len(preset_genome.stages)) and genome.stages[n] == preset_genome.stages[n]:
        n += 1
    return tuple(range(n))


def stage_tensors(state: Mapping[str, torch.Tensor], stages: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` that belong to ``stages`` (``stages.<i>.`` keys)."""
    prefixes = tuple(f"stages.{i}." for i in stages)
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


def apply_warm_start(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy ``tensors`` (a subset of the model's own state dict keys, e.g. :func:`stage_tensors`) into ``model``;
    every key must exist with the same shape (WeightsError otherwise).  Returns the keys copied."""
    own = model.state_dict()
    for k, v in tensors.items():
        if k not in own or tuple(own[k].shape) != tuple(v.shape):
            have = "missing" if k not in own else f"shape {list(own[k].shape)}"
            raise WeightsError(f"warm start: {k} {list(v.shape)} does not fit this network ({have})")
    missing = model.load_state_dict(dict(tensors), strict=False).missing_keys
    del missing  # the rest of the network stays as built
    return sorted(tensors)
