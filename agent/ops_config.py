"""The `[metrics]` and `[notify]` sections: what an operator needs to leave the agent on.

Parsed by agent.config (pure, stdlib only). Webhook URLs carry tokens: they are kept as
`Secret`, whose str() and repr() never show the value (so `config show`, logs and the
journal cannot leak it).
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import TomlTable

NOTIFY_KINDS = ("slack", "mattermost", "discord", "ntfy", "gotify", "json", "apprise")
# journal-derived notification events; "fault" (inject/heal) only when asked
NOTIFY_EVENTS = ("start", "stop", "halt", "resume", "heal_failed", "stuck", "watchdog", "fault")
DEFAULT_NOTIFY_EVENTS = ("start", "stop", "halt", "resume", "stuck", "watchdog")


class Secret:
    """A value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = False
    listen: str = "127.0.0.1"  # the agent is root-equivalent: never 0.0.0.0 by default
    port: int = 9477
    textfile: str = ""  # node_exporter textfile collector path (*.prom), written atomically
    textfile_interval: float = 15.0


@dataclass(frozen=True)
class NotifyTarget:
    kind: str
    url: Secret
    name: str  # what logs and metrics call it (never the URL)
    title: str = "chaos-agent"
    priority: str = ""  # ntfy / gotify priority


@dataclass(frozen=True)
class NotifySection:
    targets: tuple[NotifyTarget, ...] = ()
    events: tuple[str, ...] = DEFAULT_NOTIFY_EVENTS
    queue: int = 100  # pending messages; beyond it a message is dropped and counted
    timeout: float = 5.0  # per HTTP request
    retries: int = 3  # after the first try, with exponential backoff
    backoff: float = 1.0  # first retry delay; doubles each time


def parse_metrics(m: TomlTable) -> MetricsSection:
    section = MetricsSection(
        enabled=m.bool("enabled", False),
        listen=m.str("listen", "127.0.0.1"),
        port=m.int("port", 9477, minimum=0, maximum=65535),
        textfile=os.path.expanduser(m.str("textfile", "")),
        textfile_interval=m.duration("textfile_interval", 15.0, minimum=1.0),
    )
    if section.textfile and not section.textfile.endswith(".prom"):
        raise m.err("textfile", "node_exporter reads only files ending in .prom")
    m.done()
    return section


def parse_notify(n: TomlTable) -> NotifySection:
    events = n.str_list("events", DEFAULT_NOTIFY_EVENTS)
    for event in events:
        if event not in NOTIFY_EVENTS:
            raise n.err("events", f"unknown event {event!r}; one of {', '.join(NOTIFY_EVENTS)}")
    raw_targets = n.data.pop("targets", [])
    if not isinstance(raw_targets, list):
        raise n.err("targets", "expected an array of tables ([[notify.targets]])")
    targets: list[NotifyTarget] = []
    for i, raw in enumerate(raw_targets):
        from agent.config import TomlTable

        t = TomlTable(raw, f"{n.path}.targets[{i}]", n.source)
        kind = t.str("kind", "")
        if kind not in NOTIFY_KINDS:
            raise t.err("kind", f"expected one of {', '.join(NOTIFY_KINDS)}, got {kind!r}")
        url = t.str("url", "")
        env = t.str("url_env", "")
        if url and env:
            raise t.err("url_env", "give url or url_env, not both")
        if env:
            url = os.environ.get(env, "")
            if not url:
                raise t.err("url_env", f"environment variable {env} is not set or empty")
        if not url:
            raise t.err("url", "missing (or set url_env to an environment variable holding it)")
        if kind != "apprise":
            scheme = urllib.parse.urlsplit(url).scheme
            if scheme not in ("http", "https"):
                raise t.err("url", "expected an http:// or https:// URL")  # value not echoed
        targets.append(
            NotifyTarget(
                kind=kind,
                url=Secret(url),
                name=t.str("name", f"{kind}-{i + 1}"),
                title=t.str("title", "chaos-agent"),
                priority=t.str("priority", ""),
            )
        )
        t.done()
    section = NotifySection(
        targets=tuple(targets),
        events=events,
        queue=n.int("queue", 100, minimum=1, maximum=100_000),
        timeout=n.duration("timeout", 5.0, minimum=0.1),
        retries=n.int("retries", 3, maximum=100),
        backoff=n.duration("backoff", 1.0, minimum=0.0),
    )
    n.done()
    return section
