"""NAT and isolation with nftables, in pycontain's own table `ip pycontain` only.

Every change is one `nft -j -f -` transaction (JSON in, all-or-nothing), so a failure never leaves
half a rule set, and no other table is read or written. The table holds:

    prerouting  nat, hook prerouting (dstnat)  -p: DNAT for traffic arriving from elsewhere
    output      nat, hook output (dstnat)      -p: DNAT for connections made on the host itself,
                                               including to 127.0.0.1 (route_localnet on the bridge)
    N-post      nat, hook postrouting (srcnat) per network: masquerade outbound traffic from the
                                               subnet; masquerade DNAT'd traffic that came from
                                               127.0.0.0/8 or from the subnet itself (hairpin)
    N-fwd       filter, hook forward           per network: into the bridge only replies, DNAT'd
                                               (published) traffic and the network's own traffic;
                                               an --internal network: nothing out of the bridge either
    N-in        filter, hook input             per network: the host is reachable from the bridge
                                               only at the gateway address

Rules for published ports carry the container id as their comment, so `gc` finds a killed
container's rules without any other record. Network chains are named after the network.

Removing a container's rules must not list the table (that grows with every published port on the
host): add_ports keeps the handles nft echoes back in the container's record (KEPT), and remove_ports
deletes by handle. A handle names a rule only within one instance of the table, and the table may have
been deleted and made again since (`nft flush ruleset`, a reload of nftables.service): handles would
then name other containers' rules. So the same transaction that adds the rules adds a named counter,
the container's marker, and the one that deletes them by handle deletes the marker too: if the table
is not the one the handles came from, the marker is missing, nft refuses the whole transaction, and
remove_ports falls back to finding the rules by their comment.
"""

from __future__ import annotations

import _signal
import os

from pycontain import explain, jsonfast
from pycontain.errors import PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FAMILY = "ip"
TABLE = "pycontain"
NFT = "nft"


class NftError(PycontainError):
    """nft failed: not installed, not permitted, refused the transaction, or printed nonsense."""


def _table() -> dict[str, Any]:
    return {"add": {"table": {"family": FAMILY, "name": TABLE}}}


def _chain(name: str, kind: str, hook: str, prio: int) -> dict[str, Any]:
    return {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name, "type": kind, "hook": hook,
                              "prio": prio, "policy": "accept"}}}


def _rule(chain: str, expr: list[dict[str, Any]], comment: str) -> dict[str, Any]:
    return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr, "comment": comment}}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(cidr: str) -> dict[str, Any]:
    addr, _, plen = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(plen)}}


LOCAL_DADDR = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}


ECHO = ("--echo", "--handle")  # nft prints the transaction back with the handles the kernel gave


def run(commands: list[dict[str, Any]], args: tuple[str, ...] = ()) -> str:
    """One nft transaction. Returns nft's stdout (JSON when listing)."""
    text = jsonfast.dumps({"nftables": commands}) if commands else None
    try:
        code, out, err = _spawn([NFT, "-j", *args, *(("-f", "-") if text is not None else ())], text)
    except FileNotFoundError:
        raise NftError("nft is not installed: install the nftables package (apt-get install nftables)") from None
    if code != 0:
        raise NftError(f"nft failed: {err.strip().splitlines()[-1] if err.strip() else f'exit status {code}'}")
    return out


def _spawn(argv: list[str], text: str | None) -> tuple[int, str, str]:
    """Run argv with `text` on stdin; (exit status, stdout, stderr).

    posix_spawn and pipes rather than `subprocess`: importing subprocess (with locale, re, enum,
    contextlib...) cost 5-15 ms of a start with -p on the reference VM, more than nft itself. nft
    reads all of its input before it writes anything, and writes little to stderr, so writing
    stdin first, then reading stdout to its end, then stderr, cannot deadlock.
    """
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
            # Python ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored across exec (as subprocess does).
            setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
    except BaseException:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    try:
        data = (text or "").encode()
        try:
            while data:
                data = data[os.write(in_w, data):]
        except BrokenPipeError:
            pass  # nft stopped reading (it failed): its status and stderr say why
        os.close(in_w)
        in_w = -1
        out, err = _read_all(out_r), _read_all(err_r)
    finally:
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


# ---------------------------------------------------------------- networks

def network_chains(net: dict[str, Any]) -> tuple[str, str, str]:
    n = net["name"]
    return f"{n}-post", f"{n}-fwd", f"{n}-in"


def setup_network(net: dict[str, Any]) -> None:
    """(Re)write one network's chains: add (a no-op if present), flush, fill — one transaction."""
    br, subnet, gw = net["bridge"], net["subnet"], net["gateway"]
    post, fwd, inp = network_chains(net)
    tag = f"network {net['name']}"
    oif_br, iif_br = _match(_meta("oifname"), br), _match(_meta("iifname"), br)
    from_subnet = _match(_payload("ip", "saddr"), _prefix(subnet))
    dnat = _match({"ct": {"key": "status"}}, "dnat", op="in")
    cmds = [*_port_chains(), _chain(post, "nat", "postrouting", 100), _chain(fwd, "filter", "forward", 0),
            _chain(inp, "filter", "input", 0)]
    cmds += [{"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": c}}} for c in (post, fwd, inp)]
    internal = bool(net.get("internal"))
    cmds += [
        # Outbound: the subnet leaves through the host's address (an --internal network never leaves).
        *([] if internal else [_rule(post, [from_subnet, _match(_meta("oifname"), br, "!="), {"masquerade": None}],
                                     tag)]),
        # 127.0.0.1:HOSTPORT -> container: the source must become the gateway, or the reply would be
        # addressed to the container's own loopback.
        _rule(post, [oif_br, _match(_payload("ip", "saddr"), _prefix("127.0.0.0/8")), {"masquerade": None}], tag),
        # Hairpin: a container reaching a published port of its own network must see the reply come
        # back through the host, or conntrack on the host never sees it.
        _rule(post, [oif_br, from_subnet, dnat, {"masquerade": None}], tag),
        _rule(fwd, [oif_br, _match({"ct": {"key": "state"}}, ["established", "related"], op="in"), ACCEPT], tag),
        _rule(fwd, [oif_br, dnat, ACCEPT], tag),
        _rule(fwd, [oif_br, iif_br, ACCEPT], tag),
        # Anything else into this bridge (another network, the outside) was not asked for.
        _rule(fwd, [oif_br, DROP], tag),
        # --internal: nothing from the bridge is forwarded anywhere else either.
        *([_rule(fwd, [iif_br, DROP], tag)] if internal else []),
        # The host itself is reachable from the bridge only at its gateway address: not at the
        # host's other addresses, nor other networks' gateways.
        # New connections only: replies to a published port reached through 127.0.0.1 arrive from
        # the bridge with their destination already translated back to 127.0.0.1.
        _rule(inp, [iif_br, _match({"ct": {"key": "state"}}, "new", op="in"), LOCAL_DADDR,
                    _match(_payload("ip", "daddr"), gw, "!="), DROP], tag),
    ]
    with _table_lock():
        run(cmds)
    explain.say(f"nft: table ip {TABLE}, chains {post}/{fwd}/{inp}: "
                + (f"internal {subnet}, nothing in or out of" if internal else f"masquerade {subnet}, isolate")
                + f" bridge {br}")


def remove_network(net: dict[str, Any]) -> None:
    """Delete one network's chains; with the last network gone, the table too (its two port chains are
    then empty: a container with published ports is always on a network)."""
    with _table_lock():
        objects = _objects(("chain", "rule", "counter"))
        present = {c["name"] for c in objects["chain"]}
        mine = [c for c in network_chains(net) if c in present]
        cmds = [{"delete": {"chain": {"family": FAMILY, "table": TABLE, "name": c}}} for c in mine]
        if cmds:
            run(cmds)
        left = present - set(mine)
        if left and left <= PORT_CHAINS and not objects["counter"] \
                and not any(r.get("chain") in PORT_CHAINS for r in objects["rule"]):
            try:
                # Deleting a chain that holds a rule fails, and with it the whole transaction: a rule added
                # meanwhile keeps the table. setup_network takes the lock, so no network's chains can appear.
                run([*({"delete": {"chain": {"family": FAMILY, "table": TABLE, "name": c}}} for c in sorted(left)),
                     {"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
            except NftError:
                pass


PORT_CHAINS = frozenset({"prerouting", "output"})


class _table_lock:
    """Serialises making a network's chains with deleting the emptied table, across every pycontain on
    this machine (state roots share the table of their network namespace). A POSIX lock: a child forked
    meanwhile does not inherit it."""

    PATH = "/run/pycontain-nft.lock"

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _chains() -> set[str]:
    return {c["name"] for c in _objects(("chain",))["chain"]}


# ---------------------------------------------------------------- published ports

def _port_chains() -> list[dict[str, Any]]:
    return [_table(), _chain("prerouting", "nat", "prerouting", -100), _chain("output", "nat", "output", -100)]


KEPT = "nat.json"  # in the container's record directory: {"rules": [[chain, handle], ...]}


def marker(cid: str) -> str:
    """The name of the counter that marks a container's rules as added to this instance of the table."""
    return f"ports-{cid}"


def _marker_cmd(verb: str, cid: str) -> dict[str, Any]:
    return {verb: {"counter": {"family": FAMILY, "table": TABLE, "name": marker(cid)}}}


def add_ports(cid: str, address: str, ports: list[dict[str, Any]], record: str | None = None) -> None:
    """DNAT each published port to the container, in prerouting and output: one transaction. With
    `record` (the container's record directory), the rules' handles are kept there for remove_ports."""
    kept = f"{record}/{KEPT}" if record else None
    if kept:
        # Handles of an earlier run must never outlive the rules they name (see the module's doc).
        _unlink(kept)
    rules = []
    for p in ports:
        where = [_match(_payload("ip", "daddr"), p["host_ip"])] if p.get("host_ip") else [LOCAL_DADDR]
        expr = [*where, _match(_payload(p["protocol"], "dport"), int(p["host_port"])),
                {"dnat": {"addr": address, "port": int(p["container_port"])}}]
        rules += [_rule("prerouting", expr, cid), _rule("output", expr, cid)]
    rules.append(_marker_cmd("add", cid))  # a no-op if a run whose rules gc has not removed yet left one
    try:
        # The chains exist since the network was set up. Re-adding them in every transaction (a no-op)
        # made it three times slower: 20 ms instead of 7 on the reference VM.
        out = run(rules, ECHO)
    except NftError:
        out = run(_port_chains() + rules, ECHO)  # the table was flushed or made by an older pycontain
    if kept:
        handles = _echoed_rules(out)
        if len(handles) == 2 * len(ports):
            try:
                with open(kept, "w") as f:
                    f.write(jsonfast.dumps({"rules": handles}))
            except FileNotFoundError:
                pass  # no record directory (a build step's container): remove_ports lists the table
    explain.say("nft: DNAT " + ", ".join(f"{p.get('host_ip') or '*'}:{p['host_port']}/{p['protocol']} -> "
                                         f"{address}:{p['container_port']}" for p in ports)
                + " in prerouting and output (comment: the container id)")


def _objects(kinds: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Kind (chain, rule, counter) -> every object of that kind in our table; none if the table does not exist.

    Only a missing table means "nothing of ours": a missing nft binary, a refused netlink request or
    unreadable output is raised. Swallowing those made `gc` report success while every DNAT rule of a
    removed container stayed in place.
    """
    try:
        out = run([], ("list", "table", FAMILY, TABLE))
    except NftError as e:
        # nft's message for a missing table is errno text (localised, worded differently across
        # versions): ask for the list of tables instead, which does not fail when ours is absent.
        if _table_exists():
            raise NftError(f"cannot list nft table {FAMILY} {TABLE}: {e}") from None
        return {kind: [] for kind in kinds}
    items = _parse(out, f"list table {FAMILY} {TABLE}").get("nftables", [])
    return {kind: [item[kind] for item in items if isinstance(item, dict) and kind in item] for kind in kinds}


def _table_exists() -> bool:
    """Whether table ip pycontain exists; NftError if nft cannot even list the tables."""
    out = run([], ("list", "tables", FAMILY))
    return any(isinstance(item, dict) and item.get("table", {}).get("name") == TABLE
               for item in _parse(out, f"list tables {FAMILY}").get("nftables", []))


def _parse(out: str, what: str) -> dict[str, Any]:
    try:
        doc = jsonfast.loads(out)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise NftError(f"`nft -j {what}` printed something that is not nft's JSON: {out[:80]!r}")
    return doc


def rules_by_container() -> dict[str, list[tuple[str, int]]]:
    """Container id -> [(chain, handle)] of every rule whose comment is a container id."""
    return _owned()[0]


def delete_rules(rules: list[tuple[str, int]]) -> None:
    if rules:
        run([_delete_rule(chain, handle) for chain, handle in rules])


def remove_ports(cid: str, record: str | None = None) -> None:
    """Delete a container's DNAT rules and marker: by the handles kept in `record` when there are
    any (no listing), else found by their comment."""
    kept = f"{record}/{KEPT}" if record else None
    handles = _read_kept(kept) if kept else None
    if handles is not None:
        try:
            run([*(_delete_rule(chain, handle) for chain, handle in handles), _marker_cmd("delete", cid)])
        except NftError:
            handles = None  # not this table's rules any more (see the module's doc), or gone: look
    if handles is None:
        rules, markers = _owned()
        cmds = [_delete_rule(chain, handle) for chain, handle in rules.get(cid, [])]
        if cmds or cid in markers:
            run(cmds + ([_marker_cmd("delete", cid)] if cid in markers else []))
    if kept:
        _unlink(kept)


def gc(stale: Callable[[str], bool]) -> list[tuple[str, str]]:
    """Rules and markers of every container for which `stale(id)` is true, found by listing the table
    -> [(container id, what was removed)]."""
    rules, markers = _owned()
    gone = sorted(cid for cid in set(rules) | markers if stale(cid))
    cmds = [_delete_rule(chain, handle) for cid in gone for chain, handle in rules.get(cid, [])]
    cmds += [_marker_cmd("delete", cid) for cid in gone if cid in markers]
    if cmds:
        run(cmds)
    return ([(cid, f"nft rule {chain}/{handle}") for cid in gone for chain, handle in rules.get(cid, [])]
            + [(cid, f"nft counter {marker(cid)}") for cid in gone if cid in markers])


def _owned() -> tuple[dict[str, list[tuple[str, int]]], set[str]]:
    """One listing: container id -> [(chain, handle)] of its rules, and the ids that have a marker."""
    items = _objects(("rule", "counter"))
    rules: dict[str, list[tuple[str, int]]] = {}
    for rule in items["rule"]:
        comment = rule.get("comment", "")
        if _is_id(comment):
            rules.setdefault(comment, []).append((rule["chain"], rule["handle"]))
    prefix = marker("")
    markers = {c["name"][len(prefix):] for c in items["counter"]
               if c.get("name", "").startswith(prefix) and _is_id(c["name"][len(prefix):])}
    return rules, markers


def _is_id(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _delete_rule(chain: str, handle: int) -> dict[str, Any]:
    return {"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "handle": handle}}}


def _echoed_rules(out: str) -> list[list[Any]]:
    """[[chain, handle]] of the rules in nft's echo of an add transaction, in order."""
    try:
        items = _parse(out, "--echo").get("nftables", [])
    except NftError:
        return []
    rules = [item["add"]["rule"] for item in items
             if isinstance(item, dict) and isinstance(item.get("add"), dict) and "rule" in item["add"]]
    return [[r["chain"], r["handle"]] for r in rules if isinstance(r.get("handle"), int)]


def _read_kept(path: str) -> list[tuple[str, int]] | None:
    try:
        with open(path) as f:
            doc = jsonfast.loads(f.read())
        return [(str(chain), int(handle)) for chain, handle in doc["rules"]]
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None  # damaged: find the rules by their comment instead


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- sysctls

def sysctl(path: str, value: str, why: str) -> None:
    """Write a /proc/sys value if it differs, and say so."""
    full = f"/proc/sys/net/{path}"
    try:
        with open(full) as f:
            if f.read().strip() == value:
                return
    except FileNotFoundError:
        return
    fd = os.open(full, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    explain.say(f"sysctl net.{path.replace('/', '.')}={value}: {why}")
