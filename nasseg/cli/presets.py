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
    from rich import box
    from rich.table import Table

    from nasseg import presets
    from nasseg.build import build
    from nasseg.cost import count_macs, count_params

    t = Table(title="nasseg presets: inference params (M) and GMACs (conv+linear multiply-adds) at the paper "
              "resolution, ours and the official code's", box=box.SIMPLE_HEAD, pad_edge=False)
    width = max(len(n) for n in presets.names())
    t.add_column("preset", no_wrap=True, min_width=width)
    t.add_column("network", ratio=1)
    t.add_column("at", no_wrap=True, justify="right")
    for col in ("params M\nours", "params M\nofficial", "GMACs\nours", "GMACs\nofficial"):
        t.add_column(col, no_wrap=True, justify="right")
    con = console()
    for name in presets.names():
        pr = presets.get(name)
        net = build(pr.genome, pr.num_classes)
        h, w = pr.resolution
        with con.status(f"counting {name} at {h}x{w} (fvcore runs one forward pass)"):
            macs = None if a.no_macs else count_macs(net, (1, 3, h, w)).macs
        t.add_row(name, pr.title, f"{h}x{w}", f"{count_params(net) / 1e6:.3f}",
                  f"{pr.official_params / 1e6:.3f}" if pr.official_params else "-",
                  "-" if macs is None else f"{macs / 1e9:.2f}",
                  f"{pr.official_macs / 1e9:.2f}" if pr.official_macs else "-")
    con.print(t)
    return 0
