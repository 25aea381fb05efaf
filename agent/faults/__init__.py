"""Faults: one module per family. Each knows *how* to inject and heal, never *whether*."""
