"""Rebuild an exported architecture folder as a network with its weights: :func:`load`.

Needs only the genome codec, ``build`` and torch, imported when called: no Optuna, no Ray, no search code,
no fvcore (tests/test_export.py checks ``sys.modules`` after ``from nasseg.export import load``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nasseg.errors import NassegError

__all__ = ["load"]


def load(path: str | os.PathLike) -> Any:
    """The network of an exported architecture folder, with its weights, in eval mode.

    Reads ``genome.json``, ``model.json`` (number of classes and input channels) and ``model.pt``
    (``torch.load(weights_only=True)``, loaded strictly).  Needs only the genome codec, ``build`` and
    torch.  Raises :class:`NassegError` naming the folder and the missing or broken file.
    """
    import torch

    from nasseg.build import build
    from nasseg.genome import from_json

    folder = Path(path)
    if not (folder / "genome.json").is_file():
        inside = sorted(p.name for p in folder.iterdir() if (p / "genome.json").is_file()) if folder.is_dir() else []
        hint = f"; architecture folders in it: {', '.join(inside)}" if inside else ""
        raise NassegError(f"{folder}: not an exported architecture folder (no genome.json){hint}")
    try:
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        num_classes, in_channels = int(meta["num_classes"]), int(meta.get("in_channels", 3))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NassegError(f"{folder / 'model.json'}: cannot read the number of classes ({e})") from None
    genome = from_json((folder / "genome.json").read_text(encoding="utf-8"))
    weights = folder / "model.pt"
    if not weights.is_file():
        raise NassegError(f"{folder}: model.pt is missing (the export could not find the proxy's weights; "
                          "export again with --retrain-steps N)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or unsafe file
        raise NassegError(f"{weights}: not a loadable state_dict ({type(e).__name__}: {str(e)[:200]})") from None
    net = build(genome, num_classes, in_channels)
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise NassegError(f"{weights}: weights do not fit genome.json: {str(e)[:300]}") from None
    return net.eval()
