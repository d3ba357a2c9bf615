"""The ``nasseg`` command line: presets and show work; every user error is one line on stderr, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nasseg import genome as G
from nasseg import presets
from nasseg.cli import main

WIDE = {**os.environ, "COLUMNS": "250"}  # rich wraps tables to the terminal width; keep names whole


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasseg.cli", *args], capture_output=True, text=True, env=WIDE,
                          timeout=timeout)


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


def _assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nasseg: error: "), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


# ------------------------------------------------------------------------------------ what works
def test_presets_without_macs(wide, capsys):
    assert main(["presets", "--no-macs"]) == 0
    out = capsys.readouterr().out
    for name in presets.names():
        assert name in out
    assert any(line.split()[:1] == ["regseg"] and "3.335" in line for line in out.splitlines())  # 3,334,951


def test_show_preset_prints_params_and_macs(wide, capsys):
    assert main(["show", "regseg", "--resolution", "256x512"]) == 0
    out = capsys.readouterr().out
    assert "params  3,334,951 (inference" in out
    assert "G at 256x512" in out
    assert G.to_string(presets.get("regseg").genome) in out
    assert G.genome_id(presets.get("regseg").genome) in out


def test_show_accepts_a_genome_string_and_a_json_file(wide, capsys, tmp_path):
    g = G.parse("v1|conv1x16s2/stdc2x32s2/stdc2x64s2|chain@1,2~gap>32:arm16/arm32|seg_head")
    assert main(["show", G.to_string(g), "--resolution", "64x128", "--num-classes", "3"]) == 0
    first = capsys.readouterr().out
    path = tmp_path / "genome.json"
    path.write_text(G.to_json(g))
    assert main(["show", str(path), "--resolution", "64x128", "--num-classes", "3"]) == 0
    second = capsys.readouterr().out
    assert G.genome_id(g) in first and G.genome_id(g) in second
    assert first == second


@pytest.mark.slow
def test_presets_and_show_as_a_subprocess():
    res = _run("presets", "--no-macs")
    assert res.returncode == 0, res.stderr
    assert all(name in res.stdout for name in presets.names())
    res = _run("show", "regseg")
    assert res.returncode == 0, res.stderr
    assert "params  3,334,951" in res.stdout and "at 1024x2048" in res.stdout
    assert "official 3,334,951 params" in res.stdout


# ----------------------------------------------------------------------------------- user errors
# (case, argv with {tmp} standing for a temporary directory, substrings of the one-line message)
BAD = [
    ("unknown preset", ["show", "regsg"], ["unknown preset 'regsg'", "did you mean regseg"]),
    ("malformed genome string", ["show", "v1|conv1x32s2|chian@0|-"], ["'chian'", "position 14"]),
    ("genome string with a bad value", ["show", "v1|stdc2x64s2(num_blocks=9)|chain@0:arm32|seg_head"],
     ["'num_blocks'", "position"]),
    ("bad --resolution", ["show", "regseg", "--resolution", "12x"], ["--resolution = '12x'", "HxW"]),
    ("zero --resolution", ["show", "regseg", "--resolution", "0x512"], ["--resolution = '0x512'"]),
    ("--num-classes 0", ["show", "regseg", "--num-classes", "0"], ["--num-classes = 0"]),
    ("missing file", ["show", "{tmp}/missing.json"], ["missing.json", "cannot read"]),
    ("a directory", ["show", "{tmp}/"], ["cannot read"]),
    ("binary file", ["show", "{tmp}/binary.json"], ["binary.json", "not UTF-8"]),
    ("bad JSON genome", ["show", "{tmp}/bad.json"], ["stages must be a list"]),
    ("unbuildable genome", ["show", "v1|conv1x32s2/dblock1x24s2/dblock3x128s2|decoder26@0,1,2|-"],
     ["stages.1.block0", "group_width"]),
]
BAD_BY_CASE = {c: (argv, needles) for c, argv, needles in BAD}


@pytest.fixture
def argv_for(tmp_path):
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00not text")
    (tmp_path / "bad.json").write_text('{"stages": 5, "decoder": {}, "heads": {}}')
    return lambda case: [a.replace("{tmp}", str(tmp_path)) for a in BAD_BY_CASE[case][0]]


@pytest.mark.parametrize("case", list(BAD_BY_CASE))
def test_bad_input_in_process(argv_for, capsys, case):
    assert main(argv_for(case)) == 2
    _assert_one_line_error(capsys.readouterr().err, *BAD_BY_CASE[case][1])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown preset", "malformed genome string", "bad --resolution", "missing file",
                                  "binary file"])
def test_bad_input_as_a_subprocess(argv_for, case):
    res = _run(*argv_for(case))
    assert res.returncode == 2, res.stderr
    _assert_one_line_error(res.stderr, *BAD_BY_CASE[case][1])
    assert res.stdout == ""


@pytest.mark.parametrize("argv,needle", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["show"], "the following arguments are required: genome"),
    (["show", "regseg", "--num-classes", "many"], "invalid int value: 'many'"),
    ([], "the following arguments are required: command"),
])
def test_argument_errors_exit_2_with_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, needle)


def test_every_option_of_every_verb_has_help_that_shows_its_default():
    import argparse

    from nasseg.cli import COMMANDS
    from nasseg.cli.common import Parser

    for name, (add, _run, _help) in COMMANDS.items():
        p = Parser(prog=f"nasseg {name}")
        add(p)
        text = " ".join(p.format_help().split())
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, f"nasseg {name} {a.option_strings or a.dest}: no help text"
            if a.option_strings and a.default not in (None, False, argparse.SUPPRESS):
                assert "default" in p._get_formatter()._get_help_string(a).lower(), (name, a.option_strings)
        assert "default: " in text or name in ("show", "presets", "weights")  # verbs without defaulted options


def test_version():
    out = subprocess.run([sys.executable, "-m", "nasseg", "--version"], capture_output=True, text=True)
    from nasseg import __version__

    assert out.returncode == 0 and out.stdout.strip() == f"nasseg {__version__}"


def test_presets_table_reads_at_80_columns():
    from nasseg import presets

    out = subprocess.run([sys.executable, "-m", "nasseg", "presets", "--no-macs"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines[1:]) <= 80
    for name in presets.names():  # every name whole, never cut to a shared prefix
        assert any(line.split()[:1] == [name] for line in lines), name
    assert "0.85" in out.stdout and "1.90" in out.stdout  # FasterNet-T1/T2's official GMACs


def test_show_cites_the_official_source_not_a_file_outside_the_repository():
    out = subprocess.run([sys.executable, "-m", "nasseg", "show", "regseg"], capture_output=True, text=True, env=WIDE)
    assert out.returncode == 0 and "RolandGao/RegSeg" in out.stdout and "shared/" not in out.stdout


# ------------------------------------------------------------------------------------------- latency flags
LATENCY_BAD = [
    (["--latency-backend", "tvm"], "argument --latency-backend: invalid choice: 'tvm'"),
    (["--latency-precision", "fp8"], "argument --latency-precision: invalid choice: 'fp8'"),
    (["--latency-backend", "onnxruntime", "--latency-precision", "fp16"],
     "--latency-precision fp16 with --latency-backend onnxruntime"),
    (["--latency-backend", "onnxruntime", "--latency-precision", "bf16"],
     "--latency-precision bf16 with --latency-backend onnxruntime"),
    (["--latency-tolerance", "-1"], "--latency-tolerance = -1.0"),
    (["--latency-max-runs", "10"], "--latency-max-runs = 10"),
]
if not __import__("torch").cuda.is_available():
    LATENCY_BAD.append((["--latency-backend", "tensorrt", "--latency-precision", "fp16"],
                        "--latency-backend tensorrt needs a CUDA device"))


@pytest.mark.parametrize("extra,needle", LATENCY_BAD, ids=[" ".join(e) for e, _ in LATENCY_BAD])
def test_bad_latency_options_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, needle):
    db = tmp_path / "new" / "study.db"
    argv = ["search", "--latency-budget-ms", "5", "--storage", f"sqlite:///{db}", "--trials", "1",
            "--executor", "local", *extra]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    assert rc == 2
    _assert_one_line_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "new").exists()


def test_search_proxy_recipe_flags_reach_the_recipe(tmp_path):
    import argparse

    from nasseg.cli import search as cli_search

    p = argparse.ArgumentParser()
    cli_search.add_arguments(p)
    base = ["--latency-budget-ms", "5", "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    plain = cli_search.config_from_args(p.parse_args(base)).recipe
    assert (plain.optimizer, plain.loss, plain.lr) == ("sgd", "ohem", 0.01)  # the recipe's own defaults
    r = cli_search.config_from_args(p.parse_args([*base, "--proxy-optimizer", "adamw", "--proxy-loss", "wce",
                                                  "--proxy-lr", "0.002"])).recipe
    assert (r.optimizer, r.loss, r.lr) == ("adamw", "wce", 0.002)
    with pytest.raises(SystemExit):
        p.parse_args([*base, "--proxy-loss", "dice"])
