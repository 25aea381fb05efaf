"""chaos-agent: a Chaos Monkey for self-hosted Docker stacks."""

__version__ = "0.1.0"
