"""``nasseg export --storage URL --study NAME --out DIR [--top K] [--remeasure] [--retrain-steps N]
[--onnx-resolution HxW]``.

Everything command-line of the export, and nothing else: :func:`add_arguments` parses, :func:`run` calls
:func:`nasseg.export.export` and prints its summary.  Exit codes: 0 = every chosen architecture exported and
checked; 1 = some folder is incomplete (one line per architecture on stderr); 2 = nothing written
(``nasseg.cli.main`` reports the :class:`NassegError`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasseg.cli.common import check_output_path, parse_resolution
from nasseg.export.bundle import export
from nasseg.export.render import _fmt, _onnx_hw_text

HELP = "export a study's Pareto front (weights, ONNX, cards)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``nasseg export``."""
    p.add_argument("--storage", required=True, help="sqlite:///path.db or postgresql://... (opened read-only)")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--out", required=True, help="output folder (created; must not exist or be empty)")
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help="export only the K best-mIoU members of the front")
    p.add_argument("--remeasure", action="store_true", help="re-measure each exported model's latency here too")
    p.add_argument("--retrain-steps", type=int, default=None, metavar="N",
                   help="when a trial's weights file is gone, retrain its proxy for N steps (study recipe)")
    p.add_argument("--device", default=None, help="device for --remeasure (default: the study's latency device, "
                   "or cpu when it is not available here)")
    p.add_argument("--onnx-resolution", default=None, metavar="HxW",
                   help="H x W at which model.onnx is traced and checked (default: the study's latency resolution, "
                   "the deployment size); the graph keeps a dynamic H x W when it also verifies at a second "
                   "resolution, else a static one")
    p.add_argument("--latency-backend", choices=("torch", "onnxruntime", "tensorrt"), default=None,
                   help="runtime --remeasure times each model on (default: the study's)")
    p.add_argument("--latency-precision", choices=("fp32", "fp16", "bf16"), default=None,
                   help="precision --remeasure times each model in (default: the study's)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous nasseg export in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress lines while exporting")


def run(a: argparse.Namespace) -> int:
    """Export, print one line per architecture; 1 when some folder is incomplete, else 0."""
    from rich.console import Console

    check_output_path(a.out, "--out", folder=True)
    con = Console(stderr=True, highlight=False, soft_wrap=True)
    onnx_resolution = (None if a.onnx_resolution is None
                       else parse_resolution(a.onnx_resolution, "--onnx-resolution"))
    s = export(a.storage, a.study, a.out, top=a.top, remeasure=a.remeasure, retrain_steps=a.retrain_steps,
               device=a.device, overwrite=a.overwrite, onnx_resolution=onnx_resolution,
               latency_backend=a.latency_backend, latency_precision=a.latency_precision,
               progress=not a.no_progress)
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"exported {s['exported']} of {s['front_size']} front architecture(s) of study {a.study!r} to "
              f"{s['out']} in {s['wall_seconds']:.1f} s; max ONNX diff {_fmt(s['max_onnx_diff'], '.3g')}")
    for i in s["members"]:
        onnx = f"ONNX {_onnx_hw_text(i['onnx'])}" if i.get("onnx") else "no ONNX"
        out.print(f"  {i['folder']}: trial {i['trial']}, mIoU {i['miou']:.4f}, {i['latency_ms']:.3f} ms, {onnx}"
                  + (" [INCOMPLETE]" if i["problems"] else ""))
    out.print(f"index: {Path(s['out']) / 'report.md'}")
    for i in s["incomplete"]:  # one line per architecture; the exporter's full text is in its folder
        con.print(f"nasseg: {i['folder']} (trial {i['trial']}) is incomplete: " + "; ".join(i["problems"]))
    return 1 if s["incomplete"] else 0
