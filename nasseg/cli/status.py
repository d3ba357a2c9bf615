"""``nasseg status``: a study's trials, read-only (safe beside a running search)."""

from __future__ import annotations

from typing import Any

from nasseg.cli.common import check_output_path, wide_console
from nasseg.cli.search import print_study
from nasseg.errors import ConfigError

HELP = "a study's trials (read-only)"


def add_arguments(p: Any) -> None:
    p.add_argument("--storage", required=True, help="sqlite:///path.db or postgresql://...")
    p.add_argument("--study", required=True, help="study name ('optuna studies --storage URL' lists "
                   "them)")
    p.add_argument("--csv", default=None, help="also write the full table to this CSV file")
    p.add_argument("--limit", type=int, default=40, help="rows to print (best first)")


def run(a: Any) -> int:
    from nasseg.search.results import trials_frame
    from nasseg.study import load_study

    if a.csv:
        check_output_path(a.csv, "--csv")
    study = load_study(a.storage, a.study, readonly=True)
    print_study(study, wide_console(), a.limit)
    if a.csv:
        try:
            trials_frame(study).to_csv(a.csv, index=False)
        except OSError as e:
            raise ConfigError(f"--csv {a.csv}: cannot write it ({e.strerror or e})") from None
    return 0
