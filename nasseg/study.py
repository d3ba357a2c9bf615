"""Study storage: database URLs (and masking their passwords), opening an Optuna RDB storage, the one-driver
lock of a SQLite study, heartbeats, and recovery of trials a dead driver left running.

A study is a plain Optuna RDB storage (SQLite by default, PostgreSQL when several drivers or machines share
it); nasseg's own records live in trial and study user attributes (:data:`STATUS_KEY`, :data:`META_KEY`).
This module knows nothing of search spaces, genomes or training: the search, the ablation replay, the
status and export commands all open their studies through it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nasseg import faults
from nasseg.errors import ConfigError, StorageError

STATUS_KEY = "nasseg_status"  # trained | reused | rejected | stopped | failed | crashed
META_KEY = "nasseg"  # the study's defining settings (a dict), written when nasseg creates the study
HEARTBEAT_S = 30  # PostgreSQL studies: trial heartbeat interval (s)
GRACE_S = 120  # a RUNNING trial without a heartbeat this long is stale
RETRY_S = 60.0  # PostgreSQL studies: how long a lost connection is retried (backoff) before the search gives up
RETRY_ENV = "NASSEG_STORAGE_RETRY_S"  # overrides RETRY_S (seconds; the tests shorten it)
SQLITE_HEADER = b"SQLite format 3\x00"

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^:/@\s]*):(\S*)@")  # greedy: up to the token's last @
_PASSWORD_KV = re.compile(r"((?:^|[?&;\s])password\s*=\s*)('[^']*'|[^&\s]+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` (or any text holding URLs) with every password replaced by ***, for logs and errors.

    Masks ``scheme://user:PASSWORD@host`` (also when the password holds an unescaped ``@``) and
    ``password=...`` query or libpq keyword parameters.
    """
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", str(url))
    return _PASSWORD_KV.sub(lambda m: f"{m.group(1)}***", text)


def _url_secrets(url: str) -> list[str]:
    """The password(s) a storage URL holds, decoded and raw, to scrub from driver messages."""
    out = []
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        u = make_url(url)
        out += [u.password or "", *(v for k, v in u.query.items() if k.lower() == "password" and isinstance(v, str))]
    m = _USERINFO.search(url)
    if m:
        out.append(m.group(3))
    out += [m.group(2).strip("'") for m in _PASSWORD_KV.finditer(url)]
    return sorted({s for s in out if s and len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password masked, wherever and however a driver or library quoted it."""
    text = mask_url(text)
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def check_url(url: str) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"--storage = {mask_url(str(url))!r} is not a database URL; valid: sqlite:///path.db or "
                          "postgresql://user:password@host/db")
    scheme = url.split("://", 1)[0]
    if not (scheme == "sqlite" or scheme.startswith("postgresql") or scheme.startswith("mysql")):
        raise ConfigError(f"--storage scheme {scheme!r} is not supported; valid: sqlite, postgresql")
    if scheme == "sqlite" and sqlite_path(url) is None:
        raise ConfigError(f"--storage = {url!r} names no file; valid: sqlite:///path.db (an in-memory database "
                          "would lose the study)")


def postgres_driver_url(url: str) -> str:
    """A bare ``postgresql://`` URL with the DB-API driver that is installed (SQLAlchemy >= 2.1 defaults to
    psycopg 3; psycopg2 is the common one).  Raises StorageError when there is none."""
    import importlib.util

    scheme, rest = url.split("://", 1)
    if scheme != "postgresql":
        return url
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    raise StorageError(f"storage {mask_url(url)}: no PostgreSQL driver is installed; valid: pip install "
                       "psycopg2-binary (or psycopg)")


def _sqlite_creator(path: Path) -> Callable[[], Any]:
    """Connections for a writable SQLite study: WAL (set once on the file) with ``synchronous=NORMAL``.

    SQLite's default ``FULL`` syncs the disk at every commit; a trial commits ~40 times (ask, each
    ``suggest_*``, each user attribute, each report, tell), which made commits half of the search's own
    overhead (2.3-2.9 ms each on the CI disk vs 0.04 ms, bench/README.md).  In WAL mode ``NORMAL`` never
    corrupts the file and a killed driver loses nothing (the WAL is in the OS cache); only a power loss or
    an OS crash can drop the last commits, which resume then treats like a crashed trial.
    """
    import sqlite3

    def connect() -> Any:
        con = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return connect


def check_sqlite_file(path: Path, shown: str) -> None:
    """Refuse (StorageError, one line naming the file) an existing SQLite study file that is not a database, or
    that is truncated or corrupt, before anything opens it for writing: nasseg never overwrites or "repairs" it.

    Reads only: the header (the SQLite magic; the file's size against the header's page size and page count,
    since SQLite reads a short last page as zeros), then ``PRAGMA quick_check`` on a read-only connection
    (milliseconds for a study file; it reads every page once).  An empty file is a new database and passes.
    """
    import sqlite3

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StorageError(f"cannot open storage {shown}: cannot read {path} ({e.strerror or e})") from None
    keep = "the file was left as it is"
    if size == 0:
        return
    if not header.startswith(SQLITE_HEADER):
        raise StorageError(f"cannot open storage {shown}: {path} is not a SQLite database (it does not start with the "
                           f"SQLite header; {keep}); valid: a study file written by nasseg search (or Optuna), or "
                           "the path of a new one")
    page = int.from_bytes(header[16:18], "big") if len(header) == 100 else 0
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big") if header[24:28] == header[92:96] else 0  # valid in-header size
    wal = path.with_name(path.name + "-wal")
    if not (wal.exists() and wal.stat().st_size > 0) and (  # a WAL may hold pages the file does not yet
            page < 512 or size % page or size < pages * page):
        raise StorageError(f"cannot open storage {shown}: {path} is truncated or corrupt ({size} bytes; its header "
                           f"says {pages} pages of {page} bytes; {keep}); nasseg does not repair a study: restore it "
                           f"from a copy, or salvage what it holds with 'sqlite3 {path} .recover' into a new file")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=60)) as con:
            rows = [r[0] for r in con.execute("PRAGMA quick_check(3)").fetchall()]
    except sqlite3.DatabaseError as e:
        if "unable to open" in str(e) or "locked" in str(e):
            return  # cannot be checked read-only here (e.g. a WAL without its index): the normal open reports it
        rows = [str(e)]
    if rows != ["ok"]:
        why = " ".join(" ".join(rows).replace("*** in database main ***", "").split())[:200]
        raise StorageError(f"cannot open storage {shown}: {path} is truncated or corrupt (SQLite: {why}; {keep}); "
                           "nasseg does not repair a study: restore it from a copy, or salvage what it holds with "
                           f"'sqlite3 {path} .recover' into a new file")


def disk_full(exc: BaseException) -> OSError | BaseException | None:
    """The error in ``exc``'s chain that says the disk is full (ENOSPC, SQLite's "database or disk is full",
    PostgreSQL's disk-full class 53100), or None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        text = str(e)
        if "database or disk is full" in text or "No space left on device" in text or \
                getattr(e, "pgcode", None) == "53100":
            return e
    return None


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error in its chain) is a lost or refused database connection, or a transaction
    the server aborted (a restart, a deadlock): the operation may be tried again on a new connection."""
    from sqlalchemy import exc as sa_exc

    for e in _chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
            return disk_full(e) is None
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the DB-API errors SQLAlchemy wrapped (``.orig``), each once."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, None if e.__suppress_context__ else e.__context__]


def failure_message(exc: BaseException, url: str) -> str | None:
    """One line for a storage failure a search cannot go on through (a full disk, a study file found corrupt
    while it was read), naming the path and what to do; None for any other error."""
    full = disk_full(exc)
    path = sqlite_path(url)
    if full is not None:
        if isinstance(full, OSError) and full.filename:
            where = str(full.filename)
        elif path is not None:
            where = str(path)
        else:
            where = f"the database server of {mask_url(url)}"
        why = full.strerror if isinstance(full, OSError) and full.strerror else _one_line(full)
        return (f"no space left on the device holding {where} ({scrub(why, url)[:200]}): the search stopped; the "
                "study is intact (finished trials are kept; a write that failed was rolled back): free space there "
                "and run the same command again to resume")
    for e in _chain(exc):
        if path is not None and ("database disk image is malformed" in str(e) or "file is not a database" in str(e)):
            return (f"storage {mask_url(url)}: {path} is corrupt (SQLite: {' '.join(str(e).split())[:120]}); the "
                    "search stopped and did not repair it: restore it from a copy, or salvage what it holds with "
                    f"'sqlite3 {path} .recover' into a new file")
    return None


def retry_window_s() -> float:
    """How long a lost PostgreSQL connection is retried: RETRY_S, or the environment's NASSEG_STORAGE_RETRY_S."""
    raw = os.environ.get(RETRY_ENV)
    if raw is None or raw == "":
        return RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{RETRY_ENV} = {raw!r} is not allowed; valid: seconds >= 0 (default {RETRY_S:g})")
    return value


_RETRYING: Any = None


def _retrying_storage_class():
    """RDBStorage whose every operation survives a lost connection (a server restart, a network cut) for up to
    :func:`retry_window_s` seconds: tried again with exponential backoff on a fresh connection (the engine has
    ``pool_pre_ping``).  After the window, StorageError: one line naming the (masked) URL and what to do.

    Retried writes are idempotent: attributes, params and intermediate values are upserts, and a ``tell``
    (``set_trial_state_values`` to a finished state) whose COMMIT reached the server before the connection died
    is recognised on retry (the trial already holds that state) instead of failing as "already finished".
    """
    global _RETRYING, RetryingRDBStorage
    if _RETRYING is not None:
        return _RETRYING
    import optuna

    base = optuna.storages.RDBStorage

    class RetryingRDBStorage(base):
        log: Any = None  # a callable taking one line (the search's log), or None: set on the instance
        url_shown: str = ""  # the password-masked URL, for those lines and the final error

        def _retry(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            lost_at: float | None = None
            delay = 0.2
            first_error = ""
            attempt = 0
            while True:
                try:
                    out = fn(*args, _attempt=attempt, **kwargs)
                except Exception as e:
                    if isinstance(e, StorageError) or not connection_lost(e):  # StorageError: an inner retry gave up
                        raise
                    now = time.monotonic()
                    window = retry_window_s()
                    if lost_at is None:
                        lost_at = now
                        first_error = _one_line(e)
                        self._say(f"storage {self.url_shown}: connection lost ({first_error}); reconnecting, for up "
                                  f"to {window:g} s")
                    if now - lost_at >= window:
                        raise StorageError(
                            f"lost the connection to the study database {self.url_shown} and could not reconnect "
                            f"within {window:g} s ({first_error}); the trials finished so far are stored: start the "
                            "database server (or restore the network) and run the same command again to resume"
                        ) from None
                    time.sleep(max(0.0, min(delay, lost_at + window - now)))
                    delay = min(2 * delay, 2.0)  # a returning server is seen within ~2 s
                    attempt += 1
                    continue
                if lost_at is not None:
                    self._say(f"storage {self.url_shown}: reconnected after {time.monotonic() - lost_at:.1f} s; "
                              "the search goes on")
                return out

        def _say(self, line: str) -> None:
            if self.log is not None:
                with contextlib.suppress(Exception):
                    self.log(line)

        def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
            def op(_attempt: int) -> bool:
                if _attempt and state.is_finished():  # did the lost attempt's COMMIT land?
                    if base.get_trial(self, trial_id).state == state:
                        return True
                return base.set_trial_state_values(self, trial_id, state, values)

            return self._retry(op)

    def wrap(name: str) -> None:
        method = getattr(base, name)

        def retried(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self._retry(lambda _attempt: method(self, *args, **kwargs))

        retried.__name__ = name
        retried.__doc__ = method.__doc__
        setattr(RetryingRDBStorage, name, retried)

    for name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
                 "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
                 "get_study_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial",
                 "set_trial_param", "_set_trial_param", "get_trial_id_from_study_id_trial_number",
                 "_get_best_trial_id", "set_trial_intermediate_value", "set_trial_user_attr",
                 "set_trial_system_attr", "get_trial", "get_all_trials", "_get_trials", "get_n_trials",
                 "record_heartbeat", "_get_stale_trial_ids", "get_best_trial"):
        if hasattr(base, name):
            wrap(name)
    RetryingRDBStorage.__qualname__ = "RetryingRDBStorage"  # picklable as nasseg.study.RetryingRDBStorage
    _RETRYING = RetryingRDBStorage
    return RetryingRDBStorage


def _one_line(e: BaseException) -> str:
    inner = getattr(e, "orig", None) or e.__cause__ or e
    inner = getattr(inner, "orig", None) or inner
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", str(inner))
    text = " ".join(text.split("[SQL:")[0].split())
    return f"{type(inner).__name__}: {text[:160]}" if text else type(inner).__name__


@contextlib.contextmanager
def _schema_lock(target: str | None, connect_args: dict[str, Any]) -> Iterator[None]:
    """Around opening a PostgreSQL storage for writing: a server-wide advisory lock, so that drivers started at
    the same moment on an empty database do not race to create Optuna's tables and types (the losers would fail
    with 'type "studydirection" already exists').  Released with its own connection; nothing for SQLite."""
    if target is None or not target.startswith("postgresql"):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(target, connect_args=connect_args, poolclass=NullPool)
    try:
        with engine.connect() as con:
            con.exec_driver_sql("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            try:
                yield
            finally:
                con.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
    finally:
        engine.dispose()


#: pg_advisory_lock key of :func:`_schema_lock` (an arbitrary constant: "nasseg" in ASCII)
SCHEMA_LOCK_KEY = 0x6E6173736567


def open_storage(url: str, *, readonly: bool = False, create: bool = True):
    """An Optuna RDBStorage for ``url``; SQLite gets WAL and a busy timeout.

    ``readonly`` opens an existing SQLite file with ``mode=ro`` and PostgreSQL in read-only transactions
    (safe beside a running search: nothing can be written through it).  Errors name the (password-masked)
    URL and what went wrong, in one line.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    check_url(url)
    shown = mask_url(url)
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    target = url
    if path is not None:
        if path.is_dir():
            raise StorageError(f"storage {shown}: {path} is a directory; valid: sqlite:///path/to/file.db")
        if readonly or not create:
            if not path.exists():
                raise StorageError(f"storage {shown}: the file {path} does not exist; valid: the file a nasseg search "
                                   "wrote (check the path)")
        check_sqlite_file(path, shown)  # before anything writes to it
        if not (readonly or not create):
            import sqlite3

            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
                    con.execute("PRAGMA journal_mode=WAL")
            except (OSError, sqlite3.Error) as e:
                if disk_full(e) is not None:
                    raise StorageError(f"cannot open storage {shown}: {failure_message(e, url)}") from None
                why = (f"{path} is not a SQLite database; valid: a study file written by nasseg search (or Optuna), "
                       "or the path of a new one") if "file is not a database" in str(e) else str(e)
                raise StorageError(f"cannot open storage {shown}: {why}") from None
        if readonly:
            target = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        if not readonly:
            kwargs["engine_kwargs"]["creator"] = _sqlite_creator(path)
    else:
        target = postgres_driver_url(url)
        connect_args: dict[str, Any] = {}
        if target.startswith("postgresql"):
            connect_args["connect_timeout"] = 10
            if readonly:
                connect_args["options"] = "-c default_transaction_read_only=on"
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": connect_args}
        kwargs["heartbeat_interval"] = HEARTBEAT_S
        kwargs["grace_period"] = GRACE_S
    retrying = path is None and not readonly  # a shared server: ride out restarts and network cuts
    cls = _retrying_storage_class() if retrying else optuna.storages.RDBStorage
    try:
        with warnings.catch_warnings(), _schema_lock(target if path is None and not readonly else None,
                                                     kwargs["engine_kwargs"]["connect_args"]):
            warnings.simplefilter("ignore")  # heartbeat_interval is "experimental" (stable since Optuna 3)
            storage = cls(target, **kwargs)
        if retrying:
            storage.url_shown = shown
        return storage
    except (SQLAlchemyError, OSError, ValueError, RuntimeError, ImportError,
            optuna.exceptions.StorageInternalError) as e:
        text = str(e).strip()
        text = re.sub(r"\(Background on this error at: [^)]*\)", "", text)
        msg = " ".join(text.split()) if text else type(e).__name__  # one line
        # Optuna writes its schema (and its version row) on open, which a read-only transaction refuses: the
        # database holds no study yet, or another driver is creating the schema this moment (Optuna wraps that
        # refusal in StorageInternalError, so the whole chain is read)
        refused = " ".join(str(x) for x in _chain(e))
        if readonly and ("read-only" in refused or "readonly" in refused):
            msg = ("it holds no Optuna study tables (not a study database, a copy taken before any write, or one "
                   "whose first search is creating them right now)")
        elif path is not None and "file is not a database" in msg:
            msg = (f"{path} is not a SQLite database; valid: a study file written by nasseg search (or Optuna), or "
                   "the path of a new one")
        raise StorageError(f"cannot open storage {shown}: {scrub(msg, url)[:500]}") from None


def study_names(url: str) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.study.get_all_study_summaries(open_storage(url, readonly=True))]


def load_study(url: str, name: str, *, readonly: bool = True):
    """An existing study; a missing one raises StorageError listing the studies that exist."""
    import optuna

    storage = open_storage(url, readonly=readonly, create=False)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
    if name not in names:
        raise StorageError(f"study {name!r} does not exist in {mask_url(url)}; studies there: "
                           + (", ".join(names) if names else "(none)"))
    return optuna.load_study(study_name=name, storage=storage)


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """One driver per SQLite file: a second concurrent driver fails fast instead of corrupting or deadlocking.

    The lock file (``<db>.lock``, naming its holder) is removed when the driver ends; a driver that takes the
    lock checks that the file it locked is still the one at that path (another driver may have removed it in
    between), so two drivers can never both hold it.
    """
    path = sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StorageError(f"{path} is being written by another nasseg driver ({holder}); a SQLite study takes "
                               "one driver at a time: wait for it to finish, or use a PostgreSQL --storage for "
                               "several drivers") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its previous holder had just removed: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # still holding the lock: nobody else can have it
        os.close(fd)


def close_storage(storage: Any) -> None:
    """Close a storage's pooled connections.  A SQLite study leaves WAL mode (the next writer turns it on again),
    so the finished study is one self-contained file: no ``-wal`` or ``-shm`` beside it, and read-only readers
    (status, export) create none.  While a reader has the file open the switch waits for a later driver."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is None:
        return
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    engine.dispose()
    if path and "mode=ro" not in str(engine.url):
        import sqlite3

        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path, timeout=5)) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.execute("PRAGMA journal_mode=DELETE")


def heartbeat_on(storage: Any) -> bool:
    """Whether ``storage`` (an RDBStorage, or the _CachedStorage that Study wraps around it) records heartbeats."""
    return getattr(storage, "get_heartbeat_interval", lambda: None)() is not None


def checkpoint(storage: Any) -> None:
    """SQLite: move the WAL into the main file after each result, so that a copy of the .db file alone (taken
    while the search runs) holds every told trial.  Passive: never waits for readers."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None and engine.dialect.name == "sqlite":
        with contextlib.suppress(Exception), engine.connect() as con:
            con.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


@contextlib.contextmanager
def study_lock(study: Any) -> Iterator[None]:
    """On a PostgreSQL study (several drivers may share it): a session advisory lock of this study, held while a
    driver recovers crashed trials or counts the open slots, asks for a trial and claims its genome
    (:meth:`nasseg.search.driver.Driver._propose`), so that two drivers never recover one trial twice, take the last
    slot twice or train one genome at once.  PostgreSQL drops the lock with its connection, so a killed driver never
    keeps it.  Nothing for SQLite, whose study has one driver (:func:`driver_lock`)."""
    import zlib

    backend = getattr(study._storage, "_backend", study._storage)
    engine = getattr(backend, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    key = zlib.crc32(f"nasseg-study:{study._study_id}".encode())
    with engine.connect() as con:
        con.exec_driver_sql("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            con.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))


def recover_crashed(study: Any, url: str, log: Callable[[str], None]) -> int:
    """Under :func:`study_lock`: see :func:`_recover_crashed`."""
    with study_lock(study):
        return _recover_crashed(study, url, log)


def _recover_crashed(study: Any, url: str, log: Callable[[str], None]) -> int:
    """Trials left RUNNING by a dead driver: mark them failed ('crashed') and re-queue their genomes.

    SQLite studies have one driver (the lock proves the old one is gone), so every RUNNING trial is
    stale; on PostgreSQL, trials whose heartbeat is older than the grace period are, and so are trials
    whose driver ran on this host under a process id that no longer exists.
    """
    import optuna

    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if sqlite_path(url) is None:
        stale_ids = set(storage._get_stale_trial_ids(study._study_id)) if heartbeat_on(storage) else set()
        running = [t for t in running if t._trial_id in stale_ids or _driver_is_dead(t.user_attrs.get("driver"))
                   or _orphan(t)]
    n = 0
    for t in running:
        faults.point("recover")
        n += requeue(study, t, "its driver died before telling a result; re-queued")
    if n:
        log(f"recovered {n} trial(s) left running by a crashed driver; their genomes are re-queued")
    return n


def requeue(study: Any, trial: Any, reason: str) -> bool:
    """Mark a RUNNING trial failed with status 'crashed' (it does not count towards --trials) and queue its genome
    again, so that the next driver evaluates it; False when another driver finished it first."""
    import optuna

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, STATUS_KEY, "crashed")
        storage.set_trial_user_attr(trial._trial_id, "reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:  # told meanwhile by a driver of another host
        return False
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    return True


def _orphan(trial: Any) -> bool:
    """A RUNNING trial that no driver ever claimed (its driver died inside ``ask``, before it could write its
    ``driver`` attribute or a heartbeat), started more than the grace period ago."""
    import datetime

    start = trial.datetime_start
    return "driver" not in trial.user_attrs and start is not None and \
        (datetime.datetime.now() - start).total_seconds() > GRACE_S


def _driver_is_dead(driver: Any) -> bool:
    """True when ``driver`` ("host:pid", a trial's user attr) names a process of this host that is gone."""
    if not isinstance(driver, str) or ":" not in driver:
        return False
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class Heartbeat:
    """Records heartbeats for in-flight trials (PostgreSQL studies shared by several drivers).

    ``driver`` is anything with ``inflight`` (number -> a job holding ``trial``), ``proposing`` (the trial
    being sampled and measured, or None) and optionally ``waiting`` (genome id -> duplicate trials waiting
    for an in-flight result): the search's and the ablation's drivers.
    """

    def __init__(self, study: Any, driver: Any):
        self.study, self.driver = study, driver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        storage = self.study._storage
        if heartbeat_on(storage):
            self._thread = threading.Thread(target=self._run, daemon=True, name="nasseg-heartbeat")
            self._thread.start()
        return self

    def _run(self) -> None:
        storage = self.study._storage
        while not self._stop.wait(storage.get_heartbeat_interval() or HEARTBEAT_S):
            trials = [job.trial for job in list(self.driver.inflight.values())]
            trials.append(getattr(self.driver, "proposing", None))
            for waiting in list(getattr(self.driver, "waiting", {}).values()):  # duplicates of in-flight genomes
                trials.extend(waiting)
            for trial in trials:
                if trial is not None:
                    with contextlib.suppress(Exception):
                        storage.record_heartbeat(trial._trial_id)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
