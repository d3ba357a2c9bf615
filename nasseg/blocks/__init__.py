"""Registered modules of this family; importing the package registers them."""

from nasseg.blocks import basic  # noqa: F401
from nasseg.blocks import stdc  # noqa: F401
from nasseg.blocks import regseg  # noqa: F401
from nasseg.blocks import fasternet  # noqa: F401
from nasseg.blocks import espnet  # noqa: F401
from nasseg.blocks import mobilenet  # noqa: F401
from nasseg.blocks import lednet  # noqa: F401
from nasseg.blocks import erfnet  # noqa: F401
from nasseg.blocks import dwrseg  # noqa: F401
