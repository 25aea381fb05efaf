"""Chaos Toolkit extension for chaos-agent.

Every activity runs the agent's own CLI (`chaos-agent ... --json`), so the agent's ledger,
safety rules and watchdog keep owning every fault: an experiment that dies mid-fault leaves
nothing behind that the watchdog does not heal at the fault's deadline.
"""

from chaoslib.discovery.discover import (
    discover_actions,
    discover_probes,
    initialize_discovery_result,
)
from chaoslib.types import Discovery

__version__ = "0.1.0"
__all__ = ["__version__", "discover"]


def discover(discover_system: bool = True) -> Discovery:
    """The extension's actions and probes, for `chaos discover chaosagent`."""
    discovery = initialize_discovery_result("chaosagent", __version__, "chaos-agent")
    discovery["activities"].extend(discover_actions("chaosagent.actions"))
    discovery["activities"].extend(discover_probes("chaosagent.probes"))
    return discovery
