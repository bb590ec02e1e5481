"""The embedded DNS resolver's answers (pycontain/network/resolver.py), without a process or root:
names, aliases, search domains, round robin, what is forwarded, truncation, upstream parsing."""

from __future__ import annotations

from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord  # type: ignore[import-untyped, unused-ignore]

from pycontain.network import dns, resolver

LEASES: dict[str, dict[str, Any]] = {
    "10.89.0.2": {"id": "a" * 64, "name": "web", "hostname": "aaaaaaaaaaaa"},
    "10.89.0.3": {"id": "b" * 64, "name": "app-worker-1", "hostname": "w1", "aliases": ["worker"]},
    "10.89.0.10": {"id": "c" * 64, "name": "app-worker-2", "hostname": "w2", "aliases": ["worker"]},
    "10.89.0.4": {"id": "d" * 64, "name": "stopped", "hostname": "dddddddddddd", "aliases": ["worker"]},
}
RUNNING = {"a" * 64, "b" * 64, "c" * 64}
INDEX = resolver.index(LEASES)


def lookup(name: str) -> list[str] | None:
    return resolver.find(name, ["corp.example"], [(INDEX, RUNNING)])


def ask(name: str, qtype: str = "A", lookup_fn=lookup, ptr=lambda a: None, limit: int = 512):  # type: ignore[no-untyped-def]
    out = resolver.answer(DNSRecord.question(name, qtype).pack(), lookup_fn, ptr, limit)
    return DNSRecord.parse(out) if isinstance(out, bytes) else out


def test_a_container_answers_to_its_name_hostname_short_id_and_aliases() -> None:
    assert lookup("web") == ["10.89.0.2"]
    assert lookup("aaaaaaaaaaaa") == ["10.89.0.2"]
    assert lookup("w1") == ["10.89.0.3"]
    assert lookup("APP-Worker-1.") == ["10.89.0.3"]  # any case, a final dot
    assert lookup("web.corp.example") == ["10.89.0.2"]  # the search domain a resolver appended
    assert lookup("web.other.example") is None
    assert lookup("nobody") is None


def test_a_service_alias_is_every_running_replica_sorted_by_address() -> None:
    # 10.89.0.4 holds the alias too, but is not running
    assert lookup("worker") == ["10.89.0.3", "10.89.0.10"]
    assert resolver.rotate(["1", "2", "3"], 0) == ["1", "2", "3"]
    assert resolver.rotate(["1", "2", "3"], 4) == ["2", "3", "1"]


def test_the_first_network_with_the_name_wins() -> None:
    other = resolver.index({"10.90.0.2": {"id": "e" * 64, "name": "db", "hostname": "x"},
                            "10.90.0.3": {"id": "a" * 64, "name": "web", "hostname": "y"}})
    nets = [(INDEX, RUNNING), (other, {"e" * 64, "a" * 64})]
    assert resolver.find("web", [], nets) == ["10.89.0.2"]
    assert resolver.find("db", [], nets) == ["10.90.0.2"]


def test_answers_for_known_names_and_no_data_for_other_types() -> None:
    r = ask("worker")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa
    assert [str(rr.rdata) for rr in r.rr] == ["10.89.0.3", "10.89.0.10"]
    assert all(rr.ttl == resolver.TTL for rr in r.rr)
    r = ask("web", "AAAA")
    assert r.header.rcode == RCODE.NOERROR and not r.rr  # exists, no IPv6: not NXDOMAIN
    assert ask("example.com") == resolver.FORWARD
    assert ask("example.com", "MX") == resolver.FORWARD


def test_ptr_for_a_member_address_else_forwarded() -> None:
    names = {"10.89.0.2": "web"}
    r = ask("2.0.89.10.in-addr.arpa", "PTR", ptr=names.get)
    assert str(r.rr[0].rdata) == "web." and r.rr[0].rtype == QTYPE.PTR
    assert ask("9.0.89.10.in-addr.arpa", "PTR", ptr=names.get) == resolver.FORWARD
    assert resolver.reverse_address("1.2.3.in-addr.arpa") is None
    assert resolver.reverse_address("4.3.2.1.IN-ADDR.ARPA.") == "1.2.3.4"


def test_a_large_answer_is_truncated_for_udp() -> None:
    many = [f"10.1.0.{i}" for i in range(100)]
    r = ask("svc", lookup_fn=lambda name: many)
    assert r.header.tc and 0 < len(r.rr) < 100
    assert len(r.pack()) <= 512
    r = ask("svc", lookup_fn=lambda name: many, limit=65535)  # TCP: all of them
    assert not r.header.tc and len(r.rr) == 100


def test_garbage_and_responses_are_not_answered_as_queries() -> None:
    assert resolver.answer(b"\x00\x01", lookup, lambda a: None) is None
    reply = DNSRecord.question("web").reply().pack()
    assert resolver.answer(reply, lookup, lambda a: None) is None
    formerr = resolver.answer(b"\x12\x34\x01\x00" + b"\x00\x05" + b"\x00" * 6 + b"\xff", lookup, lambda a: None)
    assert isinstance(formerr, bytes) and formerr[:2] == b"\x12\x34" and formerr[3] & 0xF == RCODE.FORMERR
    fail = resolver.servfail(DNSRecord.question("example.com").pack())
    assert fail is not None and DNSRecord.parse(fail).header.rcode == RCODE.SERVFAIL


def test_edns_size() -> None:
    q = DNSRecord.question("web")
    assert resolver.edns_size(q.pack()) == 512
    from dnslib import EDNS0

    q.add_ar(EDNS0(udp_len=1232))
    assert resolver.edns_size(q.pack()) == 1232


def test_upstreams_from_the_environment_or_resolv_conf() -> None:
    conf = "search corp.example\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions edns0\n"
    assert resolver.upstreams(None, conf) == [("127.0.0.53", 53), ("fe80::1", 53)]
    assert resolver.upstreams("none", conf) == []
    assert resolver.upstreams("127.0.0.1:5353, 10.0.0.1,[::1]:54", conf) == [
        ("127.0.0.1", 5353), ("10.0.0.1", 53), ("::1", 54)]
    assert resolver.upstreams(None, "") == []
    assert resolver.search_domains(conf) == ["corp.example"]


def test_the_resolv_conf_of_a_user_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.1\nsearch a.example b.example\noptions edns0 timeout:2\n")
    assert dns.embedded_resolv_conf(str(host)) == (
        "nameserver 127.0.0.11\nsearch a.example b.example\noptions ndots:0 edns0 timeout:2\n")
    host.write_text("nameserver 192.0.2.1\noptions ndots:2\n")
    assert dns.embedded_resolv_conf(str(host)) == "nameserver 127.0.0.11\noptions ndots:2\n"
    assert dns.embedded_resolv_conf(str(tmp_path / "none")) == "nameserver 127.0.0.11\noptions ndots:0\n"


def test_only_user_networks_have_a_resolver() -> None:
    assert resolver.wanted("front") and not resolver.wanted("bridge") and not resolver.wanted("pycontain")
