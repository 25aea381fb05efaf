"""A real OpenSSH server for the coordinator tests, and the agent worker processes.

`SshdServer` starts `sshd -D -e` on a free loopback port with generated host and
user keys in a temporary directory; each agent key is bound in authorized_keys to
the coordinator's forced command (the line `authorize` prints). `stop()` kills the
listener and every per-connection sshd and session process, and removes the files.

Run as a script, this module is an agent process: `python coordinator_sshd.py
MODE CONFIG_JSON` (modes: race, stress, hold) printing JSON lines on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> str:
    """'' when a real sshd can be started here, else the reason it cannot."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        return "OpenSSH server (apt-get install -y openssh-server)"
    if os.geteuid() != 0:
        return "root, to run sshd with its privilege separation"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def complete_policy(text: str) -> str:
    """A test's partial [fleet] (only the keys it cares about) as a complete policy file:
    the coordinator refuses a policy missing any key."""
    import tomllib

    from agent.coordinator.policy import policy_text

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text
    fleet = data.get("fleet")
    if not isinstance(fleet, dict) or set(data) - {"fleet", "reporters"}:
        return text
    return policy_text(reporters=data.get("reporters"), **fleet)


@dataclass
class SshdServer:
    hosts: list[str]
    policy_toml: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-sshd-")))
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def db(self) -> Path:
        return self.root / "coordinator.db"

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def host_key(self) -> Path:
        return self.root / "host_ed25519"

    def key(self, host: str) -> Path:
        return self.root / f"agent_{host}"

    def start(self) -> SshdServer:
        from agent.coordinator.cli import authorized_keys_line

        os.makedirs("/run/sshd", exist_ok=True)
        self.root.chmod(0o700)
        self.policy.write_text(complete_policy(self.policy_toml))
        from agent.coordinator.store import Store

        Store(self.db).close()  # `coordinator init`: sessions never create the database
        keygen(self.host_key)
        lines = []
        for host in self.hosts:
            keygen(self.key(host))
            lines.append(
                authorized_keys_line(
                    Path(str(self.key(host)) + ".pub").read_text(),
                    host,
                    db=str(self.db),
                    policy=str(self.policy),
                    python=sys.executable,
                    pythonpath=str(REPO),
                )
            )
        (self.root / "authorized_keys").write_text("\n".join(lines) + "\n")
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "AllowUsers root",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "PermitUserEnvironment no",
                    "AllowTcpForwarding yes",
                    "X11Forwarding yes",
                    "PermitTTY yes",
                    "MaxStartups 200",
                    "MaxSessions 50",
                    "LoginGraceTime 20",
                    "LogLevel ERROR",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        self.port = free_port()
        log = open(self.root / "sshd.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config"), "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()
        host_pub = Path(str(self.host_key) + ".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-2.0"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def section(self, host: str, **over: Any) -> Any:
        from agent.config import CoordinatorSection

        values: dict[str, Any] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "key": str(self.key(host)),
            "known_hosts": str(self.known_hosts),
            "connect_timeout": 3.0,
            "request_timeout": 3.0,
            "renew_margin": 0.5,
        }
        values.update(over)
        return CoordinatorSection(**values)

    def toml_section(self, host: str) -> str:
        """The `[coordinator]` section of an agent.toml that reaches this server as `host`."""
        c = self.section(host)
        return (
            "[coordinator]\nenabled = true\n"
            f'host = "{c.host}"\nport = {c.port}\nuser = "{c.user}"\nkey = "{c.key}"\n'
            f'known_hosts = "{c.known_hosts}"\nconnect_timeout = "3s"\nrequest_timeout = "3s"\n'
            'renew_margin = "0.5s"\n'
        )

    def descendants(self) -> list[int]:
        """Every process under the listener (per-connection sshd, sessions)."""
        import psutil

        if self.proc is None:
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal_all(self, sig: int) -> None:
        pids = ([self.proc.pid] if self.proc else []) + self.descendants()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """Stop the server the hard way: listener and every connection."""
        if self.proc is None:
            return
        # Freeze the listener and everything under it first, so nothing forks a new
        # session behind our back, then kill them all.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGSTOP)
        frozen: set[int] = set()
        for _ in range(10):
            new = set(self.descendants()) - frozen
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            frozen |= new
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc is not None:
                self.signal_all(signal.SIGCONT)
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m agent.coordinator ARGS --db <this server's db>`."""
        return subprocess.run(
            [sys.executable, "-m", "agent.coordinator", *args, "--db", str(self.db)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )

    def store(self) -> Any:
        from agent.coordinator.store import Store

        return Store(self.db)

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env


# --- agent worker processes ---------------------------------------------------------


def _leases(cfg: dict[str, Any]) -> Any:
    from agent.config import CoordinatorSection
    from agent.coordinator.client import CoordinatorLeases

    return CoordinatorLeases(CoordinatorSection(**cfg["section"]), cfg["host"])


def _plan(group: str, duration: float) -> Any:
    from agent.model import Plan, Target

    target = Target(kind="container", id="c" * 64, name=f"{group}-1", group=group, state="running")
    return Plan(fault="pause", target=target, duration_s=duration)


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def worker_main(mode: str, cfg: dict[str, Any]) -> int:
    from agent.errors import CoordinatorUnavailable, LeaseRefused
    from agent.leases import GroupReport

    leases = _leases(cfg)
    report = GroupReport(cfg.get("group", "web"), 10, 10, 10)
    plan = _plan(cfg.get("group", "web"), float(cfg.get("duration", 30)))
    if mode == "race":
        # connect first, then wait for the common start time, then one acquire
        leases.status()
        while time.time() < cfg["start_at"]:
            time.sleep(0.001)
        try:
            lease = leases.acquire(plan, report)
            _emit(result="granted", token=lease.token, lease_id=lease.lease_id)
        except LeaseRefused as exc:
            _emit(result="refused", reason=exc.message)
        return 0
    if mode == "hold":
        lease = leases.acquire(plan, report)
        _emit(result="granted", token=lease.token, lease_id=lease.lease_id, ttl=lease.ttl)
        time.sleep(3600)
        return 0
    if mode == "stress":
        granted = refused = unavailable = 0
        rng = random.Random()
        hold = float(cfg.get("hold", 0.0))
        for _ in range(int(cfg["ops"])):
            try:
                lease = leases.acquire(plan, report)
            except LeaseRefused:
                refused += 1
                continue
            except CoordinatorUnavailable:
                unavailable += 1
                time.sleep(0.05)
                continue
            granted += 1
            if hold:
                time.sleep(rng.uniform(0, hold))  # a kill -9 may land while holding
            leases.release(lease)
        _emit(granted=granted, refused=refused, unavailable=unavailable)
        return 0
    if mode == "bench":
        leases.status()  # connected before the clock starts
        while time.time() < cfg["start_at"]:
            time.sleep(0.001)
        pairs, end = 0, cfg["start_at"] + float(cfg["seconds"])
        while time.time() < end:
            leases.release(leases.acquire(plan, report))
            pairs += 1
        _emit(pairs=pairs)
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1], json.loads(sys.argv[2])))
