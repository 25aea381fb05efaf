"""One root error type; the CLI translates it into one line and a fixed exit code.

Exit codes: 2 for usage and configuration errors (nothing was attempted),
1 for runtime errors (the environment refused or failed).
"""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class UsageError(AgentError):
    """The user asked for something malformed: bad flag, bad duration, unknown fault."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The configuration file is malformed or invalid; the message names the key path."""


class DockerUnavailable(AgentError):
    """The Docker daemon does not answer."""


class TargetNotFound(AgentError):
    """A container or process named by the user does not exist."""


class TargetGone(AgentError):
    """The target vanished between decision and action: a clean skip, not a crash."""


class IdentityChanged(AgentError):
    """The target was restarted or recreated since it was recorded: leave it alone."""


class NotEligible(AgentError):
    """The target may not be faulted now; the message says why."""


class Unsupported(AgentError):
    """This host cannot perform the fault (missing kernel feature, capability or tool)."""


class LedgerError(AgentError):
    """The ledger could not be read or written: fail closed, inject nothing."""


class LedgerCorrupt(LedgerError):
    """The ledger file exists but cannot be parsed."""


class LockHeld(AgentError):
    """Another agent holds the state directory."""


class LeaseRefused(AgentError):
    """The coordinator (or the local lease provider) refused a lease."""


class CoordinatorUnavailable(AgentError):
    """The coordinator cannot be reached: fail closed."""


class FaultFailed(AgentError):
    """An inject or heal call failed in the environment."""
