"""``nasseg show GENOME_OR_PRESET``: a genome's stages, params and MACs."""

from __future__ import annotations

import argparse

from nasseg.cli.common import console, parse_resolution, resolve_genome
from nasseg.errors import NassegError

HELP = "a genome's stages, params and MACs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("genome", help="a preset name, a genome string (v1|...), genome JSON or a file holding one")
    p.add_argument("--resolution", default=None, help="HxW for the MAC count (default: the preset's, or 512x1024)")
    p.add_argument("--num-classes", type=int, default=None, help="classes (default: the preset's, or 19)")


def run(a: argparse.Namespace) -> int:
    from rich.table import Table

    from nasseg import genome as G
    from nasseg.build import build
    from nasseg.cost import count_macs, count_params

    g, preset = resolve_genome(a.genome)
    n = a.num_classes if a.num_classes is not None else (preset.num_classes if preset else 19)
    if n < 1:
        raise NassegError(f"--num-classes = {n} must be a positive integer")
    h, w = parse_resolution(a.resolution, "--resolution") if a.resolution else (
        preset.resolution if preset else (512, 1024))
    net = build(g, n)
    con = console()
    if preset:
        con.print(f"[bold]{preset.title}[/bold] — {preset.paper}")
    con.print(f"genome  {G.to_string(g)}")
    con.print(f"id      {G.genome_id(g)}")
    t = Table(title="stages")
    for col in ("#", "block", "depth", "width", "stride", "out ch", "output stride", "args"):
        t.add_column(col)
    for i, (s, st) in enumerate(zip(g.stages, net.stages)):
        args = ", ".join(f"{k}={v}" for k, v in s.args)
        if s.block_args:
            args += f" (+ per-block {', '.join(k for k, _ in s.block_args[0])})"
        t.add_row(str(i), (f"{s.down.name} > " if s.down else "") + s.block, str(s.depth), str(s.width),
                  str(s.stride), str(st.out_channels), f"1/{net.stage_strides[i]}", args)
    con.print(t)
    for b, (br, mod) in enumerate(zip(g.branches, net.branches)):
        bt = Table(title=f"branch {b}, from " + ("the image" if br.source == -1 else f"stage {br.source}")
                   + (", links " + ", ".join(f"{ln.module.name} after stage {ln.at}" for ln in br.links)
                      if br.links else ""))
        for col in ("#", "beside stage", "block", "depth", "width", "stride", "out ch", "args"):
            bt.add_column(col)
        for j, (s, st) in enumerate(zip(br.stages, mod.stages)):
            args = ", ".join(f"{k}={v}" for k, v in s.args) + (" (+ per-block)" if s.block_args else "")
            bt.add_row(str(j), str(br.source + 1 + j), (f"{s.down.name} > " if s.down else "") + s.block,
                       str(s.depth), str(s.width), str(s.stride), str(st.out_channels),
                       args + (" [relu in]" if s.relu_in else ""))
        con.print(bt)
    d = g.decoder
    taps = [f"branch {b}" for b in d.branch_taps] + [f"stage {t}" for t in d.taps]
    con.print(f"decoder {d.kind} over {', '.join(taps)}"
              + (f", context {d.context.name} ({d.context_width})" if d.context.name != "none" else "")
              + (", fusions " + " / ".join(f"{f.name}:{f.width}" + (f" (guide: branch {f.guide})" if f.guide >= 0
                                                                     else "") for f in d.fusions)
                 if d.fusions else ""))
    mc = count_macs(net, (1, 3, h, w))
    con.print(f"params  {count_params(net):,} (inference; {sum(p.numel() for p in net.parameters()):,} with "
              "training-only heads)")
    con.print(f"MACs    {mc.macs / 1e9:.3f} G at {h}x{w} (conv+linear; fvcore-all {mc.macs_all / 1e9:.3f} G)")
    if mc.skipped_ops:
        con.print("skipped by fvcore: " + ", ".join(f"{k} x{v}" for k, v in mc.skipped_ops.items()))
    if preset and preset.official_params:
        con.print(f"official {preset.official_params:,} params"
                  + (f", {preset.official_macs / 1e9:.3f} GMACs" if preset.official_macs else "")
                  + f"  ({preset.source})")
    return 0
