"""Links: exchanges between the main path and a parallel branch of a multi-branch genome.

One module per paper family (DDRNet's bilateral fusion, PIDNet's Pag and derivative additions); each registers
with ``kind="link"`` (constructor ``(main_channels, branch_channels, scale, *, args)``, forward
``(main, branch) -> (main, branch)``; see :mod:`nasseg.registry`).  Importing the package registers them.
"""

from nasseg.links import (
    ddrnet,  # noqa: F401
    pidnet,  # noqa: F401
)
