"""What a backend for remote worker nodes puts where its pilots run, over `RemoteFiles`
(sitedirectors/remote.py: the local file system, or SFTP).

- The pilot bundle, once per checksum: its file name holds the checksum, so a copy of the
  same name and size is the same bundle; another size is a partial copy and is replaced.
- Each pilot's own directory (created 0700 by the backend): the registration token in a 0600
  file (never in argv, the environment or a batch system's copy of a script), a copy of
  central's CA, and the start script (sitedirectors/start_script.py) that runs the pilot with
  its log in `pilot.log`.
"""

from __future__ import annotations

from dataclasses import replace

from gridpilot.logs import get_logger
from sitedirectors.base import PilotLaunch
from sitedirectors.bundle import PilotBundle
from sitedirectors.remote import CommandError, RemoteFiles
from sitedirectors.start_script import BundleOnNode, StartScript, render_start_script

log = get_logger(__name__)

START_SCRIPT = "start.sh"
LOG_FILE = "pilot.log"
TOKEN_FILE = "registration.token"
CA_FILE = "ca.pem"


def stage_bundle(
    files: RemoteFiles, bundle: PilotBundle, bundle_dir: str, cache_dir: str
) -> BundleOnNode:
    """Copy the bundle into `bundle_dir` unless it is there already; where the start script
    finds it. Raises OSError/CommandError."""
    staged = f"{bundle_dir.rstrip('/')}/{bundle.file_name}"
    size = bundle.path.stat().st_size
    if files.size(staged) != size:
        files.make_dirs(bundle_dir, 0o755)
        files.put_file(bundle.path, staged, 0o644)
        log.info("bundle.staged", path=staged, sha256=bundle.sha256, bytes=size)
    return BundleOnNode(staged, bundle.sha256, cache_dir)


def write_pilot_files(
    files: RemoteFiles, launch: PilotLaunch, pilot_dir: str, bundle: BundleOnNode | None
) -> None:
    """The pilot's token (0600), CA copy and start script in its (existing) directory; the
    pilot runs from `bundle` unless the launch names its own command. Raises ValueError when
    there is nothing to run, OSError/CommandError when writing fails."""
    spec = StartScript(
        pilot_id=launch.pilot_id,
        work_dir=f"{pilot_dir}/work",
        command=launch.command,
        arguments=launch.arguments,
        environment=launch.environment,
        bundle=None if launch.command else bundle,
    )
    if launch.registration_token:
        token_file = f"{pilot_dir}/{TOKEN_FILE}"
        files.write_file(token_file, launch.registration_token.encode() + b"\n", 0o600)
        spec = replace(spec, token_file=token_file)
    if launch.ca is not None:
        files.put_file(launch.ca, f"{pilot_dir}/{CA_FILE}", 0o644)
        spec = replace(spec, ca_file=f"{pilot_dir}/{CA_FILE}")
    files.write_file(f"{pilot_dir}/{START_SCRIPT}", render_start_script(spec).encode(), 0o700)


def remove_quietly(files: RemoteFiles, path: str) -> None:
    """Remove a directory tree, best effort: a failure is logged, not raised (the sweep of old
    directories gets what is left)."""
    try:
        files.remove_tree(path)
    except (OSError, CommandError) as exc:
        log.warning("pilot.dir_not_removed", path=path, error=str(exc))
