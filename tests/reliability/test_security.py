"""Security: no unsafe deserialisation or code evaluation anywhere in the repository's Python, and storage
passwords never reach a log line or an error message."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nasseg import study as St
from nasseg.errors import StorageError
from tests.reliability.common import search_cmd

ROOT = Path(__file__).resolve().parents[2]
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}


def _sources() -> list[Path]:
    files = [p for d in ("nasseg", "tests", "bench") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 30
    return files


def _findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod, attr = node.value.id, node.attr
            if mod == "yaml" and attr in UNSAFE_YAML:
                bad.append(f"{where}: yaml.{attr} (use yaml.safe_load or a yaml.SafeLoader subclass)")
            if mod in ("pickle", "cPickle", "marshal", "dill", "cloudpickle") and attr.startswith("load"):
                bad.append(f"{where}: {mod}.{attr} deserialises code")
            if mod == "os" and attr in ("system", "popen"):
                bad.append(f"{where}: os.{attr} runs a shell")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("eval", "exec"):
            bad.append(f"{where}: {f.id}()")
        if isinstance(f, ast.Name) and f.id in ("compile", "__import__") and not (
                node.args and isinstance(node.args[0], ast.Constant)):  # __import__("os") is harmless
            bad.append(f"{where}: {f.id}() of a computed string")
        if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) \
                and f.value.id == "torch":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            if not safe:
                bad.append(f"{where}: torch.load without weights_only=True")
        for k in node.keywords:
            if k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                bad.append(f"{where}: a subprocess with shell=True")
    return bad


def test_no_unsafe_yaml_eval_exec_pickle_or_torch_load():
    bad = [b for p in _sources() for b in _findings(p)]
    assert not bad, "\n".join(bad)


def test_the_scanner_catches_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import yaml, torch, pickle, os\nyaml.load(s, Loader=yaml.Loader)\neval('1')\nexec('x=1')\n"
                     "torch.load('w.pt')\ntorch.load('w.pt', weights_only=False)\npickle.loads(b'')\n"
                     "os.system('ls')\nsubprocess.run('ls', shell=True)\ntorch.load('w.pt', weights_only=True)\n"
                     "__import__(name)\n__import__('os')\n")
    found = _findings(probe)
    assert len(found) == 10, found


@pytest.mark.parametrize("url, shown", [
    ("postgresql://bob:s3cret@db.example/nas", "postgresql://bob:***@db.example/nas"),
    ("postgresql+psycopg2://bob:s3cret@db:5432/nas?sslmode=require",
     "postgresql+psycopg2://bob:***@db:5432/nas?sslmode=require"),
    ("postgresql://bob:p%40ss%3Aw%2Frd@db/nas", "postgresql://bob:***@db/nas"),  # escaped @ : /
    ("postgresql://bob:s3c@ret@db/nas", "postgresql://bob:***@db/nas"),  # an unescaped @ in the password
    ("postgresql://bob@db/nas?password=s3cret", "postgresql://bob@db/nas?password=***"),
    ("postgresql://bob@db/nas?sslmode=x&password=s3cret&x=1", "postgresql://bob@db/nas?sslmode=x&password=***&x=1"),
    ("mysql://root:s3cret@localhost/nas", "mysql://root:***@localhost/nas"),
    ("sqlite:///runs/study.db", "sqlite:///runs/study.db"),
    ("sqlite:////abs/a:b@c/study.db", "sqlite:////abs/a:b@c/study.db"),
    ("host=db user=bob password=s3cret dbname=nas", "host=db user=bob password=*** dbname=nas"),
])
def test_mask_url(url, shown):
    assert St.mask_url(url) == shown
    assert "s3cret" not in St.mask_url(url) and "ret@" not in St.mask_url(url).split("//")[-1][:9]


def test_errors_scrub_the_password_however_a_library_quotes_it():
    url = "postgresql://bob:p%40ss%3Aw%2Frd@127.0.0.1:1/nas"
    text = "failed for postgresql://bob:p%40ss%3Aw%2Frd@127.0.0.1:1/nas (password 'p@ss:w/rd' rejected)"
    assert "p@ss:w/rd" not in St.scrub(text, url) and "p%40ss" not in St.scrub(text, url)
    with pytest.raises(StorageError) as e:
        St.open_storage("postgresql://bob:p%40ss%3Aw%2Frd@127.0.0.1:1/nas")
    assert "p@ss" not in str(e.value) and "p%40ss" not in str(e.value) and "bob:***@127.0.0.1:1" in str(e.value)


def test_a_search_on_postgresql_never_prints_its_password(postgres_url, tmp_path, monkeypatch):
    """The whole `nasseg search` and `nasseg status` output (logs, tables, summaries) on a real server."""
    import contextlib
    import io

    from nasseg.cli import main

    password = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert len(password) >= 8
    monkeypatch.chdir(tmp_path)  # Ray-less, but artifacts default to ./runs for a PostgreSQL study
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(search_cmd(postgres_url, "pw", 2, steps=2)[3:]) == 0
        assert main(["status", "--storage", postgres_url, "--study", "pw"]) == 0
    everything = out.getvalue() + err.getvalue()
    assert password not in everything
    assert St.mask_url(postgres_url) in "".join(err.getvalue().split())  # the summary names the masked URL
