"""SSH to the coordinator: the only module that imports paramiko.

One long-lived exec channel per agent; request/reply lines with a bounded time
per request, so a frozen (SIGSTOPped) or vanished sshd costs at most that long.
Host keys: known_hosts + RejectPolicy. An unknown or changed key is refused
before authentication, so before any command is sent; known_hosts is only ever
written when `accept_new_host_key` is set, and then only to add an unknown host,
never to replace a changed key. After a failed connect, attempts back off
exponentially (with jitter) up to `max_backoff`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

from agent.errors import ConfigError, CoordinatorUnavailable

CHANNEL_COMMAND = "chaos-agent-coordinator"  # ignored: the key's forced command decides


class HostKeyRefused(CoordinatorUnavailable):
    """The coordinator's host key is unknown or changed: nothing was sent."""


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _Unknown(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _Unknown(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use, asked for explicitly: append the unknown host's key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SshLine:
    """Newline-delimited request/reply over one persistent SSH exec channel."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        key_path: str,
        known_hosts: str,
        accept_new_host_key: bool = False,
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        max_reply: int = 1024 * 1024,
        max_backoff: float = 30.0,
    ) -> None:
        if not host:
            raise ConfigError("coordinator.host: no coordinator host configured")
        self.host = host
        self.port = port
        self.user = user
        self.known_hosts = Path(os.path.expanduser(known_hosts))
        self.accept_new_host_key = accept_new_host_key
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_reply = max_reply
        self.max_backoff = max_backoff
        self._pkey = self._load_key(os.path.expanduser(key_path))
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._chan: Any = None
        self._buf = b""
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error = ""

    @staticmethod
    def _load_key(path: str) -> paramiko.PKey:
        if not path:
            raise ConfigError("coordinator.key: no private key configured")
        try:
            return paramiko.PKey.from_path(path)
        except FileNotFoundError:
            raise ConfigError(f"coordinator.key: {path} does not exist") from None
        except PermissionError:
            raise ConfigError(f"coordinator.key: {path} cannot be read") from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise ConfigError(f"coordinator.key: {path}: unusable private key ({exc})") from None

    @property
    def connected(self) -> bool:
        return self._chan is not None and not self._chan.closed

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    # -- connection ----------------------------------------------------------------
    def _connect(self, budget: float | None = None) -> None:
        now = time.monotonic()
        if now < self._next_attempt:
            raise CoordinatorUnavailable(
                f"coordinator {self.where} unreachable, next attempt in "
                f"{self._next_attempt - now:.1f}s: {self._last_error}"
            )
        try:
            self._open(budget)
        except CoordinatorUnavailable as exc:
            self._failures += 1
            delay = min(self.max_backoff, 0.5 * 2 ** (self._failures - 1))
            self._next_attempt = time.monotonic() + delay * random.uniform(0.5, 1.0)
            self._last_error = exc.one_line()
            raise
        self._failures = 0
        self._last_error = ""

    def _open(self, budget: float | None = None) -> None:
        timeout = self.connect_timeout if budget is None else min(self.connect_timeout, budget)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise CoordinatorUnavailable(
                f"cannot reach coordinator {self.where}: {exc.strerror or exc}"
            ) from None
        client = paramiko.SSHClient()
        # Overall bound: paramiko's exec request has no timeout of its own.
        watchdog = threading.Timer(4 * timeout, _shutdown, args=(sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            if self.known_hosts.is_file():
                client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(
                _AcceptNew(self.known_hosts) if self.accept_new_host_key else _RefuseUnknown()
            )
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=self._pkey,
                sock=sock,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            transport = client.get_transport()
            if transport is None:
                raise paramiko.SSHException("no transport")
            transport.set_keepalive(15)
            chan = transport.open_session(timeout=timeout)
            chan.exec_command(CHANNEL_COMMAND)
        except _Unknown as exc:
            _close_quietly(client, sock)
            raise HostKeyRefused(
                f"coordinator host key for {exc.hostname} ({exc.key.get_name()} "
                f"{fingerprint(exc.key)}) is not in {self.known_hosts}: refusing to connect",
                hint="verify the fingerprint and add it with ssh-keyscan, or set "
                "coordinator.accept_new_host_key = true once",
            ) from None
        except paramiko.BadHostKeyException as exc:
            _close_quietly(client, sock)
            raise HostKeyRefused(
                f"coordinator host key for {self.host}:{self.port} CHANGED (offered "
                f"{fingerprint(exc.key)}, {self.known_hosts} has "
                f"{fingerprint(exc.expected_key)}): refusing to connect",
                hint="possible man-in-the-middle; fix known_hosts only if the change is expected",
            ) from None
        except paramiko.AuthenticationException:
            _close_quietly(client, sock)
            raise CoordinatorUnavailable(
                f"coordinator {self.where} refused our key",
                hint="install the line from `chaos-agent coordinator authorize` there",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _close_quietly(client, sock)
            text = str(exc) or type(exc).__name__
            raise CoordinatorUnavailable(
                f"SSH to coordinator {self.where} failed: {text}"
            ) from None
        finally:
            watchdog.cancel()
        self._client, self._chan, self._buf = client, chan, b""

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        client, self._client, self._chan, self._buf = self._client, None, None, b""
        if client is not None:
            _close_quietly(client, None)

    # -- request / reply -----------------------------------------------------------
    def request(self, line: bytes, timeout: float | None = None) -> bytes:
        """Send one line, return the next reply line (without newline), within `timeout`."""
        limit = self.request_timeout if timeout is None else timeout
        with self._lock:
            start = time.monotonic()
            if not self.connected:
                self._drop()
                # an explicit timeout bounds the whole call, a reconnect included
                # (each connect phase gets a quarter: the connect watchdog is 4x)
                self._connect(None if timeout is None else max(0.01, timeout / 4))
            deadline = (time.monotonic() if timeout is None else start) + limit
            try:
                return self._exchange(line, deadline, limit)
            except CoordinatorUnavailable:
                self._drop()  # a late reply would desynchronize the session: start afresh
                raise

    def _exchange(self, line: bytes, deadline: float, limit: float) -> bytes:
        chan = self._chan
        try:
            view = memoryview(line)
            while view:
                chan.settimeout(max(0.001, deadline - time.monotonic()))
                sent = chan.send(view)
                if sent <= 0:
                    raise CoordinatorUnavailable(f"coordinator {self.where} closed the session")
                view = view[sent:]
            while b"\n" not in self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                chan.settimeout(remaining)
                data = chan.recv(65536)
                if not data:
                    raise CoordinatorUnavailable(f"coordinator {self.where} closed the session")
                self._buf += data
                if len(self._buf) > self.max_reply:
                    raise CoordinatorUnavailable(
                        f"coordinator {self.where} sent an oversized reply"
                    )
        except TimeoutError:
            raise CoordinatorUnavailable(
                f"coordinator {self.where} did not answer within {limit:g}s"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise CoordinatorUnavailable(
                f"coordinator {self.where} connection lost: {exc or type(exc).__name__}"
            ) from None
        reply, _, self._buf = self._buf.partition(b"\n")
        return reply


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_quietly(client: paramiko.SSHClient, sock: socket.socket | None) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001, S110 - closing is best effort
        pass
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
