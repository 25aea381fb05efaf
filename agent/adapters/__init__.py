"""Adapters: one per outside SDK; the only places those SDKs are imported."""
