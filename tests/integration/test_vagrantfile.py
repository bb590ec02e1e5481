"""The reference VM's Vagrantfile: Debian's vagrant loads and validates it, offline.

No box can boot here (no VirtualBox or libvirt), so this is the strongest check available:
`vagrant validate --ignore-provider` evaluates the Ruby and checks every core setting (box, synced
folders, provisioners); only the provider blocks are skipped, because without a usable provider
`vagrant validate` refuses to run at all. Vagrant's home and dotfile directories go to tmp_path, so the
test leaves nothing in the checkout or in root's home.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support import COMMAND_TIMEOUT, describe

REPO = Path(__file__).resolve().parents[2]
VAGRANTFILE = REPO / "Vagrantfile"


def vagrant_validate(directory: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    vagrant = shutil.which("vagrant")
    # Not a skip: CI must run this. scripts/install --test-deps installs Debian's vagrant package.
    assert vagrant, "vagrant is not installed: run `sudo scripts/install --test-deps`"
    env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check over the network
           "VAGRANT_HOME": str(scratch / "vagrant-home"), "VAGRANT_DOTFILE_PATH": str(scratch / "dot-vagrant")}
    return subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=directory, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def test_vagrant_validates_the_vagrantfile(tmp_path: Path) -> None:
    res = vagrant_validate(REPO, tmp_path)
    assert res.returncode == 0, describe(res)
    assert "validated successfully" in res.stdout, describe(res)


def test_vagrant_validate_rejects_an_unknown_setting(tmp_path: Path) -> None:
    # Proves the check above can fail: the same file with one misspelt setting is refused.
    broken = tmp_path / "broken"
    broken.mkdir()
    text = VAGRANTFILE.read_text()
    anchor = 'Vagrant.configure("2") do |config|\n'
    assert anchor in text
    (broken / "Vagrantfile").write_text(text.replace(anchor, anchor + '  config.vm.hostnme = "typo"\n'))
    res = vagrant_validate(broken, tmp_path)
    assert res.returncode != 0, describe(res)
    assert "hostnme" in res.stdout + res.stderr, describe(res)


def test_the_vm_is_debian_12_provisioned_with_the_readmes_commands() -> None:
    text = VAGRANTFILE.read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    readme = (REPO / "README.md").read_text()
    for command in ("sudo scripts/install", "sudo scripts/test"):
        assert command in readme, f"the README no longer says `{command}`"
        assert command in text, f"the Vagrantfile's provisioning does not run `{command}`"


def test_provisioning_checks_the_host_and_proves_isolation_before_the_suite() -> None:
    # doctor and verify fail fast, with the fix named, on a box that cannot run containers; the suite
    # would fail test after test instead.
    lines = [line.strip() for line in VAGRANTFILE.read_text().splitlines()]
    order = [next((i for i, line in enumerate(lines) if line.startswith(command)), -1)
             for command in ("sudo scripts/install", "sudo pycontain doctor", "sudo pycontain verify",
                             "sudo PYCONTAIN_SKIP_VM=1 scripts/test")]
    assert -1 not in order and order == sorted(order), order
    assert "set -eu" in lines  # a failing check stops the provisioning
