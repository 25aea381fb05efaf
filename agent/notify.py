"""Notifications: a journal observer that tells people when the agent acted or is in trouble.

Slack/Mattermost (`{"text": …}`), Discord (`{"content": …}`), ntfy (plain body, `Title`,
`Priority`, `Tags` headers), Gotify (`{"title", "message", "priority"}`) and generic JSON
(the journal event as is, plus `message`) go out with the standard library; `apprise`
(optional extra) covers everything else.

Never in the way of a heal: `observe` only formats and `put_nowait`s into a bounded queue
per target; a worker thread per target sends with a timeout and retries with backoff.
When a queue is full the message is dropped and counted. Webhook URLs carry tokens: they
are only ever read by `_send`; logs and counters name the target by its `name`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from agent.ops_config import NotifySection, NotifyTarget
from agent.outcomes import FaultOutcomes, GroupOutcomes
from agent.report import GroupVerdict
from agent.textsafe import printable

FAULT_EVENTS = ("inject", "heal", "healed_by_environment")
Counter = Callable[[str, str], None]  # (target name, result: sent|failed|dropped|retried)


def _fault_text(e: dict[str, Any]) -> str:
    return f"{printable(e.get('fault', ''), 40)} {printable(e.get('container', ''), 80)}"


def _group_line(group: GroupVerdict, faults: int) -> str:
    name = printable(group.group, 80)
    plural = "s" * (faults != 1)
    if group.verdict in ("survived", "unmeasured", "dry-run"):
        return f"group {name}: {group.verdict} ({faults} fault{plural})"
    word = "OUTAGE" if group.verdict == "outage" else group.verdict
    return f"group {name}: {word} ({faults} fault{plural}); {printable(group.reason, 300)}"


class Messages:
    """Journal events -> message text (None: not for people).

    Tracks probe results and judges each fault as `report` would (agent.outcomes), for the
    verdict per group in the stop message.
    """

    def __init__(
        self, events: tuple[str, ...], probes: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self.events = set(events)
        self.probes: dict[str, list[int]] = {}  # probe -> [ok, total]
        self.outcomes = FaultOutcomes(probes=probes)
        self.groups = GroupOutcomes()

    def text(self, e: dict[str, Any]) -> str | None:
        name = e.get("event")
        self.groups.add(self.outcomes.observe(e))
        host = printable(e.get("host", ""), 80)
        if name == "probe":
            counts = self.probes.setdefault(printable(e.get("probe", ""), 60), [0, 0])
            counts[0] += 1 if e.get("ok") else 0
            counts[1] += 1
            return None
        if name == "start" and "start" in self.events:
            return f"chaos-agent started on {host}: {printable(e.get('targets', ''), 300)}"
        if name == "stop" and "stop" in self.events:
            left = int(e.get("left") or 0)
            verdict = "all faults healed" if left == 0 else f"{left} fault(s) NOT healed"
            parts = [f"chaos-agent stopped on {host} ({printable(e.get('reason', ''), 200)}): {verdict}"]  # fmt: skip
            self.groups.add(self.outcomes.flush())
            for group, count in self.groups.verdicts():
                parts.append(_group_line(group, count))
            for probe, (ok, total) in sorted(self.probes.items()):
                share = ok / total if total else 1.0
                word = "no outage" if ok == total else "OUTAGE" if share < 0.9 else "degraded"
                parts.append(f"{probe}: {word}, {100 * share:.1f}% of {total} probes ok")
            return "; ".join(parts)
        if name == "halt" and "halt" in self.events:
            return f"chaos-agent halted on {host}: {printable(e.get('reason', ''), 300)}"
        if name == "resume" and "resume" in self.events:
            return f"chaos-agent resumed on {host}: {printable(e.get('reason', ''), 200)}"
        if name == "heal_failed" and "heal_failed" in self.events:
            return (
                f"heal of {_fault_text(e)} on {host} failed (attempt {e.get('attempts')}): "
                f"{printable(e.get('detail', ''), 200)}"
            )
        if name == "stuck" and "stuck" in self.events:
            return f"STUCK: heal of {_fault_text(e)} on {host} keeps failing; no new faults until cleared"  # fmt: skip
        if name == "watchdog" and "watchdog" in self.events:
            if e.get("how") == "failed":
                return f"the dead-man watchdog could NOT heal {_fault_text(e)} on {host}: {printable(e.get('detail', ''), 200)}"  # fmt: skip
            return f"the dead-man watchdog healed {_fault_text(e)} on {host}: {printable(e.get('how', ''), 40)}"  # fmt: skip
        if name in FAULT_EVENTS and "fault" in self.events:
            verb = "injected" if name == "inject" else "healed"
            return f"{verb} {_fault_text(e)} on {host} ({e.get('duration')}s)"
        return None


def request_for(target: NotifyTarget, text: str, event: dict[str, Any]) -> urllib.request.Request:
    """The HTTP request one target expects (pure: tested as data)."""
    url = target.url.reveal()
    headers = {"Content-Type": "application/json", "User-Agent": "chaos-agent"}
    if target.kind in ("slack", "mattermost"):
        body = json.dumps({"text": text}).encode()
    elif target.kind == "discord":
        body = json.dumps({"content": text}).encode()
    elif target.kind == "ntfy":
        body = text.encode()
        headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "chaos-agent"}
        headers["Title"] = target.title
        headers["Tags"] = "monkey"
        if target.priority:
            headers["Priority"] = target.priority
    elif target.kind == "gotify":
        payload: dict[str, Any] = {"title": target.title, "message": text}
        if target.priority.isdigit():
            payload["priority"] = int(target.priority)
        body = json.dumps(payload).encode()
    else:  # json: the journal event as is
        body = json.dumps({**event, "message": text}, default=str).encode()
    return urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) checked in config


class _Worker:
    def __init__(self, target: NotifyTarget, section: NotifySection, count: Counter) -> None:
        self.target = target
        self.section = section
        self.count = count
        self.queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(section.queue)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"notify-{target.name}", daemon=True)
        self.last_error = ""

    def _send(self, text: str, event: dict[str, Any]) -> None:
        if self.target.kind == "apprise":
            import apprise  # optional extra: pip install 'chaos-agent[notify]'

            box = apprise.Apprise()
            box.add(self.target.url.reveal())
            if not box.notify(body=text, title=self.target.title):
                raise OSError("apprise could not deliver")
            return
        request = request_for(self.target, text, event)
        with urllib.request.urlopen(request, timeout=self.section.timeout) as response:  # noqa: S310 - http(s) only (config)
            response.read(4096)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            text, event = item
            delay = self.section.backoff
            for attempt in range(self.section.retries + 1):
                try:
                    self._send(text, event)
                except urllib.error.HTTPError as exc:
                    self.last_error = f"HTTP {exc.code}"  # never the URL
                except (OSError, ValueError) as exc:
                    self.last_error = exc.__class__.__name__
                except Exception as exc:  # noqa: BLE001 - a sender bug must not kill the worker
                    self.last_error = exc.__class__.__name__
                else:
                    self.count(self.target.name, "sent")
                    break
                if attempt == self.section.retries or self.stopping.wait(delay):
                    self.count(self.target.name, "failed")
                    break
                self.count(self.target.name, "retried")
                delay *= 2

    def offer(self, text: str, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((text, event))
        except queue.Full:
            self.count(self.target.name, "dropped")


class Notifier:
    """The journal observer; `start` once, `stop` at the end (bounded wait)."""

    def __init__(
        self,
        section: NotifySection,
        count: Counter | None = None,
        probes: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.section = section
        self.messages = Messages(section.events, probes)
        self.counts: dict[tuple[str, str], int] = {}
        self._extra = count
        self._lock = threading.Lock()
        self.workers = [_Worker(t, section, self._count) for t in section.targets]

    def _count(self, target: str, result: str) -> None:
        with self._lock:
            self.counts[(target, result)] = self.counts.get((target, result), 0) + 1
        if self._extra is not None:
            self._extra(target, result)

    def start(self) -> None:
        for worker in self.workers:
            if not worker.thread.is_alive():
                worker.thread.start()

    def observe(self, event: dict[str, Any]) -> None:
        text = self.messages.text(event)
        if text is None:
            return
        for worker in self.workers:
            worker.offer(text, event)

    def stop(self, timeout: float = 5.0) -> None:
        """Let queued messages (the final `stop` one above all) go out for at most `timeout`."""
        end = time.monotonic() + timeout
        for worker in self.workers:
            try:
                worker.queue.put(None, timeout=max(0.0, end - time.monotonic()))
            except queue.Full:
                pass
        for worker in self.workers:
            worker.thread.join(max(0.0, end - time.monotonic()))
        for worker in self.workers:
            worker.stopping.set()  # a retry in its backoff gives up now


def attach_notifier(journal: Any, section: NotifySection) -> Callable[[], None]:
    """Subscribe a started Notifier to `journal` (the watchdog's own); returns its stop."""
    if not section.targets:
        return lambda: None
    notifier = Notifier(section)
    notifier.start()
    journal.subscribe(notifier.observe)
    return lambda: notifier.stop(timeout=section.timeout)
