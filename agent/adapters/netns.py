"""Network namespaces: the only module that runs nsenter, iptables and tc.

Every command is an argument list (never a shell, never a string command).
Names of chains, comments and tc handles are derived from the fault id only,
never from a container name or label:

    chain    CHAOS-<fault_id>-in / CHAOS-<fault_id>-out   (iptables: at most 28 chars)
    comment  chaos-agent:<fault_id>                       (on every jump rule we add)
    tc       root qdisc handle 0xc000 | int(fault_id[:3], 16)   (range c000:-cfff:)

A namespace is entered through a pinned file descriptor: `NetnsHandle` opens
/proc/<pid>/ns/net, the caller re-checks the container's identity, and every
command then runs as `nsenter --net=/proc/self/fd/N ...` with that fd passed
down. A PID reused by another process after the check cannot redirect us.

We own only what carries our tag. Nothing here flushes a built-in chain or a
table: Docker keeps its embedded-DNS rules in the container's nat table, and
the user may have rules of their own in filter.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from agent.errors import FaultFailed, TargetGone, Unsupported

CHAIN_PREFIX = "CHAOS-"
COMMENT_PREFIX = "chaos-agent:"
FAMILIES = ("iptables", "ip6tables")
TC_HANDLE_BASE = 0xC000
_FAULT_ID = re.compile(r"[0-9a-f]{12}")
_OUR_CHAIN = re.compile(r"CHAOS-([0-9a-f]{12})-(?:in|out)")
_OUR_COMMENT = re.compile(r"chaos-agent:([0-9a-f]{12})")
_TIMEOUT = 10.0
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21


def check_fault_id(fault_id: str) -> str:
    """Artifact names are built from this; refuse anything but 12 lowercase hex chars."""
    if not _FAULT_ID.fullmatch(fault_id):
        raise FaultFailed(f"fault id {fault_id!r} is not 12 hex characters")
    return fault_id


def chain_names(fault_id: str) -> tuple[str, str]:
    """(ingress chain, egress chain) for a fault id."""
    check_fault_id(fault_id)
    return f"{CHAIN_PREFIX}{fault_id}-in", f"{CHAIN_PREFIX}{fault_id}-out"


def comment_of(fault_id: str) -> str:
    return COMMENT_PREFIX + check_fault_id(fault_id)


def tc_handle(fault_id: str) -> str:
    """The root qdisc handle ('c123:') we use for this fault id."""
    return f"{TC_HANDLE_BASE | int(check_fault_id(fault_id)[:3], 16):x}:"


def is_our_tc_handle(handle: str) -> bool:
    try:
        major = int(handle.rstrip(":").split(":")[0], 16)
    except ValueError:
        return False
    return major & 0xF000 == TC_HANDLE_BASE


# --- running commands inside a namespace -------------------------------------------------


def _run(
    argv: Sequence[str], *, pass_fds: Sequence[int] = (), timeout: float = _TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            pass_fds=tuple(pass_fds),
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise Unsupported(f"{argv[0]} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise FaultFailed(f"{argv[0]} did not answer within {timeout:g}s") from None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def checked(
    argv: Sequence[str], result: subprocess.CompletedProcess[str], where: str, *, check: bool
) -> subprocess.CompletedProcess[str]:
    """`result`, or FaultFailed naming the command when `check` and it exited non-zero."""
    if check and result.returncode != 0:
        raise FaultFailed(
            f"{' '.join(shlex.quote(a) for a in argv)} in netns of {where}: "
            f"{_first_line(result.stderr) or f'exit {result.returncode}'}"
        )
    return result


class NetnsHandle:
    """A container's network namespace, pinned by an open fd on /proc/<pid>/ns/net.

    Open it, then confirm the container's identity (fresh inspect), then run
    commands. Close it (or use it as a context manager) when done.
    """

    def __init__(self, pid: int) -> None:
        if pid <= 1:
            raise TargetGone(f"no usable host PID ({pid}): the container is not running")
        self.pid = pid
        try:
            self.fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TargetGone(f"process {pid} no longer exists") from None
        except PermissionError:
            raise Unsupported(
                f"cannot open /proc/{pid}/ns/net: permission denied (needs root with SYS_ADMIN)"
            ) from None
        self.inode = os.fstat(self.fd).st_ino

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> NetnsHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace; with check, a non-zero exit is FaultFailed."""
        if self.fd < 0:
            raise FaultFailed("namespace handle already closed")
        # The child inherits the fd at the same number (pass_fds), so this path is
        # resolved by nsenter itself to the namespace we pinned.
        full = ["nsenter", f"--net=/proc/self/fd/{self.fd}", "--", *argv]
        result = _run(full, pass_fds=(self.fd,))
        return checked(argv, result, f"pid {self.pid}", check=check)

    # -- iptables ---------------------------------------------------------------------
    def save(self, family: str = "iptables") -> str:
        """`iptables-save` of this namespace without counters and comments/timestamps."""
        result = self.run([f"{family}-save"], check=False)
        if result.returncode != 0:
            return ""
        return normalize_save(result.stdout)

    def rules(self, family: str, chain: str, table: str = "filter") -> list[str]:
        """`iptables -S chain` lines; [] if the chain does not exist."""
        result = self.run([family, "-w", "5", "-t", table, "-S", chain], check=False)
        if result.returncode != 0:
            return []
        return [line for line in result.stdout.splitlines() if line.strip()]

    def chains(self, family: str, table: str = "filter") -> list[str]:
        result = self.run([family, "-w", "5", "-t", table, "-S"], check=False)
        if result.returncode != 0:
            return []
        out = []
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("-N", "-P"):
                out.append(parts[1])
        return out

    def ipt(self, family: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([family, "-w", "5", "-t", "filter", *args], check=check)

    # -- tc ---------------------------------------------------------------------------
    def interfaces(self) -> list[str]:
        """Non-loopback interfaces of the namespace (eth0, eth1, ...)."""
        result = self.run(["ip", "-o", "link", "show"])
        names = []
        for line in result.stdout.splitlines():
            match = re.match(r"\d+:\s+([^:@\s]+)", line)
            if match and match.group(1) != "lo":
                names.append(match.group(1))
        return names

    def root_qdisc(self, dev: str) -> tuple[str, str]:
        """(kind, handle) of the root qdisc of dev, e.g. ('noqueue', '0:')."""
        result = self.run(["tc", "qdisc", "show", "dev", dev])
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "qdisc" and "root" in parts:
                return parts[1], parts[2]
        return "", ""


def normalize_save(text: str) -> str:
    """Drop the '# Generated/Completed' lines and zero the counters, for comparisons."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = re.sub(r"\[\d+:\d+\]$", "[0:0]", line)
        out.append(line)
    return "\n".join(out) + "\n"


# --- our artifacts: add, list, remove ---------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """One rule to append to our chain: iptables match arguments ending in a target."""

    args: tuple[str, ...]


@dataclass
class ChainPlan:
    """What a fault installs in one family: the ingress and egress rules of its chains."""

    ingress: list[RuleSpec] = field(default_factory=list)
    egress: list[RuleSpec] = field(default_factory=list)


def install(ns: NetnsHandle, family: str, fault_id: str, plan: ChainPlan) -> None:
    """Create our chains, fill them, then jump to them first thing in INPUT/OUTPUT.

    The jumps come last, so a half-done install never filters with a partial chain.
    Re-running after a half-done install converges: the chains are emptied and refilled,
    and a jump is added only if none exists.
    """
    comment = comment_of(fault_id)
    for chain, rules in zip(chain_names(fault_id), (plan.ingress, plan.egress), strict=True):
        if chain in ns.chains(family):
            ns.ipt(family, "-F", chain)  # our own chain only
        else:
            ns.ipt(family, "-N", chain)
        for rule in rules:
            ns.ipt(family, "-A", chain, *rule.args)
    for builtin, chain in zip(("INPUT", "OUTPUT"), chain_names(fault_id), strict=True):
        if not any(f"-j {chain}" in line for line in ns.rules(family, builtin)):
            ns.ipt(family, "-I", builtin, "1", "-m", "comment", "--comment", comment, "-j", chain)


def tagged_ids(ns: NetnsHandle, family: str) -> set[str]:
    """Fault ids that have a chain or a tagged rule in this namespace's filter table."""
    found: set[str] = set()
    result = ns.run([family, "-w", "5", "-t", "filter", "-S"], check=False)
    if result.returncode != 0:
        return found
    for line in result.stdout.splitlines():
        found.update(_OUR_CHAIN.findall(line))
        found.update(_OUR_COMMENT.findall(line))
    return found


def _our_rule(line: str, fault_id: str) -> list[str] | None:
    """The words of an `-A` line that references our chains or carries our tag, else None.

    Only lines naming one of our chains or our tag are parsed at all: a foreign rule
    (any quoting, any bytes) is skipped, never an error, so it cannot stop a heal.
    """
    chains = chain_names(fault_id)
    tag = COMMENT_PREFIX + fault_id
    if not line.startswith("-A ") or not any(name in line for name in (*chains, tag)):
        return None
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 2 or words[1] in chains:
        return None  # a rule inside our own chain goes with the chain
    if tag in words:
        return words
    for i, word in enumerate(words[:-1]):
        if word in ("-j", "-g", "--jump", "--goto") and words[i + 1] in chains:
            return words
    return None


def remove(ns: NetnsHandle, family: str, fault_id: str, *, max_rounds: int = 200) -> list[str]:
    """Delete every rule that references our chains or carries our tag, then our chains.

    Loops until a fresh listing shows none (duplicates, half-done installs). Returns
    one description per removed artifact. Raises FaultFailed if something stays.
    """
    removed: list[str] = []
    ours = set(chain_names(fault_id))
    for _ in range(max_rounds):
        found = False
        result = ns.run([family, "-w", "5", "-t", "filter", "-S"], check=False)
        if result.returncode != 0:
            return removed  # no such family in this namespace: nothing of ours
        for line in result.stdout.splitlines():
            words = _our_rule(line, fault_id)
            if words is None:
                continue
            ns.ipt(family, "-D", *words[1:])
            removed.append(f"{family} rule: {line}")
            found = True
            break
        if not found:
            break
    else:
        raise FaultFailed(f"{family}: rules of fault {fault_id} keep coming back")
    existing = set(ns.chains(family))
    for chain in sorted(ours & existing):
        ns.ipt(family, "-F", chain)
        ns.ipt(family, "-X", chain)
        removed.append(f"{family} chain {chain}")
    remaining = tagged_ids(ns, family)
    if fault_id in remaining:
        raise FaultFailed(f"{family}: artifacts of fault {fault_id} remain after removal")
    return removed


def filter_table_exists(ns: NetnsHandle, family: str) -> bool:
    # not `-t filter`: that prints an empty table even where none exists
    result = ns.run([f"{family}-save"], check=False)
    return result.returncode == 0 and "\n*filter\n" in "\n" + result.stdout


def drop_empty_filter_table(ns: NetnsHandle, family: str) -> str | None:
    """iptables-nft creates the filter table on first use; a container namespace has none
    (Docker only writes nat). After our rules are gone, delete that table again, but only
    when it is provably empty: no rules, no sets, only built-in chains with policy accept.
    Returns a description if deleted. Needs the nft tool; without it the (empty, inert)
    table stays."""
    if shutil.which("nft") is None:
        return None
    nft_family = "ip6" if family == "ip6tables" else "ip"
    result = ns.run(["nft", "-j", "list", "table", nft_family, "filter"], check=False)
    if result.returncode != 0:
        return None
    try:
        items = json.loads(result.stdout).get("nftables", [])
    except ValueError:
        return None
    for item in items:
        if "metainfo" in item or "table" in item:
            continue
        chain = item.get("chain")
        if (
            chain is not None
            and chain.get("name") in ("INPUT", "FORWARD", "OUTPUT")
            and chain.get("policy", "accept") == "accept"
        ):
            continue
        return None  # a rule, a set, a user chain, a drop policy: not empty, not ours
    ns.run(["nft", "delete", "table", nft_family, "filter"])
    return f"empty {nft_family} filter table (created by iptables-nft for our rules)"


def add_qdisc(ns: NetnsHandle, dev: str, fault_id: str, kind_args: Sequence[str]) -> None:
    """Root qdisc with our handle; refuse to replace a root qdisc that is not ours."""
    handle = tc_handle(fault_id)
    kind, current = ns.root_qdisc(dev)
    if current == handle:
        return  # already there (re-run of a half-done inject)
    if kind not in ("", "noqueue") and current not in ("0:",):
        raise FaultFailed(
            f"{dev} already has a root qdisc {kind} {current} that chaos-agent did not add; "
            "not replacing it"
        )
    ns.run(["tc", "qdisc", "add", "dev", dev, "root", "handle", handle, *kind_args])


def remove_qdiscs(ns: NetnsHandle, handles: Iterable[str]) -> list[str]:
    """Delete root qdiscs whose handle is in `handles`, on every interface; verify."""
    wanted = set(handles)
    removed = []
    for dev in ns.interfaces():
        kind, current = ns.root_qdisc(dev)
        if current in wanted:
            ns.run(["tc", "qdisc", "del", "dev", dev, "root", "handle", current])
            removed.append(f"tc qdisc {kind} {current} on {dev}")
            if ns.root_qdisc(dev)[1] in wanted:
                raise FaultFailed(f"tc qdisc {current} on {dev} is still there after delete")
    return removed


def our_qdiscs(ns: NetnsHandle) -> list[tuple[str, str, str]]:
    """(dev, kind, handle) of root qdiscs in our handle range."""
    out = []
    for dev in ns.interfaces():
        kind, handle = ns.root_qdisc(dev)
        if handle and is_our_tc_handle(handle):
            out.append((dev, kind, handle))
    return out


# --- capabilities --------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """What this host can do; each missing thing has a one-line reason naming it."""

    iptables: str | None  # None: usable; else the reason
    ip6tables: str | None
    statistic: str | None
    tc: str | None
    netem: str | None
    tbf: str | None


def _cap_bit(bit: int) -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return False


def _scratch(argv: Sequence[str]) -> str | None:
    """Run argv in a throwaway network namespace; None on success, else stderr's first line."""
    try:
        result = _run(["unshare", "--net", "--", *argv], timeout=5.0)
    except (Unsupported, FaultFailed) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    return _first_line(result.stderr) or f"exit {result.returncode}"


@cache
def capabilities() -> Capabilities:
    """Checked once per process: tools on PATH, capabilities, kernel qdiscs and matches."""
    base: str | None = None
    for tool in ("nsenter", "unshare", "ip"):
        if shutil.which(tool) is None:
            base = f"{tool} not found on PATH (install util-linux / iproute2)"
            break
    if base is None and not _cap_bit(_CAP_SYS_ADMIN):
        base = "missing capability SYS_ADMIN: cannot enter namespaces (cap_add: [SYS_ADMIN])"
    if base is None and not _cap_bit(_CAP_NET_ADMIN):
        base = "missing capability NET_ADMIN: cannot change rules or qdiscs (cap_add: [NET_ADMIN])"
    if base is None:
        reason = _scratch(["true"])
        if reason:
            base = f"cannot create or enter a network namespace: {reason}"
    return probe_features(base, _scratch, lambda tool: shutil.which(tool) is not None)


def probe_features(
    base: str | None, scratch: Callable[[Sequence[str]], str | None], have: Callable[[str], bool]
) -> Capabilities:
    """The kernel's and the tools' features, each command run by `scratch` in a namespace
    of its own (None: it worked, else the reason); `base` (a reason) makes all unusable."""

    def tool_reason(tool: str, package: str) -> str | None:
        if base:
            return base
        if not have(tool) or not have(f"{tool}-save" if "ipt" in tool else tool):
            return f"{tool} not found on PATH (install {package})"
        return None

    iptables = tool_reason("iptables", "iptables")
    if iptables is None:
        reason = scratch(
            [
                "iptables",
                "-w",
                "5",
                "-A",
                "OUTPUT",
                "-m",
                "comment",
                "--comment",
                "probe",
                "-j",
                "ACCEPT",
            ]
        )
        if reason:
            iptables = f"iptables comment match unusable: {reason}"
    ip6tables = tool_reason("ip6tables", "iptables")
    if ip6tables is None:
        reason = scratch(["ip6tables", "-w", "5", "-S"])
        if reason:
            ip6tables = f"ip6tables unusable: {reason}"
    statistic = iptables
    if statistic is None:
        reason = scratch(
            [
                "iptables",
                "-w",
                "5",
                "-A",
                "OUTPUT",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.5",
                "-j",
                "DROP",
            ]
        )
        if reason:
            statistic = f"iptables statistic match unavailable (kernel xt_statistic): {reason}"
    tc = tool_reason("tc", "iproute2")
    netem = tc
    if netem is None:
        reason = scratch(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        if reason:
            netem = f"kernel has no sch_netem (tc: {reason})"
    tbf = tc
    if tbf is None:
        reason = scratch(
            [
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "tbf",
                "rate",
                "1mbit",
                "burst",
                "32kbit",
                "latency",
                "50ms",
            ]
        )
        if reason:
            tbf = f"kernel has no sch_tbf (tc: {reason})"
    return Capabilities(
        iptables=iptables, ip6tables=ip6tables, statistic=statistic, tc=tc, netem=netem, tbf=tbf
    )


def host_pid_visible(pid: int) -> str | None:
    """None if /proc/<pid> of a container is visible to us, else the reason (pid: host)."""
    if pid <= 0 or os.path.exists(f"/proc/{pid}/ns/net"):
        return None
    return (
        f"cannot see host PID {pid}: run the agent in the host PID namespace "
        "(pid: host in compose, --pid=host)"
    )
