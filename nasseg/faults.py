"""Test hook: kill the driver at a named point, so the reliability tests can prove that nothing is lost.

Inert unless the environment variable :data:`KILL_ENV` is set; production code only calls :func:`point`
(a dictionary look-up when unset) at the places a crash matters and :func:`arm_commit_kill` once per opened
storage.  ``NASSEG_TEST_KILL="POINT:N"`` makes the process SIGKILL itself the N-th time it reaches POINT
(ask, sampled, measured, before_tell, after_tell, result, recover, commit = inside the N-th database
transaction that wrote, after its INSERT/UPDATE statements and before its COMMIT; and in ``nasseg export``:
export_member = after an architecture's folder is written in the temporary bundle, export_swap = the bundle
complete, before the previous export is moved aside, export_aside = between moving it aside and renaming the
bundle into place, export_swapped = after that rename, before the aside folder is deleted).
``tests/reliability/test_faults.py`` restarts the search after each kill and checks that nothing was lost
or duplicated; ``tests/reliability/test_export_kill.py`` checks the export folder after each kill.
"""

from __future__ import annotations

import os
import signal
from typing import Any

KILL_ENV = "NASSEG_TEST_KILL"
KILL_POINTS = ("ask", "sampled", "measured", "before_tell", "after_tell", "result", "recover", "commit",
               "export_member", "export_swap", "export_aside", "export_swapped")
_kill_counts: dict[str, int] = {}


def point(name: str) -> None:
    """A place where the tests may kill this process (see the module docstring); nothing happens otherwise."""
    spec = os.environ.get(KILL_ENV)
    if not spec or spec.partition(":")[0] != name:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    if _kill_counts[name] == int(spec.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def arm_commit_kill(storage: Any) -> None:
    """With NASSEG_TEST_KILL=commit:N, SIGKILL inside the N-th transaction that wrote, before its COMMIT."""
    if os.environ.get(KILL_ENV, "").partition(":")[0] != "commit":
        return
    from sqlalchemy import event

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            conn.info["nasseg_wrote"] = True

    def on_commit(conn: Any) -> None:
        if conn.info.pop("nasseg_wrote", False):
            point("commit")

    event.listen(storage.engine, "before_cursor_execute", on_execute)
    event.listen(storage.engine, "commit", on_commit)
    event.listen(storage.engine, "rollback", lambda conn: conn.info.pop("nasseg_wrote", None))
