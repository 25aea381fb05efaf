"""The fleet coordinator: grants leases for faults to agents that reach it over SSH.

Layers (import only downward): policy and admission are pure; protocol validates
wire messages; store is the SQLite state; session serves one agent's SSH channel;
client is the agent side (a LeaseProvider); cli is the `coordinator` command group.
"""
