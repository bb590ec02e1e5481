"""rtnl.py speaks rtnetlink byte for byte: requests encode as the kernel's structs, answers decode, errors raise.

No root and no kernel: a fake socket records what was sent and plays back what the kernel would answer.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable

import pytest

from pycontain.network import rtnl
from pycontain.network.rtnl import Rtnl

NLM_F_MULTI = 0x2  # on every message of a dump
Answer = Callable[[int], bytes]  # sequence number of the request -> the datagram the kernel sends back


class FakeSocket:
    """Records every datagram sent; each recv() returns the next scripted answer, built for the request."""

    def __init__(self, *answers: Answer) -> None:
        self.sent: list[bytes] = []
        self.answers = list(answers)

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        answer = self.answers.pop(0)
        seq = struct.unpack_from("=I", self.sent[-1], 8)[0]
        return answer(seq)

    def close(self) -> None:
        pass


def reply(kind: int, payload: bytes, flags: int = 0) -> Answer:
    def build(seq: int) -> bytes:
        return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload
    return build


def ack(code: int = 0, flags: int = rtnl.NLM_F_CAPPED, tlvs: bytes = b"") -> Answer:
    # NLMSG_ERROR: the error, the request's (capped) header, then any extended-ACK attributes.
    return reply(rtnl.NLMSG_ERROR, struct.pack("=i", code) + bytes(16) + tlvs, flags)


def several(*parts: Answer) -> Answer:
    """Several messages in one datagram, as the kernel packs a dump."""
    return lambda seq: b"".join(p(seq) for p in parts)


def decode(data: bytes) -> tuple[int, int, bytes, dict[int, bytes]]:
    """A sent request -> (type, flags, family header, attributes after a header of the right size)."""
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", data)
    assert length == len(data)
    size = {rtnl.RTM_NEWADDR: 8, rtnl.RTM_NEWROUTE: 12, rtnl.RTM_GETROUTE: 12}.get(kind, 16)
    return kind, flags, data[16:16 + size], rtnl.attrs(data, 16 + size)


# ---------------------------------------------------------------- attributes

def test_an_attribute_is_length_type_value_padded_to_four_bytes() -> None:
    assert rtnl.attr(3, b"eth0\0") == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0\0\0"
    assert rtnl.attr(10, rtnl.u32(7)) == struct.pack("=HHI", 8, 10, 7)


def test_a_nested_attribute_carries_the_nested_flag_and_its_children() -> None:
    inner = rtnl.attr(rtnl.IFLA_INFO_KIND, b"bridge")
    outer = rtnl.nested(rtnl.IFLA_LINKINFO, inner)
    assert struct.unpack_from("=HH", outer) == (4 + len(inner), rtnl.IFLA_LINKINFO | rtnl.NLA_F_NESTED)
    assert rtnl.attrs(outer) == {rtnl.IFLA_LINKINFO: inner}
    assert rtnl.attrs(rtnl.attrs(outer)[rtnl.IFLA_LINKINFO]) == {rtnl.IFLA_INFO_KIND: b"bridge"}


def test_attributes_decode_back_and_a_truncated_one_is_ignored() -> None:
    data = rtnl.attr(1, b"a") + rtnl.attr(2, b"bcdef")
    assert rtnl.attrs(data) == {1: b"a", 2: b"bcdef"}
    assert rtnl.attrs(data + struct.pack("=HH", 40, 3)) == {1: b"a", 2: b"bcdef"}


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b"])
def test_an_interface_name_the_kernel_would_refuse_is_refused_before_sending(name: str) -> None:
    with pytest.raises(ValueError):
        rtnl.ifname(name)


def test_mac_and_ipv4_text_encode_to_raw_bytes() -> None:
    assert rtnl.mac("02:42:0a:58:00:01") == bytes([2, 0x42, 10, 88, 0, 1])
    assert rtnl.ipv4("10.88.0.1") == bytes([10, 88, 0, 1])
    with pytest.raises(ValueError):
        rtnl.mac("02:42")
    with pytest.raises(ValueError):
        rtnl.ipv4("10.88")


# ---------------------------------------------------------------- requests

def test_a_veth_request_nests_the_peer_with_its_netns_fd_name_and_mac() -> None:
    sock = FakeSocket(ack())
    Rtnl(sock).add_veth("pc0123456789ab", peer="eth0", peer_netns_fd=9, peer_address="02:42:0a:58:00:02", master=4)
    kind, flags, header, found = decode(sock.sent[0])
    assert kind == rtnl.RTM_NEWLINK
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    family, _, index, ifi_flags, change = struct.unpack("=BxHiII", header)
    assert (family, index, ifi_flags, change) == (0, 0, rtnl.IFF_UP, rtnl.IFF_UP)  # our end comes up
    assert found[rtnl.IFLA_IFNAME] == b"pc0123456789ab\0"
    assert found[rtnl.IFLA_MASTER] == struct.pack("=I", 4)
    info = rtnl.attrs(found[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"veth"
    peer = rtnl.attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    # The peer is an ifinfomsg of its own (left down: IFF_UP there fails with ENOTCONN) + attributes.
    assert struct.unpack_from("=BxHiII", peer) == (0, 0, 0, 0, 0)
    peer_attrs = rtnl.attrs(peer, 16)
    assert peer_attrs == {rtnl.IFLA_IFNAME: b"eth0\0", rtnl.IFLA_NET_NS_FD: struct.pack("=I", 9),
                          rtnl.IFLA_ADDRESS: bytes([2, 0x42, 10, 88, 0, 2])}


def test_a_bridge_request_names_the_kind_and_fixes_the_mac() -> None:
    sock = FakeSocket(ack())
    Rtnl(sock).add_bridge("pycontain0", "02:42:0a:58:00:01")
    kind, _, header, found = decode(sock.sent[0])
    assert kind == rtnl.RTM_NEWLINK
    assert struct.unpack("=BxHiII", header)[3:] == (rtnl.IFF_UP, rtnl.IFF_UP)
    assert found[rtnl.IFLA_ADDRESS] == bytes([2, 0x42, 10, 88, 0, 1])
    assert rtnl.attrs(found[rtnl.IFLA_LINKINFO]) == {rtnl.IFLA_INFO_KIND: b"bridge"}


def test_an_address_request_carries_local_address_and_broadcast() -> None:
    sock = FakeSocket(ack())
    Rtnl(sock).add_address(7, "10.88.0.2", 16)
    kind, flags, header, found = decode(sock.sent[0])
    assert kind == rtnl.RTM_NEWADDR and flags & rtnl.NLM_F_CREATE
    assert struct.unpack("=BBBBI", header) == (rtnl.AF_INET, 16, 0, 0, 7)
    assert found[rtnl.IFA_LOCAL] == found[rtnl.IFA_ADDRESS] == bytes([10, 88, 0, 2])
    assert found[rtnl.IFA_BROADCAST] == bytes([10, 88, 255, 255])


def test_a_default_route_has_no_destination_and_a_gateway_in_the_main_table() -> None:
    sock = FakeSocket(ack())
    Rtnl(sock).add_default_route("10.88.0.1")
    kind, _, header, found = decode(sock.sent[0])
    assert kind == rtnl.RTM_NEWROUTE
    family, dst_len, _, _, table, proto, scope, rtype, _ = struct.unpack("=BBBBBBBBI", header)
    assert (family, dst_len, table, proto, scope, rtype) == (rtnl.AF_INET, 0, rtnl.RT_TABLE_MAIN,
                                                             rtnl.RTPROT_BOOT, 0, rtnl.RTN_UNICAST)
    assert found == {rtnl.RTA_GATEWAY: bytes([10, 88, 0, 1])}


def test_hairpin_is_a_bridge_family_setlink_with_brport_mode_in_protinfo() -> None:
    sock = FakeSocket(ack())
    Rtnl(sock).set_hairpin(12)
    kind, _, header, found = decode(sock.sent[0])
    assert kind == rtnl.RTM_SETLINK
    assert struct.unpack("=BxHiII", header) == (rtnl.AF_BRIDGE, 0, 12, 0, 0)
    assert rtnl.attrs(found[rtnl.IFLA_PROTINFO]) == {rtnl.IFLA_BRPORT_MODE: b"\x01"}


def test_set_link_changes_only_what_it_is_given() -> None:
    sock = FakeSocket(ack(), ack())
    r = Rtnl(sock)
    r.set_link(3, master=5)
    r.set_link(3, up=False, address="02:00:00:00:00:01")
    _, _, header, found = decode(sock.sent[0])
    assert struct.unpack("=BxHiII", header)[2:] == (3, 0, 0) and found == {rtnl.IFLA_MASTER: rtnl.u32(5)}
    _, _, header, found = decode(sock.sent[1])
    assert struct.unpack("=BxHiII", header)[2:] == (3, 0, rtnl.IFF_UP)  # IFF_UP in the mask, cleared
    assert found == {rtnl.IFLA_ADDRESS: bytes([2, 0, 0, 0, 0, 1])}


def test_each_request_gets_a_new_sequence_number() -> None:
    sock = FakeSocket(ack(), ack())
    r = Rtnl(sock)
    r.delete_link(3)
    r.delete_link(4)
    assert [struct.unpack_from("=I", d, 8)[0] for d in sock.sent] == [1, 2]


# ---------------------------------------------------------------- answers

def test_a_link_lookup_reads_the_index_from_the_answer() -> None:
    link = reply(rtnl.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 42, 0, 0) + rtnl.attr(rtnl.IFLA_IFNAME, b"br0\0"))
    sock = FakeSocket(several(link, ack()))
    assert Rtnl(sock).link_index("br0") == 42
    _, _, _, found = decode(sock.sent[0])
    assert found == {rtnl.IFLA_IFNAME: b"br0\0"}


def test_a_missing_link_is_none_not_an_error() -> None:
    assert Rtnl(FakeSocket(ack(-errno.ENODEV))).link_index("nope") is None


def test_a_kernel_error_raises_oserror_naming_the_request_and_the_kernels_reason() -> None:
    why = rtnl.attr(rtnl.NLMSGERR_ATTR_MSG, b"ipv4: Address already assigned\0")
    sock = FakeSocket(ack(-errno.EEXIST, rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS, why))
    with pytest.raises(OSError) as info:
        Rtnl(sock).add_address(2, "10.88.0.1", 16)
    assert info.value.errno == errno.EEXIST
    assert "RTM_NEWADDR 10.88.0.1/16" in str(info.value) and "Address already assigned" in str(info.value)


def test_an_uncapped_error_skips_the_echoed_request_to_find_the_reason() -> None:
    echoed = struct.pack("=IHHII", 24, rtnl.RTM_NEWLINK, 5, 1, 0) + bytes(8)
    why = rtnl.attr(rtnl.NLMSGERR_ATTR_MSG, b"Unknown device type\0")
    answer = reply(rtnl.NLMSG_ERROR, struct.pack("=i", -errno.EOPNOTSUPP) + echoed + why, rtnl.NLM_F_ACK_TLVS)
    with pytest.raises(OSError, match="Unknown device type") as info:
        Rtnl(FakeSocket(answer)).add_bridge("br0")
    assert info.value.errno == errno.EOPNOTSUPP


def test_answers_to_other_sequence_numbers_are_skipped() -> None:
    def stale(seq: int) -> bytes:
        return reply(rtnl.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16))(seq + 100)

    Rtnl(FakeSocket(several(stale, ack()))).delete_link(3)  # the stale error is not ours: no raise


def test_a_route_dump_reads_every_message_until_done_across_datagrams() -> None:
    def route(dst: str, plen: int, table: int, big_table: int | None = None) -> Answer:
        body = struct.pack("=BBBBBBBBI", rtnl.AF_INET, plen, 0, 0, table, 3, 0, 1, 0)
        if plen:
            body += rtnl.attr(rtnl.RTA_DST, rtnl.ipv4(dst))
        if big_table is not None:
            body += rtnl.attr(rtnl.RTA_TABLE, rtnl.u32(big_table))
        return reply(rtnl.RTM_NEWROUTE, body, NLM_F_MULTI)

    done = reply(rtnl.NLMSG_DONE, struct.pack("=i", 0))
    sock = FakeSocket(several(route("", 0, 254), route("10.88.0.0", 16, 254)),
                      several(route("10.5.0.0", 24, 252, 1000), done))
    routes = Rtnl(sock).ipv4_routes()
    assert routes == [("0.0.0.0", 0, 254), ("10.88.0.0", 16, 254), ("10.5.0.0", 24, 1000)]
    kind, flags, _, _ = decode(sock.sent[0])
    assert kind == rtnl.RTM_GETROUTE and flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP  # no ACK on a dump


def test_a_malformed_answer_raises_instead_of_looping() -> None:
    with pytest.raises(OSError):
        Rtnl(FakeSocket(lambda seq: struct.pack("=IHHII", 8, rtnl.NLMSG_ERROR, 0, seq, 0))).delete_link(1)


def test_a_real_socket_finds_loopback_without_privileges() -> None:
    with Rtnl() as r:
        assert r.link_index("lo") == 1
        assert r.link_index("no-such-link0") is None


def test_the_subnet_overlap_check_ignores_default_routes_and_the_local_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from pycontain.network import ipam

    dump = [("0.0.0.0", 0, 254), ("10.88.0.0", 16, 254), ("10.5.0.0", 24, 1000), ("127.0.0.0", 8, 255)]
    monkeypatch.setattr(Rtnl, "ipv4_routes", lambda self: dump)
    assert ipam.host_routes() == [(ipam.ip_to_int("10.88.0.0"), 16), (ipam.ip_to_int("10.5.0.0"), 24)]
