"""Run by tests/test_systemd.py inside a unit with chaos-agent.service's hardening: the
agent's own netns adapter enters another process's network namespace and adds an iptables
rule (nft and legacy, the latter taking /run/xtables.lock) and a tc qdisc there."""

from __future__ import annotations

import sys

from agent.adapters.netns import NetnsHandle

TAG = "chaos-hardening"


def main(pid: int) -> int:
    rule = ["INPUT", "-m", "comment", "--comment", TAG, "-j", "ACCEPT"]
    with NetnsHandle(pid) as ns:
        ns.run(["iptables", "-w", "5", "-I", *rule])
        ns.run(["iptables-legacy", "-w", "5", "-I", *rule])
        tbf = ["tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms"]
        ns.run(["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", *tbf])
        for argv in (["iptables", "-S", "INPUT"], ["iptables-legacy", "-S", "INPUT"]):
            print(argv[0], "ok" if TAG in ns.run(argv).stdout else "missing", flush=True)
        print("tc", "ok" if "tbf" in ns.run(["tc", "qdisc", "show", "dev", "lo"]).stdout else "missing")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1])))
