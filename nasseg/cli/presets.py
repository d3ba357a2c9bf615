"""``nasseg presets``: the paper presets with params and GMACs at their paper resolution, beside the
official code's counts."""

from __future__ import annotations

import argparse

from nasseg.cli.common import console

HELP = "paper presets with params and GMACs"




# ------------------------------------------------------------------------------------------ presets
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster)")


def run(a: argparse.Namespace) -> int:
    from rich.table import Table

    from nasseg import presets
    from nasseg.build import build
    from nasseg.cost import count_macs, count_params

    t = Table(title="nasseg presets (inference params; MACs = conv+linear multiply-adds at the paper resolution)")
    for col in ("preset", "network", "resolution", "params", "official params", "GMACs", "official GMACs"):
        t.add_column(col, justify="right" if col not in ("preset", "network") else "left")
    con = console()
    for name in presets.names():
        pr = presets.get(name)
        net = build(pr.genome, pr.num_classes)
        h, w = pr.resolution
        with con.status(f"counting {name} at {h}x{w} (fvcore runs one forward pass)"):
            macs = None if a.no_macs else count_macs(net, (1, 3, h, w)).macs
        t.add_row(name, pr.title, f"{h}x{w}", f"{count_params(net) / 1e6:.3f} M",
                  f"{pr.official_params / 1e6:.3f} M" if pr.official_params else "-",
                  "-" if macs is None else f"{macs / 1e9:.2f}",
                  f"{pr.official_macs / 1e9:.2f}" if pr.official_macs else "-")
    con.print(t)
    return 0
