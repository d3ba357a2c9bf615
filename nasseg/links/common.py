"""What every link checks: the scale between the main path and the branch it joins."""

from __future__ import annotations

import math

from nasseg.errors import BlockArgumentError


def halvings(name: str, scale: int) -> int:
    """How many times the main path is halved relative to the branch (``log2(scale)``); a scale that is not a
    power of two >= 1 raises naming the link."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1 or scale & (scale - 1):
        raise BlockArgumentError(name, "scale", scale, "allowed: a power of two >= 1 (main stride / branch stride)")
    return int(math.log2(scale))
