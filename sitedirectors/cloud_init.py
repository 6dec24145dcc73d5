"""The user data of a pilot's VM: a shell script cloud-init runs once, as root, at first boot.

cloud-init runs user data that starts with `#!` as a script (any image with cloud-init:
Debian, Ubuntu, EL, the EC2 and OpenStack images); no cloud-config is needed. The script:

1. creates the pilot's user (`pilot_user`, unless it exists or the script already runs as
   it) and the directories under `vm_dir` (`pilots/<id>/` owned by that user);
2. writes the registration token (0600, the pilot's user), the CA certificate and the start
   script (sitedirectors/start_script.py, the same text the SLURM and SSH backends ship);
3. fetches the pilot bundle from `bundle_url` (curl, else wget) -- unless the pilot runs its
   own command -- and lets the start script check its SHA-256 against the director's: on a
   mismatch the start script refuses before anything runs (exit 78), the bad file is removed;
4. optionally blocks the pilot's user from the instance metadata service (169.254.169.254),
   which serves this very user data: see sitedirectors/cloud.py on the token's exposure;
5. runs the start script as the pilot's user with its log in `pilots/<id>/pilot.log`, prints
   the log's tail to the console (the provider's console output, `fetch_output`), and
   powers the VM off whatever the outcome: a VM never lingers with no pilot.

Everything is rendered on the director: values are quoted with `shlex.quote`, and file
contents are written through quoted here-documents (no expansion), so nothing in a token,
certificate or pilot option reaches the shell as code. Tests run the script as it is, with
`vm_dir` in a temporary directory and a `poweroff` of their own first on PATH.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from sitedirectors.start_script import (
    EXIT_BAD_BUNDLE,
    BundleOnNode,
    StartScript,
    render_start_script,
)

TOKEN_FILE = "registration.token"
CA_FILE = "ca.pem"
START_SCRIPT = "start.sh"
LOG_FILE = "pilot.log"
# The instance metadata service of EC2 and OpenStack alike.
METADATA_ADDRESS = "169.254.169.254"
# Lines of the pilot's log printed to the console when it exits.
CONSOLE_TAIL_LINES = 200
# sysexits' EX_UNAVAILABLE: the bundle could not be fetched.
EXIT_NO_BUNDLE = 69
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_SAFE_USER = re.compile(r"^[a-z_][a-z0-9_-]*$")


@dataclass(frozen=True)
class VmPilot:
    """One pilot's VM as its user data sets it up."""

    pilot_id: str
    arguments: tuple[str, ...] = ()
    # Empty: the pilot bundle's launcher, fetched from bundle_url.
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    token: str = field(default="", repr=False)
    ca_pem: str = ""
    bundle_url: str = ""
    bundle_sha256: str = ""
    bundle_file_name: str = ""
    vm_dir: str = "/var/lib/gridpilot"
    pilot_user: str = "gridpilot"
    block_metadata: bool = True
    fetch_timeout: int = 600

    @property
    def pilot_dir(self) -> str:
        return f"{self.vm_dir.rstrip('/')}/pilots/{self.pilot_id}"


def _q(value: str) -> str:
    return shlex.quote(value)


def _heredoc(path: str, content: str) -> str:
    """`cat > path` of `content`, verbatim, through a quoted here-document."""
    marker = "GRIDPILOT_EOF_" + hashlib.sha256(content.encode()).hexdigest()[:16]
    if marker in content:
        raise ValueError("here-document marker collides with the content")
    body = content if content.endswith("\n") else content + "\n"
    return f"cat > {_q(path)} <<'{marker}' || off {_q(f'cannot write {path}')} 1\n{body}{marker}\n"


def _start_script(vm: VmPilot) -> str:
    pilot_dir = vm.pilot_dir
    bundle = None
    if not vm.command:
        bundle = BundleOnNode(
            path=f"{vm.vm_dir.rstrip('/')}/bundles/{vm.bundle_file_name}",
            sha256=vm.bundle_sha256,
            cache_dir=f"{vm.vm_dir.rstrip('/')}/bundle-cache",
        )
    spec = StartScript(
        pilot_id=vm.pilot_id,
        work_dir=f"{pilot_dir}/work",
        command=vm.command,
        arguments=vm.arguments,
        environment=vm.environment,
        token_file=f"{pilot_dir}/{TOKEN_FILE}" if vm.token else "",
        ca_file=f"{pilot_dir}/{CA_FILE}" if vm.ca_pem else "",
        bundle=bundle,
    )
    return render_start_script(spec)


def _check(vm: VmPilot) -> None:
    if not _SAFE_ID.match(vm.pilot_id):
        raise ValueError(f"unsafe pilot id {vm.pilot_id!r}")
    if not _SAFE_USER.match(vm.pilot_user):
        raise ValueError(f"unsafe pilot user {vm.pilot_user!r}")
    if not vm.command and not (vm.bundle_url and vm.bundle_sha256 and vm.bundle_file_name):
        raise ValueError(
            f"pilot {vm.pilot_id}: no command, and no bundle_url with a pilot bundle to fetch"
        )


def _fetch_section(vm: VmPilot) -> str:
    url, bundle = _q(vm.bundle_url), f'"$base"/bundles/{_q(vm.bundle_file_name)}'
    t = vm.fetch_timeout
    return f"""\
bundle={bundle}
# A name of this pilot's own: VMs sharing vm_dir (a shared disk) never mix their downloads.
part="$bundle.{vm.pilot_id}.part"
if [ ! -s "$bundle" ]; then
    say "fetching the pilot bundle from "{url}
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --retry 5 --retry-delay 5 --connect-timeout 30 --max-time {t} \\
            -o "$part" {url}
    else
        wget -q -T 30 -t 5 -O "$part" {url}
    fi || {{ rm -f "$part"; off "cannot fetch the bundle from "{url} {EXIT_NO_BUNDLE}; }}
    mv -f "$part" "$bundle" || off "cannot store the pilot bundle" 1
fi
chmod 0644 "$bundle"
"""


def _run_section(vm: VmPilot) -> str:
    block = ""
    if vm.block_metadata:
        block = f"""\
    if command -v iptables >/dev/null 2>&1; then
        iptables -w -I OUTPUT -d {METADATA_ADDRESS} -m owner --uid-owner "$(id -u "$user")" \\
            -j REJECT || say "warning: cannot block the metadata service for $user"
    else
        say "warning: no iptables; the metadata service stays reachable for $user"
    fi
"""
    return f"""\
if [ -n "$run_as" ]; then
    chown -R "$user" "$pilot_dir" "$base/bundle-cache" || off "cannot hand $pilot_dir to $user" 1
{block}    if command -v runuser >/dev/null 2>&1; then
        runuser -u "$user" -- /bin/sh "$pilot_dir/{START_SCRIPT}" > "$pilot_dir/{LOG_FILE}" 2>&1
    else
        su -s /bin/sh -c '/bin/sh "$0"' "$user" "$pilot_dir/{START_SCRIPT}" \\
            > "$pilot_dir/{LOG_FILE}" 2>&1
    fi
else
    /bin/sh "$pilot_dir/{START_SCRIPT}" > "$pilot_dir/{LOG_FILE}" 2>&1
fi
status=$?
tail -n {CONSOLE_TAIL_LINES} "$pilot_dir/{LOG_FILE}" | sed 's/^/gridpilot-pilot: /'
if [ "$status" -eq {EXIT_BAD_BUNDLE} ]; then
    [ -n "${{bundle:-}}" ] && rm -f "$bundle"
    off "pilot bundle refused (checksum or manifest mismatch): no pilot started" "$status"
fi
off "pilot {vm.pilot_id} exited with status $status" "$status"
"""


def render_user_data(vm: VmPilot) -> str:
    """The user data's text. Raises ValueError when there is nothing to run."""
    _check(vm)
    parts = [
        f"""\
#!/bin/sh
# gridpilot: pilot {vm.pilot_id} on a VM (cloud-init user data generated by the site director).
# Runs once, as root, at first boot; what it prints goes to the VM's console.
set -u
umask 077
say() {{ echo "gridpilot-vm: $*"; }}
off() {{
    say "$1; powering off"
    sync
    poweroff
    exit "$2"
}}
base={_q(vm.vm_dir.rstrip("/") or "/")}
user={_q(vm.pilot_user)}
pilot_dir={_q(vm.pilot_dir)}
# The shared directories (and any missing parents) readable by all, the pilot's its own.
(umask 022 && mkdir -p "$base/pilots" "$base/bundles") || off "cannot create $base" 1
chmod 0755 "$base" "$base/pilots" "$base/bundles"
mkdir -p "$pilot_dir" "$base/bundle-cache" || off "cannot create $pilot_dir" 1
run_as=""
if [ "$(id -un)" != "$user" ]; then
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --system --create-home --shell /bin/sh "$user" || off "cannot create user $user" 1
    fi
    run_as="$user"
fi
""",
    ]
    if vm.token:
        parts.append(_heredoc(f"{vm.pilot_dir}/{TOKEN_FILE}", vm.token))
        parts.append(f'chmod 0600 "$pilot_dir/{TOKEN_FILE}"\n')
    if vm.ca_pem:
        parts.append(_heredoc(f"{vm.pilot_dir}/{CA_FILE}", vm.ca_pem))
        parts.append(f'chmod 0644 "$pilot_dir/{CA_FILE}"\n')
    parts.append(_heredoc(f"{vm.pilot_dir}/{START_SCRIPT}", _start_script(vm)))
    parts.append(f'chmod 0700 "$pilot_dir/{START_SCRIPT}"\n')
    if not vm.command:
        parts.append(_fetch_section(vm))
    parts.append(_run_section(vm))
    return "".join(parts)
