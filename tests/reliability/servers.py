"""Real servers for the reliability tests: a throwaway PostgreSQL and a two-node Ray cluster on this machine.

Nothing here is mocked.  PostgreSQL comes from Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``);
``.ci/run`` starts one the same way and hands its URL over in ``NASSEG_TEST_POSTGRES``.  As root, the server
runs as the ``postgres`` user (PostgreSQL refuses to run as root).  Processes are only ever stopped by the id
this module started them with (or found under the temp dir it created).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV_URL = "NASSEG_TEST_POSTGRES"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- PostgreSQL
def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl, else initdb on PATH, else None."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                  if Path(p).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


class PostgresServer:
    """initdb + pg_ctl in a temp dir, loopback only, a free port, password auth; ``stop()`` removes it all."""

    def __init__(self, durable: bool = False) -> None:
        """``durable``: commits reach the OS before they are acknowledged (``synchronous_commit=on``), so that a
        server killed with ``pg_ctl stop -m immediate`` loses no acknowledged commit; the default trades that for
        speed (fine for a server the tests never kill)."""
        self.bin = postgres_bin()
        if self.bin is None:
            raise FileNotFoundError("no PostgreSQL binaries (install Debian's postgresql package)")
        self.dir = Path(tempfile.mkdtemp(prefix="nasseg-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user, self.password = "nasseg", secrets.token_hex(8)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        (self.dir / "pw").write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(self.dir / "pw", "postgres", "postgres")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={self.dir / 'pw'}",
                   "-A", "scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"])
        self.opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                     f"-c fsync=off -c synchronous_commit={'on' if durable else 'off'} -c full_page_writes=off "
                     "-c max_connections=300")
        self.start()
        self.url = f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/postgres"
        create_database(self.url, "nasseg")
        self.url = with_database(self.url, "nasseg")

    def start(self) -> None:
        """Start the server (again), waiting until it accepts connections."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                   "-o", self.opts, "start"])

    def halt(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: fast ends every session (rolling back open transactions) and shuts down
        cleanly; immediate kills the server processes outright (crash recovery at the next start)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``, with the same options, waiting until it accepts connections again."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-m", mode, "-w",
                   "-t", "60", "-o", self.opts, "restart"])

    def _run(self, cmd: list[str]) -> None:
        kw = {"user": "postgres", "group": "postgres"} if self._as_root else {}
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir, stdin=subprocess.DEVNULL,
                             timeout=120, **kw)
        if out.returncode != 0:
            log = (self.dir / "log").read_text()[-2000:] if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({out.returncode}): {out.stderr[-2000:]}\n{log}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _connect(url: str):
    import psycopg2

    return psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=10)


def create_database(url: str, name: str) -> None:
    con = _connect(url)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()


def drop_database(url: str, name: str) -> None:
    con = _connect(url)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        con.close()


def fresh_database(base_url: str) -> tuple[str, str]:
    """A new empty database on the server of ``base_url``: (its URL, its name)."""
    name = "t_" + uuid.uuid4().hex[:12]
    create_database(base_url, name)
    return with_database(base_url, name), name


# --------------------------------------------------------------------------------------------- Ray cluster
def _pids_under(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a temp dir this module created)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(d))
    return pids


def _with_descendants(pids: list[int]) -> list[int]:
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = set(pids), list(pids)
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in out and child != os.getpid():
                out.add(child)
                todo.append(child)
    return sorted(p for p in out if not _zombie(p))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True  # gone


def _session_marker(temp_dir: Path) -> str:
    """Every process of a node names its session dir (under its temp dir) on the command line."""
    return str(temp_dir)


def ray_env(token_path: Path) -> dict[str, str]:
    """Environment for every process of a test cluster and its drivers: token authentication with the
    cluster's own token (Ray >= 2.5x enables it by default for new clusters when ~/.ray/auth_token exists)."""
    env = dict(os.environ, RAY_DISABLE_USAGE_STATS="1", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token_path))
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    return env


class RayNode:
    """One ``ray start`` node with its own temp dir; ``kill()`` stops exactly its own processes."""

    def __init__(self, temp_dir: Path, args: list[str], env: dict[str, str]):
        self.temp_dir = temp_dir
        temp_dir.mkdir(parents=True, exist_ok=True)
        ray_cli = str(Path(sys.executable).with_name("ray"))
        if not Path(ray_cli).exists():
            ray_cli = shutil.which("ray") or "ray"
        out = subprocess.run([ray_cli, "start", f"--temp-dir={temp_dir}", "--disable-usage-stats",
                              "--object-store-memory=100000000", *args], capture_output=True, text=True,
                             env=env, stdin=subprocess.DEVNULL, timeout=180)
        if out.returncode != 0:
            self.kill()
            raise RuntimeError(f"ray start {' '.join(args)} failed: {out.stdout[-1500:]}\n{out.stderr[-1500:]}")

    def pids(self) -> list[int]:
        """Its raylet, GCS, monitors and agents (they name the temp dir), and their children (workers)."""
        return _with_descendants(_pids_under(_session_marker(self.temp_dir)))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


class RayCluster:
    """A head node (1 CPU) and a second node (1 CPU, custom resource ``node2``) on this machine."""

    def __init__(self) -> None:
        # short: Ray's unix socket paths under it must stay below 108 bytes
        self.root = root = Path(tempfile.mkdtemp(prefix="nray-", dir="/tmp"))
        token = root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = ray_env(token)
        self.port = free_port()
        self.head = RayNode(root / "head", ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                                            "--num-cpus=1", "--include-dashboard=false",
                                            f"--node-manager-port={free_port()}",
                                            f"--object-manager-port={free_port()}",
                                            '--resources={"head": 1}'], self.env)
        self.address = f"127.0.0.1:{self.port}"
        try:
            self.node2 = RayNode(root / "node2", [f"--address={self.address}", "--node-ip-address=127.0.0.1",
                                                  "--num-cpus=1", f"--node-manager-port={free_port()}",
                                                  f"--object-manager-port={free_port()}",
                                                  '--resources={"node2": 1}'], self.env)
        except Exception:
            self.head.kill()
            raise

    def nodes(self) -> list[dict]:
        """``ray.nodes()`` read in a fresh process (this test process never joins the cluster)."""
        code = ("import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False);"
                "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'resources': n['Resources']} "
                "for n in ray.nodes()])); ray.shutdown()")
        out = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True,
                             timeout=120, stdin=subprocess.DEVNULL, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        """SIGTERM every process of both nodes, then SIGKILL whatever is left (or was started meanwhile)."""
        nodes = [n for n in (getattr(self, "node2", None), self.head) if n is not None]
        for node in nodes:
            node.kill(signal.SIGTERM)
        deadline = time.time() + 20
        time.sleep(1.0)
        while time.time() < deadline and any(node.pids() for node in nodes):
            for node in nodes:
                node.kill(signal.SIGKILL)
            time.sleep(0.3)
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------ network cut
class CuttingProxy:
    """A TCP proxy on a free loopback port in front of a PostgreSQL server that can cut a connection at the worst
    moment: after forwarding the COMMIT of a transaction that ran a statement containing ``marker`` (the server
    commits it) and before the server's reply reaches the client, which then sees the connection die.  Real
    sockets and a real server; only the timing is chosen."""

    def __init__(self, port: int):
        import threading

        self.target = ("127.0.0.1", port)
        self.marker: bytes | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        """Cut the next connection that commits a transaction holding ``marker`` (once)."""
        with self._lock:
            self.marker = marker

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state = {"seen": False, "cut": False}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or state["cut"]:
                    break
                if upstream:
                    with self._lock:
                        marker = self.marker
                    if marker is not None and marker in data:
                        state["seen"] = True
                    if state["seen"] and b"COMMIT" in data:
                        with self._lock:
                            self.marker = None
                            self.cuts += 1
                        state["cut"] = True  # the reply is never forwarded
                        dst.sendall(data)
                        time.sleep(0.5)  # the server commits
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
