"""Bad input through the command line: one line naming the culprit and what is valid, exit code 2, no
traceback, and an existing study left byte-for-byte as it was."""

from __future__ import annotations

import contextlib
import gc
import io
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import optuna
import pytest
from PIL import Image

from nasseg import study as St
from nasseg.cli import main
from tests.conftest import TINY_SPACE
from tests.reliability.common import env, fingerprint

SECRET = "s3cr3t-pw"  # must never be printed


def _base(storage: str, space: str = TINY_SPACE) -> list[str]:
    """The existing study's exact settings (so that only the bad input differs) and more trials, so that any
    case that did not fail would go on to write to the study."""
    return ["search", "--space", space, "--latency-budget-ms", "1000", "--latency-resolution", "64x128",
            "--latency-threads", "1", "--trials", "50", "--storage", storage, "--study", "existing",
            "--proxy-resolution", "32x64", "--proxy-steps", "4", "--proxy-batch", "2", "--sampler", "random",
            "--seed", "1", "--executor", "local", "--no-progress"]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _set(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option`` set to ``value`` (replaced, or appended)."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An existing study (2 trials), a copy of the tiny space, and good and broken datasets on disk."""
    root = tmp_path_factory.mktemp("bad")
    space = root / "space.yaml"
    shutil.copy(TINY_SPACE, space)
    url = f"sqlite:///{root / 'study.db'}"
    code, _, err = _cli(_set(_base(url, str(space)), "--trials", "2"))
    assert code == 0, err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="plain", storage=St.open_storage(url))  # a study nasseg did not make
    gc.collect()  # close the engines above, and move the WAL into the file: from here on, any change of the
    with sqlite3.connect(root / "study.db") as con:  # file's bytes is a write to the study
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def dataset(name: str, bad_image: bool = False, bad_label: bool = False, no_masks: bool = False) -> str:
        d = root / name
        (d / "images").mkdir(parents=True)
        if not no_masks:
            (d / "masks").mkdir()
        (d / "classes.txt").write_text("road\ncar\nsky\n")
        rng = np.random.default_rng(0)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)).save(d / "images" / f"a{i}.png")
            if not no_masks:
                Image.fromarray(rng.integers(0, 3, (32, 64), dtype=np.uint8)).save(d / "masks" / f"a{i}.png")
        if bad_image:
            (d / "images" / "a2.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        if bad_label:
            Image.fromarray(np.full((32, 64), 7, np.uint8)).save(d / "masks" / "a1.png")
        return str(d)

    files = {
        "syntax": "name: x\nstages: [\n  - {block: conv\n",
        "unknown_key": space.read_text() + "bogus: 1\n",
        "wrong_type": space.read_text().replace("width: 8, depth: 1", "width: eight, depth: 1", 1),
        "out_of_range": space.read_text().replace("expansion: [2, 3]", "expansion: [0, 3]"),
        "unknown_block": space.read_text().replace("mbconv: {", "mbconvv: {"),
        "empty": "",
        "a_list": "- 1\n- 2\n",
        "negative_width": space.read_text().replace("width: [8, 256]", "width: [-8, 256]"),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(text)
    edited = root / "edited.yaml"  # the study's space file with one more comment: a different space_sha
    edited.write_text(space.read_text() + "# edited\n")
    notdb = root / "notes.db"
    notdb.write_text("these are notes, not a database\n" * 50)
    return {
        "url": url, "space": str(space), "yaml": {k: str(v) for k, v in paths.items()}, "edited": str(edited),
        "good_ds": dataset("good"), "bad_image_ds": dataset("bad_image", bad_image=True),
        "bad_label_ds": dataset("bad_label", bad_label=True), "no_masks_ds": dataset("no_masks", no_masks=True),
        "notdb": str(notdb), "root": root,
    }


def _cases(w: dict) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (argv, substrings the one-line message must hold: the culprit and what is valid)."""
    base = _base(w["url"], w["space"])
    y = w["yaml"]

    def s(option: str, value: str) -> list[str]:
        return _set(base, option, value)

    return {
        "yaml syntax error": (s("--space", y["syntax"]), ["syntax.yaml", "line 3", "not valid YAML"]),
        "unknown key": (s("--space", y["unknown_key"]), ["unknown_key.yaml", "'bogus'", "not permitted"]),
        "wrong type": (s("--space", y["wrong_type"]), ["stages.0.width", "'eight'", "valid integer"]),
        "out-of-range argument": (s("--space", y["out_of_range"]), ["expansion", "= 0", "allowed: an integer in"]),
        "negative width": (s("--space", y["negative_width"]), ["stages.1.width", "-8"]),
        "unknown block name": (s("--space", y["unknown_block"]), ["'mbconvv'", "did you mean 'mbconv'",
                                                                  "known blocks"]),
        "empty space file": (s("--space", y["empty"]), ["empty.yaml", "must be a YAML mapping with keys"]),
        "space is a list": (s("--space", y["a_list"]), ["a_list.yaml", "must be a YAML mapping with keys"]),
        "missing space file": (s("--space", "/nonexistent/space.yaml"), ["/nonexistent/space.yaml",
                                                                         "No such file"]),
        "budget of 0 trials": (s("--trials", "0"), ["--trials = 0", "positive integer"]),
        "negative trials": (s("--trials", "-3"), ["--trials = -3", "positive integer"]),
        "latency budget 0": (s("--latency-budget-ms", "0"), ["--latency-budget-ms = 0", "positive number"]),
        "negative latency budget": (s("--latency-budget-ms", "-5"), ["--latency-budget-ms = -5", "positive"]),
        "NaN latency budget": (s("--latency-budget-ms", "nan"), ["--latency-budget-ms = nan", "positive"]),
        "latency budget not a number": (s("--latency-budget-ms", "fast"), ["--latency-budget-ms", "'fast'",
                                                                          "invalid float"]),
        "malformed resolution": (s("--latency-resolution", "64by128"), ["--latency-resolution", "'64by128'",
                                                                        "HxW"]),
        "zero proxy steps": (s("--proxy-steps", "0"), ["--proxy-steps = 0", ">= 1"]),
        "zero proxy batch": (s("--proxy-batch", "0"), ["batch_size", "= 0", "valid: an integer >= 1"]),
        "too few latency runs": (s("--latency-runs", "5"), ["--latency-runs = 5", "at least 30"]),
        "unknown latency device": (s("--latency-device", "tpu"), ["--latency-device = 'tpu'", "valid: cpu"]),
        "GPU latency device on a CPU machine": (s("--latency-device", "cuda:3"), ["--latency-device = 'cuda:3'",
                                                                                  "valid here: cpu"]),
        "unknown sampler": (s("--sampler", "bayes"), ["--sampler", "'bayes'", "choose from"]),
        "zero concurrency": (s("--concurrency", "0"), ["--concurrency = 0", ">= 1"]),
        "unreachable PostgreSQL": (s("--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/x"),
                                   ["postgresql://u:***@127.0.0.1:1/x", "Connection refused"]),
        "password in the query string": (s("--storage", f"postgresql://u@127.0.0.1:1/x?password={SECRET}"),
                                         ["password=***", "Connection refused"]),
        "unsupported storage scheme": (s("--storage", "redis://localhost/0"), ["'redis'", "valid: sqlite, "
                                                                               "postgresql"]),
        "storage not a URL": (s("--storage", "study.db"), ["'study.db'", "valid: sqlite:///path.db"]),
        "storage is a directory": (s("--storage", f"sqlite:///{w['root']}"), ["is a directory",
                                                                              "valid: sqlite:///"]),
        "storage file not a database": (s("--storage", f"sqlite:///{w['notdb']}"), ["notes.db",
                                                                                    "not a SQLite database"]),
        "dataset path does not exist": (s("--dataset", "folder:/does/not/exist"), ["/does/not/exist", "expected"]),
        "unknown dataset layout": (base + ["--dataset", "pascal:/data"], ["'pascal'", "valid layouts"]),
        "dataset in another layout": (base + ["--dataset", f"folder:{w['no_masks_ds']}"],
                                      ["no_masks/masks", "expected"]),
        "unreadable image": (base + ["--dataset", f"folder:{w['bad_image_ds']}"],
                             ["a2.png", "cannot read the image", "expected a readable image"]),
        "mask with an unknown label": (base + ["--dataset", f"folder:{w['bad_label_ds']}"],
                                       ["a1.png", "label values 7", "expected class indices 0..2"]),
        "resume with another budget": (s("--latency-budget-ms", "999"), ["'existing'", "latency_budget_ms",
                                                                          "Resume with the same settings"]),
        "resume with an edited space": (s("--space", w["edited"]), ["'existing'", "space_sha", "Resume with"]),
        "resume with another dataset": (base + ["--dataset", f"folder:{w['good_ds']}"],
                                        ["'existing'", "dataset", "Resume with"]),
        "study not made by nasseg": (s("--study", "plain"), ["'plain'", "not created by nasseg search",
                                                             "valid: a study made by nasseg search"]),
        "status of a missing study": (["status", "--storage", w["url"], "--study", "nope"],
                                      ["'nope' does not exist", "studies there: existing, plain"]),
        "status of a missing file": (["status", "--storage", f"sqlite:///{w['root']}/none.db", "--study", "x"],
                                     ["none.db", "does not exist"]),
        "malformed genome string": (["show", "v1|conv1x32s2/zzz9x8s2|chain@1~none>8:add8|-"],
                                    ["unknown block 'zzz'", "position 14", "valid codes: ", " conv, "]),
        "genome with a bad number": (["show", "v1|conv1xAs2|chain@0~none>8:add8|-"], ["conv1xAs2"]),
    }


def _assert_one_line_error(code: int, err: str, must: list[str]) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, lines
    assert lines[0].startswith("nasseg: error: ") and "Traceback" not in err
    for m in must:
        assert m in lines[0], f"{m!r} not in {lines[0]!r}"
    return lines[0]


CASE_NAMES = list(_cases({"url": "sqlite:///x", "space": "s", "yaml": dict.fromkeys(
    ("syntax", "unknown_key", "wrong_type", "out_of_range", "unknown_block", "empty", "a_list", "negative_width"),
    "y"), "edited": "e", "good_ds": "g", "bad_image_ds": "b", "bad_label_ds": "l", "no_masks_ds": "n",
    "notdb": "d", "root": "r"}))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_line_exit_2_and_leaves_the_study_alone(world, name):
    argv, must = _cases(world)[name]
    before = fingerprint(world["url"])
    code, out, err = _cli(argv)
    line = _assert_one_line_error(code, err, must)
    assert SECRET not in line + out
    assert fingerprint(world["url"]) == before, "a refused command modified the study"


def test_export_of_a_missing_study_is_one_line_exit_2(world, tmp_path):
    before = fingerprint(world["url"])
    code, _, err = _cli(["export", "--storage", world["url"], "--study", "nope", "--out", str(tmp_path / "o")])
    _assert_one_line_error(code, err, ["'nope'", "does not exist"])
    assert fingerprint(world["url"]) == before


def test_enough_bad_inputs_are_tried():
    assert len(CASE_NAMES) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unreachable PostgreSQL", "yaml syntax error", "unreadable image"])
def test_bad_input_through_the_real_command(world, name):
    """The same through a fresh `python -m nasseg` process: nothing else (warnings, logs) reaches stderr."""
    argv, must = _cases(world)[name]
    out = subprocess.run([sys.executable, "-m", "nasseg", *argv], capture_output=True, text=True, env=env(),
                         timeout=120)
    _assert_one_line_error(out.returncode, out.stderr, must)
    assert SECRET not in out.stdout + out.stderr


def test_bad_input_never_modifies_a_postgresql_study(world, postgres_url):
    """Against an existing PostgreSQL study: refused commands leave every row of every table as it was, and
    a wrong password is never echoed."""
    base = _base(postgres_url, world["space"])
    code, _, err = _cli(_set(base, "--trials", "1"))
    assert code == 0, err
    before = fingerprint(postgres_url)
    user, rest = postgres_url.split("://", 1)[1].split("@", 1)
    wrong = f"postgresql://{user.split(':')[0]}:{SECRET}@{rest}"
    cases = [
        (_set(base, "--latency-budget-ms", "999"), ["latency_budget_ms", "Resume with"]),
        (_set(base, "--trials", "0"), ["--trials = 0"]),
        (base + ["--dataset", f"folder:{world['bad_label_ds']}"], ["label values 7"]),
        (_set(base, "--storage", wrong), ["password authentication failed"]),
        (["status", "--storage", postgres_url, "--study", "nope"], ["'nope' does not exist", "existing"]),
    ]
    for argv, must in cases:
        code, out, err = _cli(argv)
        line = _assert_one_line_error(code, err, must)
        assert SECRET not in line + out and postgres_url.split("@")[0].split(":")[-1] not in line
        assert fingerprint(postgres_url) == before
