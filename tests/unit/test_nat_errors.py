"""nat.py tells "our table does not exist" (nothing to clean) from "nft cannot be asked" (an error).

Each test points nat.NFT at a small fake `nft` script, so nothing here touches a real nft table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycontain.network import nat

CID = "ab" * 32
META = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}


def fake_nft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, list_table: str, list_tables: str) -> None:
    """An `nft` that answers `list table ...` and `list tables ...` with the given shell snippets."""
    script = tmp_path / "nft"
    script.write_text(f"""#!/bin/sh
case "$*" in
  *"list table "*) {list_table} ;;
  *"list tables"*) {list_tables} ;;
  *) echo "unexpected: $*" >&2; exit 99 ;;
esac
""")
    script.chmod(0o755)
    monkeypatch.setattr(nat, "NFT", str(script))


def printing(doc: object) -> str:
    return f"echo '{json.dumps(doc)}'"


NO_SUCH_TABLE = "echo 'Error: No such file or directory' >&2; exit 1"
NOT_PERMITTED = "echo 'Error: Operation not permitted' >&2; exit 1"


def test_a_missing_nft_binary_is_an_error_not_an_empty_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nat, "NFT", str(tmp_path / "no-such-nft"))
    with pytest.raises(nat.NftError, match="nft is not installed"):
        nat.rules_by_container()


def test_a_missing_table_means_no_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nft(tmp_path, monkeypatch, NO_SUCH_TABLE, printing({"nftables": [META]}))
    assert nat.rules_by_container() == {}


def test_nft_refused_twice_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nft(tmp_path, monkeypatch, NOT_PERMITTED, NOT_PERMITTED)
    with pytest.raises(nat.NftError, match="Operation not permitted"):
        nat.rules_by_container()


def test_a_table_that_exists_but_cannot_be_listed_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = {"nftables": [META, {"table": {"family": "ip", "name": "pycontain", "handle": 1}}]}
    fake_nft(tmp_path, monkeypatch, NOT_PERMITTED, printing(tables))
    with pytest.raises(nat.NftError, match="cannot list nft table ip pycontain: .*Operation not permitted"):
        nat.rules_by_container()


def test_output_that_is_not_nft_json_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nft(tmp_path, monkeypatch, "echo 'table ip pycontain {'", printing({"nftables": [META]}))
    with pytest.raises(nat.NftError, match="not nft's JSON"):
        nat.rules_by_container()


def test_rules_named_by_a_container_id_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = {"nftables": [META, {"table": {"family": "ip", "name": "pycontain"}},
                          {"rule": {"chain": "output", "handle": 7, "comment": CID}},
                          {"rule": {"chain": "pycontain-fwd", "handle": 9, "comment": "network pycontain"}}]}
    fake_nft(tmp_path, monkeypatch, printing(rules), NOT_PERMITTED)
    assert nat.rules_by_container() == {CID: [("output", 7)]}


def test_removing_a_network_whose_chains_cannot_be_listed_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nat, "NFT", str(tmp_path / "no-such-nft"))
    with pytest.raises(nat.NftError):
        nat.remove_network({"name": "n1"})
