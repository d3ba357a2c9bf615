"""``nasseg weights import PRESET CHECKPOINT --out FILE``: an official checkpoint as a preset's state dict.

The written file is a plain state dict (``torch.save``) that ``build(preset genome, N)`` loads with
``load_state_dict(strict=True)`` after ``torch.load(FILE, weights_only=True)``; N, the class count, is read
from the checkpoint and printed.  ``nasseg.weights`` documents the mapping.
"""

from __future__ import annotations

import argparse
import os

from nasseg.cli.common import check_output_path

HELP = "import an official checkpoint into a preset (weights import PRESET CHECKPOINT --out FILE)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    # no nasseg.weights import here (it imports torch): every verb's parser is built on every call
    p.add_argument("action", choices=("import",),
                   help="import: read an official PyTorch checkpoint and write the preset's state dict")
    p.add_argument("preset", help="the preset the checkpoint is for: one with official PyTorch code (stdc1_seg, "
                   "stdc2_seg, regseg, fasternet_t0/t1/t2, erfnet, lednet, espnet, espnet_c, ghostnet_1x, "
                   "shufflenetv2_1x, mobilenetv3_large, cgnet, fast_scnn, "
                   "enet, seaformer_tiny, topformer_tiny, ddrnet_23_slim, ddrnet_23, pidnet_s, pidnet_m, pidnet_l, "
                   "bisenetv1, bisenetv2)")
    p.add_argument("checkpoint", help="the official checkpoint file (a state dict, bare or under 'state_dict' or "
                   "'model', with or without 'module.' prefixes; PIDNet's also under its training wrapper's "
                   "'model.'); read with torch.load(weights_only=True)")
    p.add_argument("--out", required=True, help="the state dict file to write (torch.save)")


def run(a: argparse.Namespace) -> int:
    import torch

    from nasseg.weights import import_checkpoint

    out = check_output_path(a.out, "--out")
    state, report = import_checkpoint(a.preset, a.checkpoint)
    tmp = out.with_name(out.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    for line in report.lines():
        print(line)
    print(f"wrote {out}: build(presets.get({a.preset!r}).genome, {report.num_classes}).load_state_dict("
          f"torch.load({str(out)!r}, weights_only=True))")
    return 0
