"""The coordinator wire protocol: versioned, newline-delimited JSON over one SSH channel.

Requests (one JSON object per line, at most MAX_LINE bytes, UTF-8)::

    {"v": 1, "id": 7, "op": "acquire", "group": "web", "fault": "pause", "duration": 30,
     "report": {"members": 3, "running": 3, "healthy": 3}}
    {"v": 1, "id": 8, "op": "renew", "lease_id": "L-...", "token": 42}
    {"v": 1, "id": 9, "op": "release", "lease_id": "L-...", "token": 42}
    {"v": 1, "id": 10, "op": "report", "groups": [{"group": "web", "members": 3, ...}]}
    {"v": 1, "id": 11, "op": "status"}

Replies: {"v": 1, "id": <echoed>, "ok": true, ...} or
{"v": 1, "id": <echoed or null>, "ok": false, "error": CODE, "reason": TEXT}.
Every field is validated; unknown fields (notably any "host": identity comes from
the SSH key) are refused. A refused request changes nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent import model
from agent.errors import AgentError

VERSION = 1
MAX_LINE = 64 * 1024  # bytes, newline included
MAX_REPLY = 1024 * 1024  # the client refuses longer replies
MAX_GROUPS = 256
MAX_DURATION = 7 * 86400.0
MAX_COUNT = 100_000
MAX_TOKEN = 2**62

GROUP_RE = re.compile(r"[A-Za-z0-9._:/@+=-]{1,128}", re.ASCII)
LEASE_ID_RE = re.compile(r"L-[0-9a-f]{32}", re.ASCII)
HOST_RE = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)


class ProtocolError(AgentError):
    """A request or reply that does not follow the protocol."""

    def __init__(self, message: str, *, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class GroupCounts:
    group: str
    members: int
    running: int
    healthy: int


@dataclass(frozen=True)
class Acquire:
    id: int | str | None
    group: str
    fault: str
    duration: float
    report: GroupCounts


@dataclass(frozen=True)
class Renew:
    id: int | str | None
    lease_id: str
    token: int


@dataclass(frozen=True)
class Release:
    id: int | str | None
    lease_id: str
    token: int


@dataclass(frozen=True)
class Report:
    id: int | str | None
    groups: tuple[GroupCounts, ...]


@dataclass(frozen=True)
class Status:
    id: int | str | None


Request = Acquire | Renew | Release | Report | Status

_FIELDS: dict[str, frozenset[str]] = {
    "acquire": frozenset({"group", "fault", "duration", "report"}),
    "renew": frozenset({"lease_id", "token"}),
    "release": frozenset({"lease_id", "token"}),
    "report": frozenset({"groups"}),
    "status": frozenset(),
}
_COMMON = frozenset({"v", "id", "op"})


def valid_host(name: str) -> bool:
    return bool(HOST_RE.fullmatch(name)) and name not in (".", "..")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def decode_line(line: bytes, *, limit: int = MAX_LINE) -> dict[str, Any]:
    """Bytes of one line -> a JSON object, or ProtocolError. Never anything else."""
    if len(line) > limit:
        raise ProtocolError(f"line longer than {limit} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not valid UTF-8 at byte {exc.start}") from None
    if "\x00" in text:
        raise ProtocolError("NUL byte in request")
    if not text.strip():
        raise ProtocolError("empty line")
    try:
        data = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a request must be a JSON object")
    return data


def _request_id(data: Mapping[str, Any]) -> int | str | None:
    rid = data.get("id")
    if rid is None:
        return None
    if isinstance(rid, bool):
        raise ProtocolError("id must be an integer or a short string")
    if isinstance(rid, int) and 0 <= rid <= MAX_TOKEN:
        return rid
    if isinstance(rid, str) and REQUEST_ID_RE.fullmatch(rid):
        return rid
    raise ProtocolError("id must be an integer or a short string")


def _int(data: Mapping[str, Any], key: str, rid: Any, *, lo: int, hi: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(f"{key} must be an integer in [{lo}, {hi}]", request_id=rid)
    return value


def _str(data: Mapping[str, Any], key: str, rid: Any, pattern: re.Pattern[str]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProtocolError(f"{key} is missing or malformed", request_id=rid)
    return value


def _counts(data: Any, rid: Any, *, group: str | None, where: str) -> GroupCounts:
    if not isinstance(data, dict):
        raise ProtocolError(f"{where} must be an object", request_id=rid)
    allowed = {"members", "running", "healthy"} | ({"group"} if group is None else set())
    extra = set(data) - allowed
    if extra:
        raise ProtocolError(f"{where}: unknown field {sorted(extra)[0][:40]!r}", request_id=rid)
    name = group if group is not None else _str(data, "group", rid, GROUP_RE)
    members = _int(data, "members", rid, lo=0, hi=MAX_COUNT)
    running = _int(data, "running", rid, lo=0, hi=MAX_COUNT)
    healthy = _int(data, "healthy", rid, lo=0, hi=MAX_COUNT)
    if not healthy <= running <= members:
        raise ProtocolError(f"{where}: need healthy <= running <= members", request_id=rid)
    return GroupCounts(name, members, running, healthy)


def parse_request(line: bytes) -> Request:
    """Validate one request line; raises ProtocolError (carrying the id when known)."""
    data = decode_line(line)
    rid = _request_id(data)
    if data.get("v") != VERSION or isinstance(data.get("v"), bool):
        raise ProtocolError(f"unsupported protocol version (this is v{VERSION})", request_id=rid)
    op = data.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise ProtocolError(f"unknown op (use one of {', '.join(_FIELDS)})", request_id=rid)
    extra = set(data) - _COMMON - _FIELDS[op]
    if "host" in extra:
        raise ProtocolError(
            "field 'host' is refused: the identity comes from the SSH key", request_id=rid
        )
    if extra:
        raise ProtocolError(f"unknown field {sorted(extra)[0][:40]!r} for {op}", request_id=rid)
    missing = _FIELDS[op] - set(data)
    if missing:
        raise ProtocolError(f"missing field {sorted(missing)[0]!r} for {op}", request_id=rid)
    if op == "acquire":
        group = _str(data, "group", rid, GROUP_RE)
        fault = data.get("fault")
        if not isinstance(fault, str) or fault not in model.ALL_FAULTS:
            raise ProtocolError("fault is not a known fault name", request_id=rid)
        duration = data.get("duration")
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)
            or not 0 < duration <= MAX_DURATION
        ):
            raise ProtocolError(f"duration must be in (0, {MAX_DURATION:g}] s", request_id=rid)
        report = _counts(data["report"], rid, group=group, where="report")
        return Acquire(rid, group, fault, float(duration), report)
    if op in ("renew", "release"):
        lease_id = _str(data, "lease_id", rid, LEASE_ID_RE)
        token = _int(data, "token", rid, lo=1, hi=MAX_TOKEN)
        return (Renew if op == "renew" else Release)(rid, lease_id, token)
    if op == "report":
        groups = data["groups"]
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
            raise ProtocolError(f"groups must be a list of at most {MAX_GROUPS}", request_id=rid)
        parsed = tuple(
            _counts(g, rid, group=None, where=f"groups[{i}]") for i, g in enumerate(groups)
        )
        if len({g.group for g in parsed}) != len(parsed):
            raise ProtocolError("groups: a group is listed twice", request_id=rid)
        return Report(rid, parsed)
    return Status(rid)


def encode(message: Mapping[str, Any]) -> bytes:
    """One line of ASCII JSON (non-ASCII escaped), newline-terminated."""
    return (
        json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode(
            "ascii"
        )
        + b"\n"
    )


def ok_reply(request_id: int | str | None, **fields: Any) -> bytes:
    return encode({"v": VERSION, "id": request_id, "ok": True, **fields})


def error_reply(request_id: int | str | None, code: str, reason: str) -> bytes:
    return encode({"v": VERSION, "id": request_id, "ok": False, "error": code, "reason": reason})


def parse_reply(line: bytes) -> dict[str, Any]:
    """Client side: validate the envelope of a reply (fields are checked by the caller)."""
    data = decode_line(line, limit=MAX_REPLY)
    if data.get("v") != VERSION or not isinstance(data.get("ok"), bool):
        raise ProtocolError("reply is not a v1 coordinator reply")
    if not data["ok"]:
        if not isinstance(data.get("error"), str) or not isinstance(data.get("reason"), str):
            raise ProtocolError("error reply without error code and reason")
    return data
