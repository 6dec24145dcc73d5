"""The VM's user data, run for real on this machine as cloud-init would run it: as root, with
`sh`. Nothing of the machine changes: `vm_dir` is a temporary directory, the pilot's user
is the existing `nobody` (no useradd), the metadata firewall is off (no iptables rule), and a
`poweroff` of the test's own comes first on PATH and only leaves a mark. The bundle comes
over HTTPS from a local server (trusted with CURL_CA_BUNDLE, as an image would trust its
site's CA), and the real pilot registers with a real central.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sitedirectors.bundle import PilotBundle
from sitedirectors.cloud_init import EXIT_NO_BUNDLE, VmPilot, render_user_data
from sitedirectors.config import PilotSection, QueueSection
from sitedirectors.start_script import EXIT_BAD_BUNDLE
from sitedirectors.submission import pilot_arguments
from tests.sitedirectors.helpers import list_pilots
from tests.support.bundle import NODE_PYTHON, require_node_python
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle, running_central
from tests.support.cloud import POWEROFF_SCRIPT, serving_https
from tests.support.processes import kill_everything_under

RUN_TIMEOUT = 120.0
PILOT_USER = "nobody"
JWT_PREFIX = "eyJ"


@pytest.fixture
def vm_root() -> Iterator[Path]:
    """The 'VM's disk': under /tmp, traversable by the pilot's user (pytest's are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="gridpilot-vm-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    kill_everything_under(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralHandle]:
    with running_central(tmp_path / "central") as handle:
        yield handle


@pytest.fixture
def bundle_site(tmp_path: Path, pilot_bundle: PilotBundle) -> Path:
    """A web server's directory with the bundle under its checksum name."""
    site = tmp_path / "www"
    site.mkdir()
    shutil.copyfile(pilot_bundle.path, site / pilot_bundle.file_name)
    return site


def boot(user_data: str, root: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run the user data as cloud-init does (root, sh); (the run, whether it powered off)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "poweroff").write_text(POWEROFF_SCRIPT)
    (bin_dir / "poweroff").chmod(0o755)
    script = root / "user-data"
    script.write_text(user_data)
    environment = {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GRIDPILOT_TEST_VM_DIR": str(root),
    }
    done = subprocess.run(
        ["/bin/sh", str(script)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return done, (root / "powered-off").exists()


def vm_pilot(
    central: CentralHandle, base: str, bundle: PilotBundle, pilot_id: str = "p-vm-1"
) -> VmPilot:
    queue = QueueSection(
        name=QUEUE,
        site=SITE,
        ce=CE,
        pilot=PilotSection(idle_timeout=2.0, extra_args=["--min-disk-mb", "1"]),
    )
    assert central.ca_path is not None
    return VmPilot(
        pilot_id=pilot_id,
        arguments=pilot_arguments(queue, central.target, pilot_id),
        environment={"GRIDPILOT_PYTHON": str(NODE_PYTHON)},
        token=central.registration_token(),
        ca_pem=central.ca_path.read_text(),
        bundle_url=f"{base}/{bundle.file_name}",
        bundle_sha256=bundle.sha256,
        bundle_file_name=bundle.file_name,
        pilot_user=PILOT_USER,
        block_metadata=False,
    )


def test_user_data_starts_the_real_pilot_which_registers(
    central: CentralHandle, vm_root: Path, bundle_site: Path, pilot_bundle: PilotBundle
) -> None:
    require_node_python()
    assert central.pki is not None
    with serving_https(bundle_site, central.pki) as base:
        vm = replace(vm_pilot(central, base, pilot_bundle), vm_dir=str(vm_root / "var/lib/gp"))
        done, powered_off = boot(render_user_data(vm), vm_root, CURL_CA_BUNDLE=str(central.ca_path))
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert powered_off
    assert f"gridpilot-vm: pilot {vm.pilot_id} exited with status 0; powering off" in console
    [record] = list_pilots(central)
    assert record.pilot_id == vm.pilot_id
    assert record.registered_unix > 0, record
    # The pilot ran as its own user, from the verified bundle, and used up its token.
    pilot_dir = Path(vm.pilot_dir)
    nobody = pwd.getpwnam(PILOT_USER).pw_uid
    assert (pilot_dir / "work").stat().st_uid == nobody
    assert not (pilot_dir / "registration.token").exists()
    assert (vm_root / "var/lib/gp/bundle-cache" / pilot_bundle.sha256 / "bin").is_dir()
    assert "pilot.registered" in (pilot_dir / "pilot.log").read_text()
    # The console (the provider's console output) has the log's tail, never the token.
    assert "gridpilot-pilot: " in console
    assert JWT_PREFIX not in console


def test_bundle_with_a_wrong_checksum_is_refused(
    central: CentralHandle, vm_root: Path, bundle_site: Path, pilot_bundle: PilotBundle
) -> None:
    assert central.pki is not None
    with serving_https(bundle_site, central.pki) as base:
        vm = replace(
            vm_pilot(central, base, pilot_bundle),
            vm_dir=str(vm_root / "gp"),
            bundle_sha256="0" * 64,
        )
        done, powered_off = boot(render_user_data(vm), vm_root, CURL_CA_BUNDLE=str(central.ca_path))
    console = done.stdout + done.stderr
    assert done.returncode == EXIT_BAD_BUNDLE, console
    assert powered_off
    assert "pilot bundle refused" in console
    assert "checksum mismatch" in console
    assert f"expected {'0' * 64}" in console
    # Nothing ran: no pilot reached central, nothing was unpacked, the bad copy is gone.
    assert list_pilots(central) == []
    assert not (Path(vm.pilot_dir) / "work").exists()
    assert not any((vm_root / "gp" / "bundle-cache").iterdir())
    assert not (vm_root / "gp" / "bundles" / pilot_bundle.file_name).exists()


def test_unreachable_bundle_url_powers_off(vm_root: Path) -> None:
    vm = VmPilot(
        pilot_id="p-no-bundle",
        bundle_url="https://127.0.0.1:9/bundle.tar.gz",
        bundle_sha256="a" * 64,
        bundle_file_name="b.tar.gz",
        vm_dir=str(vm_root / "gp"),
        pilot_user=PILOT_USER,
        block_metadata=False,
    )
    done, powered_off = boot(render_user_data(vm).replace("--retry 5", "--retry 0"), vm_root)
    assert done.returncode == EXIT_NO_BUNDLE, done.stdout + done.stderr
    assert powered_off
    assert "cannot fetch the bundle from https://127.0.0.1:9/bundle.tar.gz" in done.stdout


def test_nothing_in_a_pilot_option_reaches_the_shell(vm_root: Path) -> None:
    """Hostile values in arguments, environment and token stay data (and the own-command
    path, used by tests and sites with a pilot on the image, needs no bundle)."""
    probe = "import os, sys; print('ARGS', sys.argv[1:]); print('ENV', os.environ['EVIL'])"
    evil = f"$(touch {vm_root}/pwned1); `touch {vm_root}/pwned2`"
    vm = VmPilot(
        pilot_id="p-quoting",
        command=(str(NODE_PYTHON), "-c", probe),
        arguments=(f"'; touch {vm_root}/pwned3 #", evil),
        environment={"EVIL": evil},
        token=f"tok'\nEOF\n$(touch {vm_root}/pwned4)",
        ca_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        vm_dir=str(vm_root / "gp"),
        pilot_user=PILOT_USER,
        block_metadata=False,
    )
    done, powered_off = boot(render_user_data(vm), vm_root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert powered_off
    assert not list(vm_root.glob("pwned*"))
    log = (Path(vm.pilot_dir) / "pilot.log").read_text()
    assert f"ENV {evil}" in log
    assert "--token-file" in log
    token_file = Path(vm.pilot_dir) / "registration.token"
    assert token_file.read_text() == vm.token + "\n"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.stat().st_uid == pwd.getpwnam(PILOT_USER).pw_uid


def test_metadata_firewall_is_in_the_script_when_asked() -> None:
    vm = VmPilot(pilot_id="p1", command=("true",))
    assert "169.254.169.254" in render_user_data(vm)
    assert "169.254.169.254" not in render_user_data(replace(vm, block_metadata=False))


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        (VmPilot(pilot_id="p1"), "no command, and no bundle_url"),
        (VmPilot(pilot_id="../p1", command=("true",)), "unsafe pilot id"),
        (VmPilot(pilot_id="p1", command=("true",), pilot_user="x;rm"), "unsafe pilot user"),
    ],
)
def test_nothing_to_run_or_unsafe_names_are_refused(vm: VmPilot, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_user_data(vm)
