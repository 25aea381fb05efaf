"""The engine's two outputs: a line for the person watching, an event for the journal.

Most steps say both at once ("healed pause web-2" and a `heal` event); an error line is
said once while it repeats (a coordinator that stays down is one error, not one a tick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.journal import Journal


class Voice:
    def __init__(self, journal: Journal, log: Callable[[str], None]) -> None:
        self.journal = journal
        self.log = log
        self._last_error = ""

    def say(self, event: str, line: str, **fields: Any) -> None:
        """Log `line` and journal `event` with `fields`."""
        self.log(line)
        self.journal.write(event, **fields)

    def note(self, event: str, **fields: Any) -> None:
        """Journal only (the log line, if any, is printed by someone else)."""
        self.journal.write(event, **fields)

    def error(self, message: str) -> None:
        """`error: <message>` in the log and the journal, once while it repeats."""
        if message != self._last_error:
            self.say("error", f"error: {message}", message=message)
        self._last_error = message

    def error_quiet(self, message: str) -> None:
        """An error the caller prints itself: journal only."""
        self.journal.write("error", message=message)
