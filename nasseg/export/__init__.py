"""Export the Pareto front of a search study: one self-contained folder per architecture.

``nasseg export --storage URL --study NAME --out DIR [--top K] [--remeasure] [--retrain-steps N]
[--onnx-resolution HxW]``

1. **The front** (:func:`pareto_front`, a pure function over plain trial records): proxy mIoU
   (maximised) against measured median latency (minimised), over *qualifying* trials only: Optuna state
   COMPLETE, ``nasseg_status`` trained or reused, ``fidelity.full`` true, and latency within the
   study's budget when it has one.  Rejected, stopped (ASHA), failed, crashed, running and
   partial-fidelity trials never qualify.  Trials of one genome id collapse to the earliest *trained*
   one (the others are listed as its duplicates); distinct genomes with exactly equal (mIoU, latency)
   collapse to the earliest (listed as ties).  Members are ranked by mIoU (best first).  ``nasseg status``
   and ``nasseg search`` star exactly these trials.
2. **The bundle**, per front member, folder ``<rank>_<genome_id>``:

   * ``genome.json`` (canonical JSON, what the study stores) and ``genome.txt`` (compact string);
   * ``model.pt``: the proxy's ``state_dict`` (copied from the trial's ``weights_path``; when that file
     is gone, ``--retrain-steps N`` retrains the proxy with the study's recipe but N steps);
   * ``model.onnx``: opset :data:`ONNX_OPSET` (GridSample needs >= 16; 17 also has LayerNormalization),
     traced at ``--onnx-resolution`` (default: the study's latency resolution, the deployment size), with
     a dynamic batch and a dynamic H x W when the graph also matches PyTorch at a second resolution
     (else a static H x W, and the card says why); checked in onnxruntime against PyTorch on random
     inputs (max abs diff recorded, at most :data:`ONNX_TOLERANCE`).  When the export fails, the folder
     has no ``model.onnx``, the card and ``report.md`` say why in one line, and the exporter's full output
     is in ``onnx_export.log``;
   * ``model.json``: machine-readable facts (classes, input, checks, metrics, latency records);
   * ``README.md``: the model card.

   At the top of ``DIR``: ``pareto.csv`` (every trial, its front status and a front flag),
   ``pareto.png``, ``report.md`` (index) and ``export.json`` (manifest).  The folder is assembled
   under a temporary name and renamed at the end, so an interrupted export leaves no half bundle.
3. :func:`load` rebuilds an exported architecture with its weights, needing only the genome codec,
   ``build`` and torch (no Optuna, no search code).

The study is opened read-only (SQLite ``mode=ro``), so exporting beside a running search is safe.
Exit codes of ``nasseg export``: 0 = every chosen architecture exported and checked; 1 = some folder is
incomplete (missing weights, weights that do not fit, a failed ONNX export or check: one line per
architecture on stderr, and the same in its card and in ``report.md``); 2 = nothing written (no such
study, no qualifying trial, bad option).

The ONNX graph's divergences and limits (legacy TorchScript exporter, two replaced operator translations)
are described in :mod:`nasseg.export.onnx`.

Layout, one concern per module (this package re-exports the public names):

* :mod:`nasseg.export.front`: the front and the classification of trials, pure functions over plain
  trial records (no I/O, no torch, no Optuna);
* :mod:`nasseg.export.deploy`: :func:`load`;
* :mod:`nasseg.export.onnx`: :func:`export_onnx` and its operator translations;
* :mod:`nasseg.export.bundle`: :func:`export`, the orchestration (open the study, one folder per member,
  weights, re-measuring, the temporary folder and its rename);
* :mod:`nasseg.export.render`: the model card, ``pareto.csv``, ``pareto.png`` and ``report.md``;
* the ``nasseg export`` verb is :mod:`nasseg.cli.export`.

No module here imports torch, onnx, onnxruntime, pandas, matplotlib or Optuna at import time (the functions
that need them do), so ``from nasseg.export import load`` stays light (tests/test_export.py checks it).
"""

from __future__ import annotations

from nasseg.export.bundle import export
from nasseg.export.deploy import load
from nasseg.export.front import FrontMember, classify_trials, disqualification, pareto_front, trial_record
from nasseg.export.onnx import ONNX_OPSET, ONNX_TOLERANCE, export_onnx, second_resolution

__all__ = [
    "ONNX_OPSET",
    "ONNX_TOLERANCE",
    "FrontMember",
    "trial_record",
    "disqualification",
    "pareto_front",
    "classify_trials",
    "export_onnx",
    "second_resolution",
    "load",
    "export",
]

