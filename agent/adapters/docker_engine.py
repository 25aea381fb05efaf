"""Docker Engine adapter: the only module that imports the `docker` SDK.

It translates the SDK's errors into ours at the edge: a container that vanished
is TargetGone, an unreachable daemon is DockerUnavailable (naming the socket).
Discovery is one list call with a label filter, never one inspect per container.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from agent import model
from agent.errors import DockerUnavailable, FaultFailed, TargetGone, TargetNotFound
from agent.model import Target

T = TypeVar("T")

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


def docker_endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class DockerEngine:
    """Thin wrapper over the low-level APIClient; every method is one Engine API call."""

    def __init__(self, base_url: str | None = None, timeout: float = 30.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._api: Any = None

    # -- connection ----------------------------------------------------------------
    @property
    def api(self) -> Any:
        if self._api is None:
            docker = _import_docker(self._base_url or docker_endpoint())

            try:
                if self._base_url:
                    self._api = docker.APIClient(base_url=self._base_url, timeout=self._timeout)
                else:
                    kwargs = docker.utils.kwargs_from_env()
                    kwargs.setdefault("base_url", "unix:///var/run/docker.sock")
                    self._api = docker.APIClient(timeout=self._timeout, **kwargs)
            except docker.errors.DockerException as exc:
                raise self._unavailable(exc) from None
        return self._api

    def _unavailable(self, exc: BaseException) -> DockerUnavailable:
        where = self._base_url or docker_endpoint()
        reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        return DockerUnavailable(
            f"Docker daemon not reachable at {where}: {reason}",
            hint="start dockerd (scripts/docker-engine.sh), or set DOCKER_HOST, "
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

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- reads -----------------------------------------------------------------------
    def list_containers(self, label_filter: str | None = None) -> list[dict[str, Any]]:
        """One Engine API call: GET /containers/json?all=1&filters=..."""
        filters = {"label": [label_filter]} if label_filter else None
        return self._call("list", lambda: self.api.containers(all=True, filters=filters))

    def inspect(self, container: str) -> dict[str, Any]:
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
        return self._call("info", lambda: self.api.info())

    def swarm_services(self) -> list[dict[str, Any]]:
        """GET /services?status=true (ServiceStatus needs API >= 1.41)."""
        return self._call("service ls", lambda: self.api.services(status=True))

    def swarm_tasks(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._call("task ls", lambda: self.api.tasks(filters=dict(filters or {})))

    def swarm_nodes(self) -> list[dict[str, Any]]:
        return self._call("node ls", lambda: self.api.nodes())

    def events(self, since: float | None = None, until: float | None = None) -> Iterator[Any]:
        return self._call("events", lambda: self.api.events(since=since, until=until, decode=True))

    # -- effects ---------------------------------------------------------------------
    def pause(self, container: str) -> None:
        self._call("pause", lambda: self.api.pause(container), container)

    def unpause(self, container: str) -> None:
        self._call("unpause", lambda: self.api.unpause(container), container)

    def stop(self, container: str, timeout: float) -> None:
        self._call("stop", lambda: self.api.stop(container, timeout=int(timeout)), container)

    def start(self, container: str) -> None:
        self._call("start", lambda: self.api.start(container), container)

    def kill(self, container: str, signal: str) -> None:
        self._call("kill", lambda: self.api.kill(container, signal=signal), container)

    def restart(self, container: str, timeout: float) -> None:
        self._call("restart", lambda: self.api.restart(container, timeout=int(timeout)), container)

    # network endpoints (used by the `disconnect` fault)
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
    """The agent's own container id when it runs in one ('' on a plain host).

    Docker bind-mounts /etc/hostname etc. from /var/lib/docker/containers/<id>/;
    mountinfo shows that path, which is harder to fake than a label.
    """
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                match = re.search(
                    r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)", line
                )
                if match:
                    return match.group(1)
    except OSError:
        pass
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as fh:
            match = re.search(r"(?:docker[-/])([0-9a-f]{64})", fh.read())
            if match:
                return match.group(1)
    except OSError:
        pass
    return ""
