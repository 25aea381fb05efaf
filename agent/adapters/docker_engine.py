"""Docker Engine adapter: the only module that imports the `docker` SDK.

It translates the SDK's errors into ours at the edge: a container that vanished
is TargetGone, an unreachable daemon is DockerUnavailable (naming the socket).
Discovery is one list call with a label filter, never one inspect per container.
Reads and container effects (pause, kill, stop, ...) on a local unix socket speak the
Engine API with the standard library (a small HTTP/1.1 client over AF_UNIX, `unix_http`):
importing the SDK costs more than `targets` or a one-off pause takes to run. Network
endpoints, events, Swarm, and every call to a remote DOCKER_HOST go through the SDK.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from agent import model
from agent.errors import DockerUnavailable, FaultFailed, TargetGone, TargetNotFound
from agent.model import Target

T = TypeVar("T")

_CONTAINER_REF = re.compile(r"/?[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")  # a name or an id
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def _import_docker(endpoint: str) -> Any:
    """Import the SDK lazily (keeps `--help` fast) and without paramiko unless the
    endpoint is ssh:// — docker-py imports it for SSH transport only, and it costs
    about 18 MB of RSS and 85 ms (measured). The coordinator can still import it later."""
    import sys

    if "docker" in sys.modules or endpoint.startswith("ssh://") or "paramiko" in sys.modules:
        import docker

        return docker
    sys.modules["paramiko"] = None  # type: ignore[assignment]  # makes `import paramiko` fail
    try:
        import docker
    finally:
        del sys.modules["paramiko"]
    return docker


DOCKER_SOCKET = "/var/run/docker.sock"
PODMAN_SOCKET = "/run/podman/podman.sock"  # rootful `podman system service`


def _usable(path: str) -> bool:
    return os.path.exists(path) and os.access(path, os.R_OK | os.W_OK)


def docker_endpoint(
    env: Mapping[str, str] | None = None, exists: Callable[[str], bool] = _usable
) -> str:
    """The engine to talk to: $DOCKER_HOST, else $CONTAINER_HOST (Podman's variable), else
    the first socket that exists (and this user may open) of Docker's, rootful Podman's,
    rootless Podman's ($XDG_RUNTIME_DIR/podman/podman.sock). Docker's comes first: a Docker
    host that also installs Podman keeps faulting the containers it did."""
    env = os.environ if env is None else env
    for var in ("DOCKER_HOST", "CONTAINER_HOST"):
        if env.get(var):
            return env[var]
    candidates = [DOCKER_SOCKET, PODMAN_SOCKET]
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "podman", "podman.sock"))
    for path in candidates:
        if exists(path):
            return f"unix://{path}"
    return f"unix://{DOCKER_SOCKET}"


def engine_kind_of(version: Mapping[str, Any]) -> str:
    """ "podman" when GET /version names a Podman component, else "docker"."""
    for component in version.get("Components") or []:
        if "podman" in str((component or {}).get("Name", "")).lower():
            return "podman"
    return "docker"


class _BadResponse(Exception):
    """The daemon's answer is not an HTTP/1.x response we can read."""


def _dechunk(body: bytes) -> bytes:
    """The payload of a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1)."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise _BadResponse("truncated chunked body")
        try:
            size = int(body[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadResponse("bad chunk size") from None
        if size == 0:
            return b"".join(out)
        start = eol + 2
        if len(body) < start + size:
            raise _BadResponse("truncated chunk")
        out.append(body[start : start + size])
        pos = start + size + 2


def unix_http(socket_path: str, method: str, path: str, timeout: float) -> tuple[int, str, bytes]:
    """One HTTP/1.1 request without a body over a unix socket: (status, reason, body).

    `Connection: close`, so the answer is whatever arrives until the daemon closes.
    The standard library's http.client would do, but importing it (email, ssl) costs
    more than the request: this is the read path of `targets` and a one-off fault."""
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    try:
        sock.connect(socket_path)
        sock.sendall(request.encode("ascii"))
        while True:
            chunk = sock.recv(262144)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if not sep or len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise _BadResponse(f"not an HTTP response: {lines[0][:80]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise _BadResponse(f"bad status line {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif headers.get("content-length", "").isdigit():
        length = int(headers["content-length"])
        if len(body) < length:
            raise _BadResponse("truncated body")
        body = body[:length]
    return status, status_line[2] if len(status_line) > 2 else "", body


class DockerEngine:
    """Thin wrapper over the low-level APIClient; every method is one Engine API call."""

    def __init__(self, base_url: str | None = None, timeout: float = 30.0) -> None:
        self._base_url = base_url
        self._resolved: str | None = None
        self._timeout = timeout
        self._api: Any = None
        self._kind: str | None = None
        self._network_modes: dict[str, str] = {}  # Podman: container id -> network mode

    # -- connection ----------------------------------------------------------------
    def endpoint(self) -> str:
        """The engine this adapter talks to, resolved once: an engine that goes away
        mid-run is unavailable, never swapped for another socket that happens to exist
        (dockerd removes its socket on exit, and Podman's may be there)."""
        if self._resolved is None:
            self._resolved = self._base_url or docker_endpoint()
        return self._resolved

    @property
    def api(self) -> Any:
        if self._api is None:
            docker = _import_docker(self.endpoint())

            try:
                if self._base_url:
                    self._api = docker.APIClient(base_url=self._base_url, timeout=self._timeout)
                else:
                    kwargs = docker.utils.kwargs_from_env()
                    kwargs.setdefault("base_url", self.endpoint())
                    self._api = docker.APIClient(timeout=self._timeout, **kwargs)
            except docker.errors.DockerException as exc:
                raise self._unavailable(exc) from None
        return self._api

    def _unavailable(self, exc: BaseException) -> DockerUnavailable:
        where = self.endpoint()
        reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        return DockerUnavailable(
            f"Docker daemon not reachable at {where}: {reason}",
            hint="start dockerd (scripts/docker-engine.sh), or set DOCKER_HOST "
            "(CONTAINER_HOST for Podman), "
            "or mount /var/run/docker.sock into the agent's container",
        )

    def _call(self, what: str, fn: Callable[[], T], container: str = "") -> T:
        self.api  # noqa: B018 - connects (and imports the SDK the light way) first
        import docker
        import requests

        try:
            return fn()
        except docker.errors.NotFound as exc:
            explanation = str(getattr(exc, "explanation", None) or exc)
            if "no such container" in explanation.lower() or not container:
                raise TargetGone(f"container {container or '?'} no longer exists") from None
            # a 404 about something else (e.g. its network was removed) is a failure
            raise FaultFailed(f"docker {what} {container}: {explanation}") from None
        except docker.errors.APIError as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise FaultFailed(f"docker {what} {container}: {explanation}".strip()) from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            raise self._unavailable(exc) from None
        except OSError as exc:
            raise self._unavailable(exc) from None

    def ping(self) -> None:
        self._call("ping", lambda: self.api.ping())

    def engine_kind(self) -> str:
        """ "docker" or "podman" (from GET /version's Components; asked once)."""
        if self._kind is None:
            self._kind = engine_kind_of(self._call("version", lambda: self.api.version()))
        return self._kind

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- reads -----------------------------------------------------------------------
    def _local_socket(self) -> str | None:
        """The unix socket path when the daemon is local (reads then skip the SDK)."""
        endpoint = self.endpoint()
        if endpoint.startswith("unix://"):
            return endpoint[len("unix://") :]
        return None

    def _get(self, what: str, path: str, container: str = "") -> Any:
        """GET one Engine API path over the local socket; errors as the SDK path maps them."""
        data = self._request("GET", what, path, container)
        if data is None:
            raise FaultFailed(f"docker {what} {container}: not JSON".strip())
        return data

    def _request(
        self, method: str, what: str, path: str, container: str = "", wait: float = 0.0
    ) -> Any:
        """One Engine API request over the local socket: the JSON body (None if empty);
        errors mapped as `_call` maps the SDK's. `wait`: seconds the daemon may take on
        top of the usual timeout (a stop's grace period)."""
        sock = self._local_socket()
        assert sock is not None
        try:
            status, reason, body = unix_http(sock, method, path, self._timeout + wait)
        except (OSError, _BadResponse) as exc:
            raise self._unavailable(exc) from None
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if 200 <= status < 300 or status == 304:  # 304: already so (start, stop)
            return data
        message = data.get("message", "") if isinstance(data, dict) else ""
        message = str(message or reason)[:300]
        if status == 404 and ("no such container" in message.lower() or not container):
            raise TargetGone(f"container {container or '?'} no longer exists")
        raise FaultFailed(f"docker {what} {container}: {message}".strip().replace("  ", " "))

    def _effect(
        self,
        what: str,
        container: str,
        action: str,
        sdk: Callable[[], Any],
        query: Mapping[str, str] | None = None,
        wait: float = 0.0,
    ) -> None:
        """POST /containers/<id>/<action>: over the local socket without the SDK (its
        import costs more than a one-off fault takes to land), else through the SDK."""
        if self._local_socket() is None:
            self._call(what, sdk, container)
            return
        if not _CONTAINER_REF.fullmatch(container):  # no such name or id can exist
            raise TargetGone(f"container {container[:80]!r} no longer exists")
        path = f"/containers/{urllib.parse.quote(container, safe='')}/{action}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        self._request("POST", what, path, container, wait=wait)

    def list_containers(self, label_filter: str | None = None) -> list[dict[str, Any]]:
        """One Engine API call: GET /containers/json?all=1&filters=..."""
        filters = {"label": [label_filter]} if label_filter else None
        if self._local_socket() is not None:
            query = {"all": "1"} | ({"filters": json.dumps(filters)} if filters else {})
            entries = self._get("list", "/containers/json?" + urllib.parse.urlencode(query))
            if not isinstance(entries, list):
                raise FaultFailed("docker list: not a list")
        else:
            entries = self._call("list", lambda: self.api.containers(all=True, filters=filters))
        for entry in entries:
            if entry.get("HostConfig") is None:
                self._fill_network_mode(entry)
        return entries

    def _fill_network_mode(self, entry: dict[str, Any]) -> None:
        """Podman's list entries carry `HostConfig: None`; the network mode decides whether
        a network fault may touch a container (host, none, container:<id>), so take it from
        an inspect rather than guess (its `NetworkSettings.Networks` lists the bridge even
        for `container:<id>` mode). A network mode is fixed when a container is created, so
        it is cached by id: one inspect per container, not per list. A container gone
        meanwhile keeps an empty mode."""
        cid = str(entry.get("Id", ""))
        mode = self._network_modes.get(cid)
        if mode is None:
            try:
                info = self.inspect(cid)
            except TargetGone:
                return
            mode = str((info.get("HostConfig") or {}).get("NetworkMode", ""))
            if len(self._network_modes) > 4096:
                self._network_modes.clear()
            self._network_modes[cid] = mode
        entry["HostConfig"] = {"NetworkMode": mode}

    def inspect(self, container: str) -> dict[str, Any]:
        if not _CONTAINER_REF.fullmatch(container):  # no such name or id can exist
            raise TargetGone(f"container {container[:80]!r} no longer exists")
        if self._local_socket() is not None:
            quoted = urllib.parse.quote(container, safe="")
            info = self._get("inspect", f"/containers/{quoted}/json", container)
            if not isinstance(info, dict):
                raise FaultFailed(f"docker inspect {container}: not an object")
            return info
        return self._call("inspect", lambda: self.api.inspect_container(container), container)

    def find(self, name_or_id: str) -> dict[str, Any]:
        """Inspect a container the user named; unknown is TargetNotFound."""
        try:
            return self.inspect(name_or_id)
        except TargetGone:
            raise TargetNotFound(
                f"no container named {name_or_id!r}", hint="see `chaos-agent targets`"
            ) from None

    # Swarm readers (agent/swarm.py): /info answers on every node; /services, /tasks and
    # /nodes only on managers (a worker answers 503 "This node is not a swarm manager").
    def info(self) -> dict[str, Any]:
        if self._local_socket() is not None:  # every discovery asks it once: no SDK import
            found = self._get("info", "/info")
            if not isinstance(found, dict):
                raise FaultFailed("docker info: not an object")
            return found
        return self._call("info", lambda: self.api.info())

    def swarm_services(self) -> list[dict[str, Any]]:
        """GET /services?status=true (ServiceStatus needs API >= 1.41)."""
        return self._call("service ls", lambda: self.api.services(status=True))

    def swarm_tasks(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._call("task ls", lambda: self.api.tasks(filters=dict(filters or {})))

    def swarm_nodes(self) -> list[dict[str, Any]]:
        return self._call("node ls", lambda: self.api.nodes())

    def events(self, since: float | None = None, until: float | None = None) -> Iterator[Any]:
        """Engine events. Podman answers a history query whose `until` is at or before
        now with nothing: ask it until a second from now instead. (Podman also names the
        exit event `died`, not `die`, and has no `stop` event.)"""
        import time

        if until is not None and self.engine_kind() == "podman":
            until = max(until, time.time() + 1.0)
        return self._call("events", lambda: self.api.events(since=since, until=until, decode=True))

    # -- effects ---------------------------------------------------------------------
    def pause(self, container: str) -> None:
        self._effect("pause", container, "pause", lambda: self.api.pause(container))

    def unpause(self, container: str) -> None:
        self._effect("unpause", container, "unpause", lambda: self.api.unpause(container))

    def stop(self, container: str, timeout: float) -> None:
        self._effect(
            "stop", container, "stop", lambda: self.api.stop(container, timeout=int(timeout)),
            {"t": str(int(timeout))}, wait=timeout,
        )  # fmt: skip

    def start(self, container: str) -> None:
        self._effect("start", container, "start", lambda: self.api.start(container))

    def kill(self, container: str, signal: str) -> None:
        self._effect(
            "kill", container, "kill", lambda: self.api.kill(container, signal=signal),
            {"signal": signal},
        )  # fmt: skip

    def restart(self, container: str, timeout: float) -> None:
        self._effect(
            "restart", container, "restart",
            lambda: self.api.restart(container, timeout=int(timeout)),
            {"t": str(int(timeout))}, wait=timeout,
        )  # fmt: skip

    # network endpoints (used by the `disconnect` fault)
    def run_sibling(self, name: str, spec: dict[str, Any]) -> str:
        """Create and start a helper container from a sibling_spec; its id."""
        api = self.api

        def create_and_start() -> str:
            created = api.post(api._url("/containers/create"), params={"name": name}, json=spec)
            api._raise_for_status(created)
            cid = str(created.json()["Id"])
            api.start(cid)
            return cid

        return self._call("run", create_and_start, name)

    def run_helper(self, spec: dict[str, Any], about: str) -> str:
        """Create and start an unnamed helper container (e.g. one joining `about`'s network
        namespace); its id. A helper that was created but failed to start is removed.
        A 404 naming `about` is TargetGone; a missing image is FaultFailed."""
        api = self.api

        def create_and_start() -> str:
            created = api.post(api._url("/containers/create"), json=spec)
            api._raise_for_status(created)
            cid = str(created.json()["Id"])
            try:
                api.start(cid)
            except BaseException:
                api.remove_container(cid, force=True)
                raise
            return cid

        return self._call("run helper for", create_and_start, about)

    def exec_run(self, container: str, argv: Sequence[str]) -> tuple[int, str, str]:
        """Run argv (a list, never a shell) in a running container: (exit code, out, err)."""

        def run() -> tuple[int, str, str]:
            made = self.api.exec_create(container, list(argv), stdout=True, stderr=True)
            out = self.api.exec_start(made["Id"], demux=True)
            code = self.api.exec_inspect(made["Id"]).get("ExitCode")
            stdout, stderr = out if isinstance(out, tuple) else (out, b"")
            return (
                int(code) if code is not None else -1,
                (stdout or b"").decode("utf-8", errors="replace"),
                (stderr or b"").decode("utf-8", errors="replace"),
            )

        return self._call("exec in", run, container)

    def remove(self, container: str) -> None:
        self._call("rm", lambda: self.api.remove_container(container, force=True), container)

    def disconnect(self, container: str, network: str) -> None:
        self._call(
            "network disconnect",
            lambda: self.api.disconnect_container_from_network(container, network, force=True),
            container,
        )

    def connect(self, container: str, network: str, **endpoint: Any) -> None:
        self._call(
            "network connect",
            lambda: self.api.connect_container_to_network(container, network, **endpoint),
            container,
        )


# --- pure translation: Engine API list entries -> Targets ---------------------------


def health_from_status(status: str) -> model.Health:
    match = _HEALTH.search(status or "")
    if not match:
        return "none"
    word = match.group(1)
    # "healthy" also starts with "health": only "health: starting" means starting.
    return "starting" if word.startswith("health:") else word  # type: ignore[return-value]


def group_of(labels: Mapping[str, str], name: str) -> str:
    explicit = labels.get(model.LABEL_GROUP, "")
    if explicit:
        return explicit
    project = labels.get(model.COMPOSE_PROJECT, "")
    service = labels.get(model.COMPOSE_SERVICE, "")
    if project and service:
        return f"{project}/{service}"
    return name  # a container with neither is a group of one


def allowed_faults_of(labels: Mapping[str, str]) -> frozenset[str] | None:
    raw = labels.get(model.LABEL_FAULTS)
    if raw is None:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def target_from_list_entry(
    entry: Mapping[str, Any], *, label: str, value: str, self_id: str = ""
) -> Target:
    labels = dict(entry.get("Labels") or {})
    names = entry.get("Names") or []
    name = (names[0] if names else entry.get("Id", "")[:12]).lstrip("/")
    cid = str(entry.get("Id", ""))
    network_mode = str((entry.get("HostConfig") or {}).get("NetworkMode", ""))
    is_self = bool(self_id) and (
        cid == self_id or cid.startswith(self_id) or self_id.startswith(cid)
    )
    is_agent = labels.get(model.LABEL_AGENT, "").lower() in ("true", "1", "yes")
    return Target(
        kind="container",
        id=cid,
        name=name,
        group=group_of(labels, name),
        state=str(entry.get("State", "")),
        health=health_from_status(str(entry.get("Status", ""))),
        labels=labels,
        opted_in=labels.get(label) == value,
        protected=labels.get(model.LABEL_PROTECT, "").lower() in ("true", "1", "yes"),
        is_self=is_self or is_agent,
        allowed_faults=allowed_faults_of(labels),
        network_mode=network_mode,
    )


def own_container_id() -> str:
    """The agent's own container id when it runs in one ('' on a plain host)."""
    texts = []
    for path in ("/proc/self/mountinfo", "/proc/self/cgroup"):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                texts.append(fh.read())
        except OSError:
            texts.append("")
    return container_id_from(*texts)


_MOUNTED_BY_ENGINE = re.compile(
    r"[/-]containers/([0-9a-f]{64})/(?:userdata/)?(?:hostname|hosts|resolv\.conf)"
)
_ENGINE_CGROUP = re.compile(r"(?:docker[-/]|libpod-)([0-9a-f]{64})")


def container_id_from(mountinfo: str, cgroup: str) -> str:
    """Docker bind-mounts /etc/hostname etc. from /var/lib/docker/containers/<id>/, Podman
    from .../overlay-containers/<id>/userdata/; mountinfo shows that path, which is
    harder to fake than a label. Else the cgroup names it (docker-<id>, libpod-<id>)."""
    for line in mountinfo.splitlines():
        match = _MOUNTED_BY_ENGINE.search(line)
        if match:
            return match.group(1)
    match = _ENGINE_CGROUP.search(cgroup)
    return match.group(1) if match else ""


def sibling_spec(
    agent: Mapping[str, Any], *, entrypoint: list[str], args: list[str], labels: dict[str, str]
) -> dict[str, Any]:
    """Create-container body for a helper that must outlive the agent's container.

    Same image, the agent's volumes (so the state dir and the socket are the same
    paths), its pid mode and capabilities (nsenter and host-PID heals), its env
    and user; its own cgroup, so `docker kill`/`rm -f`/OOM of the agent spare it.
    No network unless the engine is reached over TCP: nothing else is needed, and
    an attachment would keep `compose down` from removing the project's network.
    """
    config = agent.get("Config") or {}
    host = agent.get("HostConfig") or {}
    env = [str(e) for e in config.get("Env") or []]
    over_tcp = any(e.startswith("DOCKER_HOST=tcp") for e in env)
    network = str(host.get("NetworkMode") or "none")
    if not over_tcp or network.startswith("container:"):
        network = "none"
    return {
        "Image": agent.get("Image"),
        "Entrypoint": entrypoint,
        "Cmd": args,
        "Env": env,
        "User": str(config.get("User") or ""),
        "Labels": labels,
        "HostConfig": {
            "VolumesFrom": [str(agent.get("Id"))],
            "PidMode": str(host.get("PidMode") or ""),
            "CapAdd": list(host.get("CapAdd") or []),
            "CapDrop": list(host.get("CapDrop") or []),
            "SecurityOpt": list(host.get("SecurityOpt") or []),
            "NetworkMode": network,
            "AutoRemove": True,
        },
    }
