"""The `htcondorce` backend: pilots as jobs of an HTCondor-CE, submitted remotely to its schedd
with the HTCondor Python bindings (PyPI `htcondor`: `htcondor2`, `classad2`).

Native job states map onto pilot states by `NATIVE_STATES` (the table at the top of
sitedirectors/htcondorce_parse.py, with the parsers and the submit description).

Submission is CE-style remote submission: one transaction per `batch_size` pilots
(`schedd.submit(description, spool=True, itemdata=...)`, one item per pilot), then
`schedd.spool(...)` uploads each pilot's input files to the CE, and HTCondor's file transfer
puts them in the job's scratch directory on the worker node: the start script (the job's
executable), central's CA, the registration token (0600) and the pilot bundle. The token is
never in the submit description, the job's environment or its arguments. Only the pilot's
log (`pilot.log`, stdout and stderr) comes back. References are "<schedd>#<cluster>.<proc>".

Status is one query of the schedd for all pilots still open, then its history for those
gone from the queue (no further back than `history_lookback` seconds). A held pilot is
removed (HTCondor's RemoveReason keeps the hold reason) and reported Failed; a completed
one's log is retrieved (`schedd.retrieve`) at once and the job released from the CE's queue
(`LeaveJobInQueue = false`); ended pilots' states are kept in a local record, so the CE is
asked about each pilot only until it ends. A job that neither the queue nor the history
knows has vanished: Aborted, once `vanish_grace` seconds have passed since its submission.
Cancel is one `JobAction.Remove` by constraint.

Security: the bindings keep their configuration and their security sessions per process, so
every operation runs in a short-lived child process (`python -m sitedirectors.htcondorce_child`,
the request on stdin) whose whole HTCondor configuration is this queue's own file
(`CONDOR_CONFIG`): authentication methods `auth_methods`, `SEC_TOKEN_DIRECTORY` a private
0700 directory holding a 0600 copy of `token_file` (re-copied when the file changes;
HTCondor refuses tokens others can read), `SCITOKENS_FILE` the same copy, no pool password.
The director's own process never loads the bindings: one queue's token or session can never
be used for another queue, and a CE that hangs is cut off after `timeout` seconds.

Backend options ([queues.backend_options]):

    collector = "ce01.kek.jp:9619"  # the CE's collector, host[:port] (port 9619 by default)
    schedd = "ce01.kek.jp"          # the CE's schedd; default: the collector's host
    token_file = "/etc/gridpilot/ce01.token"  # IDTOKEN or SciToken for the CE (required)
    auth_methods = "IDTOKENS,SCITOKENS"
    universe = "vanilla"            # the CE routes the jobs to its batch system itself
    max_wall = 0                    # minutes (+maxWallTime, allowed_execute_duration); 0: none
    batch_size = 100                # pilots per submit transaction
    extra_submit = {}               # more submit commands, e.g. {"+ProjectName" = "\"belle\""}
    timeout = 60.0                  # seconds for one operation with the CE
    vanish_grace = 120.0            # seconds a new job may stay invisible before "vanished"
    history_lookback = 86400.0      # seconds of the CE's history searched for ended jobs
    work_dir = ""                   # local files; default <director work_dir>/htcondorce
    bundle_url = ""                 # worker nodes fetch the bundle here (HTTP(S), OSDF);
                                    # {file_name}, {sha256}: the director's bundle
    bundle_path = ""                # the bundle is already on the worker nodes here

By default the bundle is spooled with every pilot (simple, but one copy per pilot goes
through the CE); `bundle_url` lets the worker nodes download it with HTCondor's URL transfer
and `bundle_path` names a copy on a file system they share (CVMFS): the start script checks
its checksum either way. Local layout under `work_dir`:

    pilots/<pilot_id>/      0700: start.sh, ca.pem, registration.token (0600, removed once
                            spooled), pilot.log (retrieved from the CE)
    records/<reference>     {"pilot_id", "submitted", "cancelled", "final"}
    client/<queue>/         0700: condor_config, tokens/ (the token's 0600 copy)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import msgspec

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from gridpilot.logs import get_logger
from sitedirectors.base import (
    DEFAULT_LOG_CAP_BYTES,
    Backend,
    BackendConfigError,
    BackendContext,
    BackendError,
    BackendStatus,
    PilotLaunch,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.bundle import PilotBundle
from sitedirectors.htcondorce_parse import (
    CANCEL_REASON,
    NATIVE_STATES,
    HTCondorCEOptions,
    JobId,
    ads_by_job,
    client_config,
    convert_options,
    history_since,
    parse_reference,
    redact,
    submit_description,
    submit_item,
    to_status,
    vanished,
)
from sitedirectors.records import ReferenceRecords
from sitedirectors.remote import LocalFiles, tail_file
from sitedirectors.staging import CA_FILE, LOG_FILE, START_SCRIPT, TOKEN_FILE
from sitedirectors.start_script import BundleOnNode, StartScript, render_start_script

__all__ = [
    "NATIVE_STATES",
    "HTCondorCEBackend",
    "HTCondorCEOptions",
    "convert_options",
    "create_htcondorce_backend",
]

log = get_logger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# The unpacked bundle, inside the job's scratch directory (which HTCondor removes after).
_NODE_CACHE = "bundle-cache"
# The job starts with an almost empty environment (no PATH).
_PATH_DEFAULT = ': "${PATH:=/usr/local/bin:/usr/bin:/bin}"; export PATH\n'
_RECORD_MAX_BYTES = 8192
# Variables that would point the child's HTCondor client elsewhere than this queue's config.
_CONDOR_VARIABLES = ("CONDOR_CONFIG", "BEARER_TOKEN", "BEARER_TOKEN_FILE", "X509_USER_PROXY")

# (argv, stdin, environment, timeout) -> the finished child process.
ChildRunner = Callable[
    [Sequence[str], bytes, Mapping[str, str], float], "subprocess.CompletedProcess[bytes]"
]


class _Final(msgspec.Struct, frozen=True):
    state: str
    native: str
    exit_code: int | None = None
    reason: str = ""


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    pilot_id: str
    submitted: float
    cancelled: bool = False
    final: _Final | None = None


class CondorError(Exception):
    """An operation with the CE failed; `transient` when it may work next time."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def run_child(
    argv: Sequence[str], stdin: bytes, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, env=dict(env), timeout=timeout, check=False
    )


class HTCondorCEBackend(Backend):
    name = "htcondorce"

    def __init__(
        self,
        options: HTCondorCEOptions,
        queue: str,
        work_dir: Path,
        bundle: PilotBundle | None = None,
        *,
        clock: Callable[[], float] = time.time,
        runner: ChildRunner = run_child,
    ) -> None:
        self.options = options
        self.queue = queue
        self.work_dir = work_dir
        self.bundle = bundle
        self.files = LocalFiles()
        self._records = ReferenceRecords(
            self.files, str(work_dir / "records"), _Record, _RECORD_MAX_BYTES
        )
        self.client_dir = work_dir / "client" / queue
        self._clock = clock
        self._runner = runner
        self.ce = f"HTCondor-CE {options.schedd} (collector {options.collector})"

    # ---- paths and records ----

    def pilot_dir(self, pilot_id: str) -> Path:
        return self.work_dir / "pilots" / pilot_id

    # ---- the child process that talks to the CE ----

    def _client_config(self) -> Path:
        """This queue's HTCondor client configuration and token copy (see the docstring)."""
        tokens = self.client_dir / "tokens"
        empty = self.client_dir / "empty"
        for directory in (self.client_dir, tokens, empty):
            self.files.make_dirs(str(directory), 0o700)
            directory.chmod(0o700)
        try:
            token = Path(self.options.token_file).read_bytes()
        except OSError as exc:
            raise CondorError(
                f"cannot read token_file {self.options.token_file}: {exc.strerror or exc}",
                transient=False,
            ) from exc
        copy = tokens / "token"
        if not copy.exists() or copy.read_bytes() != token:
            self.files.write_file(str(copy), token, 0o600)
        config = self.client_dir / "condor_config"
        text = client_config(self.queue, self.options.auth_methods, str(tokens), str(empty))
        if not config.exists() or config.read_text() != text:
            self.files.write_file(str(config), text.encode(), 0o600)
        return config

    def _call(self, op: str, **payload: Any) -> dict[str, Any]:
        """Run one operation in a child process; its reply, or CondorError naming the CE."""
        try:
            config = self._client_config()
        except CondorError as exc:
            raise CondorError(f"{self.ce}: {exc}", transient=exc.transient) from exc
        except OSError as exc:
            raise CondorError(
                f"{self.ce}: cannot write {self.client_dir}: {exc}", transient=True
            ) from exc
        request = {"op": op, "collector": self.options.collector, "schedd": self.options.schedd}
        request.update(payload)
        env = {k: v for k, v in os.environ.items() if not _is_condor_variable(k)}
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["CONDOR_CONFIG"] = str(config)
        # -P: the director's working directory is not searched for modules.
        argv = [sys.executable, "-P", "-m", "sitedirectors.htcondorce_child"]
        timeout = self.options.timeout
        try:
            done = self._runner(argv, json.dumps(request).encode(), env, timeout)
        except subprocess.TimeoutExpired as exc:
            raise CondorError(f"{self.ce}: no answer within {timeout:g} s", transient=True) from exc
        except OSError as exc:
            raise CondorError(f"{self.ce}: cannot start {argv[0]}: {exc}", transient=True) from exc
        try:
            reply: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            said = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            message = f"{self.ce}: the HTCondor client exited with {done.returncode}: "
            raise CondorError(redact(message + " ".join(said)), transient=False) from None
        if not reply.get("ok"):
            error = redact(str(reply.get("error") or "unknown error"))
            raise CondorError(f"{self.ce}: {error}", transient=bool(reply.get("transient")))
        return reply

    # ---- submit ----

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        results: dict[str, SubmitResult] = {}
        items: list[tuple[PilotLaunch, dict[str, str]]] = []
        for launch in request.pilots:
            prepared = self._prepare(launch)
            if isinstance(prepared, SubmitResult):
                results[launch.pilot_id] = prepared
            else:
                items.append((launch, prepared))
        description = submit_description(self.options, request.queue, START_SCRIPT, LOG_FILE)
        size = self.options.batch_size
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            for result in self._submit_batch(description, batch):
                results[result.pilot_id] = result
        return [results[launch.pilot_id] for launch in request.pilots]

    def _bundle_on_node(self) -> tuple[BundleOnNode, str]:
        """Where the start script finds the bundle, and what HTCondor transfers for it."""
        if self.bundle is None:
            raise ValueError("no pilot bundle configured (director.pilot_bundle) and no command")
        if self.options.bundle_path:
            return BundleOnNode(self.options.bundle_path, self.bundle.sha256, _NODE_CACHE), ""
        if self.options.bundle_url:
            url = self.bundle.url_from(self.options.bundle_url)
            name = PurePosixPath(urlparse(url).path).name or "bundle.tar.gz"
            return BundleOnNode(name, self.bundle.sha256, _NODE_CACHE), url
        return BundleOnNode(self.bundle.path.name, self.bundle.sha256, _NODE_CACHE), str(
            self.bundle.path
        )

    def _prepare(self, launch: PilotLaunch) -> dict[str, str] | SubmitResult:
        """The pilot's directory (its start script, token and CA): what HTCondor spools."""
        pilot_id = launch.pilot_id
        if not _SAFE_ID.match(pilot_id):
            return SubmitResult.failed(pilot_id, f"unsafe pilot id {pilot_id!r}")
        pilot_dir = self.pilot_dir(pilot_id)
        if pilot_dir.exists():
            return SubmitResult.failed(pilot_id, f"pilot directory exists: {pilot_dir}")
        inputs: list[str] = []
        spec = StartScript(
            pilot_id=pilot_id,
            # Paths relative to the job's scratch directory, where HTCondor puts the inputs.
            work_dir=".",
            command=launch.command,
            arguments=launch.arguments,
            environment=launch.environment,
        )
        try:
            if not launch.command:
                on_node, transferred = self._bundle_on_node()
                spec = replace(spec, bundle=on_node)
                if transferred:
                    inputs.append(transferred)
            self.files.make_dirs(str(pilot_dir), 0o700)
            if launch.registration_token:
                token = launch.registration_token.encode() + b"\n"
                self.files.write_file(str(pilot_dir / TOKEN_FILE), token, 0o600)
                spec = replace(spec, token_file=TOKEN_FILE)
                inputs.insert(0, TOKEN_FILE)
            if launch.ca is not None:
                self.files.put_file(launch.ca, str(pilot_dir / CA_FILE), 0o644)
                spec = replace(spec, ca_file=CA_FILE)
                inputs.insert(0, CA_FILE)
            script = render_start_script(spec).replace("\n", "\n" + _PATH_DEFAULT, 1)
            self.files.write_file(str(pilot_dir / START_SCRIPT), script.encode(), 0o700)
            return submit_item(str(pilot_dir), pilot_id, inputs)
        except ValueError as exc:
            self.files.remove_tree(str(pilot_dir))
            return SubmitResult.failed(pilot_id, str(exc))
        except OSError as exc:
            self.files.remove_tree(str(pilot_dir))
            message = f"cannot write the files of pilot {pilot_id} in {pilot_dir}: {exc}"
            return SubmitResult.retry(pilot_id, message)

    def _submit_batch(
        self, description: Mapping[str, str], batch: Sequence[tuple[PilotLaunch, dict[str, str]]]
    ) -> list[SubmitResult]:
        launches = [launch for launch, _ in batch]
        try:
            reply = self._call(
                "submit", description=dict(description), items=[item for _, item in batch]
            )
        except CondorError as exc:
            for launch in launches:
                self.files.remove_tree(str(self.pilot_dir(launch.pilot_id)))
            log.error(
                "htcondorce.submit_failed",
                queue=self.queue,
                pilots=len(batch),
                error=str(exc),
                transient=exc.transient,
            )
            make = SubmitResult.retry if exc.transient else SubmitResult.failed
            return [make(launch.pilot_id, str(exc)) for launch in launches]
        cluster, first = int(reply["cluster"]), int(reply["first_proc"])
        submitted = self._clock()
        results = []
        for index, launch in enumerate(launches):
            reference = f"{self.options.schedd}#{cluster}.{first + index}"
            pilot_dir = self.pilot_dir(launch.pilot_id)
            # The CE holds its copy now: no second copy of the token stays behind here.
            (pilot_dir / TOKEN_FILE).unlink(missing_ok=True)
            try:
                self._records.write(
                    reference, _Record(pilot_id=launch.pilot_id, submitted=submitted)
                )
            except OSError as exc:
                log.warning("pilot.record_failed", pilot_id=launch.pilot_id, error=str(exc))
            log.info(
                "pilot.submitted", pilot_id=launch.pilot_id, reference=reference, backend=self.name
            )
            results.append(SubmitResult.ok(launch.pilot_id, reference))
        return results

    # ---- status ----

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        statuses: dict[str, BackendStatus] = {}
        open_jobs: dict[str, tuple[JobId, _Record]] = {}
        for ref in references:
            known = self._known(ref)
            if isinstance(known, BackendStatus):
                statuses[ref] = known
            elif known[1].final is not None:
                statuses[ref] = _as_status(known[1].final)
            else:
                open_jobs[ref] = known
        if open_jobs:
            statuses.update(self._ask_ce(open_jobs))
        return statuses

    def _known(self, reference: str) -> tuple[JobId, _Record] | BackendStatus:
        """The job and record behind a reference, or why the backend cannot tell."""
        try:
            parsed = parse_reference(reference)
        except ValueError as exc:
            return BackendStatus(PilotState.UNKNOWN, "unknown", reason=str(exc))
        if parsed.schedd != self.options.schedd:
            reason = f"submitted to schedd {parsed.schedd}; this queue uses {self.options.schedd}"
            return BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)
        record = self._records.read(reference)
        if record is None:
            reason = f"no record of {reference} under {self.work_dir} (cleaned up?)"
            return BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)
        return parsed.job, record

    def _ask_ce(self, open_jobs: Mapping[str, tuple[JobId, _Record]]) -> dict[str, BackendStatus]:
        jobs = [job for job, _ in open_jobs.values()]
        without_log = [
            job
            for job, record in open_jobs.values()
            if not (self.pilot_dir(record.pilot_id) / LOG_FILE).exists()
        ]
        now = self._clock()
        try:
            reply = self._call(
                "status",
                jobs=[[j.cluster, j.proc] for j in jobs],
                retrieve=[[j.cluster, j.proc] for j in without_log],
                since=history_since(now, self.options.history_lookback),
            )
        except CondorError as exc:
            raise BackendError(self.name, "status", str(exc)) from exc
        for warning in reply.get("warnings", []):
            log.warning("htcondorce.status_warning", queue=self.queue, warning=redact(warning))
        in_queue = ads_by_job(reply.get("queue", []))
        in_history = ads_by_job(reply.get("history", []))
        history_error = redact(str(reply.get("history_error") or ""))
        statuses: dict[str, BackendStatus] = {}
        for ref, (job, record) in open_jobs.items():
            ad = in_queue.get(job) or in_history.get(job)
            if ad is not None:
                status = to_status(ad)
            elif history_error:
                # Not in the queue, and the history could not tell: not a reason to give up.
                status = BackendStatus(PilotState.UNKNOWN, "unknown", reason=history_error)
            elif record.cancelled:
                status = BackendStatus(
                    PilotState.ABORTED,
                    "Removed",
                    reason="cancelled by the site director (condor_rm)",
                )
            elif now - record.submitted < self.options.vanish_grace:
                status = BackendStatus(
                    PilotState.UNKNOWN, "unknown", reason="not (yet) visible on the CE"
                )
            else:
                status = vanished()
            if status.state in FINAL_PILOT_STATES:
                self._remember(ref, record, status)
            statuses[ref] = status
        return statuses

    def _remember(self, reference: str, record: _Record, status: BackendStatus) -> None:
        final = _Final(status.state.value, status.native, status.exit_code, status.reason)
        try:
            self._records.write(reference, msgspec.structs.replace(record, final=final))
        except OSError as exc:
            log.warning("pilot.record_failed", reference=reference, error=str(exc))

    # ---- cancel, output, cleanup ----

    def cancel(self, references: Sequence[str]) -> None:
        targets: dict[str, tuple[JobId, _Record]] = {}
        for ref in references:
            known = self._known(ref)
            if isinstance(known, BackendStatus):
                log.warning("pilot.cancel_skipped", reference=ref, reason=known.reason)
            elif known[1].final is None:
                targets[ref] = known
        if not targets:
            return
        jobs = [[job.cluster, job.proc] for job, _ in targets.values()]
        try:
            self._call("remove", jobs=jobs, reason=CANCEL_REASON)
        except CondorError as exc:
            raise BackendError(self.name, "cancel", str(exc)) from exc
        log.info("pilots.cancelled", references=",".join(targets), backend=self.name)
        for ref, (_, record) in targets.items():
            try:
                self._records.write(ref, msgspec.structs.replace(record, cancelled=True))
            except OSError as exc:
                log.warning("pilot.cancel_not_recorded", reference=ref, error=str(exc))

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        known = self._known(reference)
        if isinstance(known, BackendStatus):
            raise BackendError(self.name, "fetch_output", known.reason)
        job, record = known
        path = self.pilot_dir(record.pilot_id) / LOG_FILE
        if not path.exists() and record.final is not None and record.final.native != "Completed":
            # HTCondor transfers a job's output only when it completes.
            reason = f"no output: the pilot's job ended {record.final.native}"
            raise BackendError(self.name, "fetch_output", reason)
        if not path.exists():
            try:
                self._call("retrieve", jobs=[[job.cluster, job.proc]])
            except CondorError as exc:
                raise BackendError(self.name, "fetch_output", str(exc)) from exc
        return tail_file(path, max_bytes)

    def cleanup(self, references: Sequence[str]) -> None:
        try:
            statuses = self.status(references)
        except BackendError as exc:
            # Pilots known to have ended are still forgotten; the others wait for next time.
            log.warning("pilot.cleanup_status_failed", queue=self.queue, error=str(exc))
            statuses = {}
            for ref in references:
                known = self._known(ref)
                if not isinstance(known, BackendStatus) and known[1].final is not None:
                    statuses[ref] = _as_status(known[1].final)
        release: list[list[int]] = []
        forget: list[tuple[str, _Record]] = []
        for ref in references:
            known = self._known(ref)
            if isinstance(known, BackendStatus):
                continue
            job, record = known
            status = statuses.get(ref)
            if status is None or status.state not in FINAL_PILOT_STATES:
                reason = status.state.value if status else "state unknown"
                log.warning("pilot.cleanup_skipped", reference=ref, reason=reason)
                continue
            completed = status.native == "Completed"
            if completed and not (self.pilot_dir(record.pilot_id) / LOG_FILE).exists():
                release.append([job.cluster, job.proc])
            forget.append((ref, record))
        if release:
            # A completed job whose log was never fetched leaves the CE's queue (and spool).
            try:
                self._call("release", jobs=release)
            except CondorError as exc:
                log.warning("pilot.cleanup_release_failed", queue=self.queue, error=str(exc))
        for ref, record in forget:
            self.files.remove_tree(str(self.pilot_dir(record.pilot_id)))
            self._records.remove(ref)


def _as_status(final: _Final) -> BackendStatus:
    return BackendStatus(PilotState(final.state), final.native, final.exit_code, final.reason)


def _is_condor_variable(name: str) -> bool:
    return name.upper().startswith("_CONDOR_") or name in _CONDOR_VARIABLES


# ---- factory -----------------------------------------------------------------------------------


def create_htcondorce_backend(context: BackendContext) -> Backend:
    options = convert_options(context.options, context.queue)
    if importlib.util.find_spec("htcondor2") is None:
        raise BackendConfigError(
            f"queues[{context.queue}].backend: the htcondorce backend needs the HTCondor Python "
            "bindings (pip install 'gridpilot[htcondor]', or pip install htcondor)"
        )
    work_dir = Path(options.work_dir or Path(context.work_dir).resolve() / "htcondorce")
    return HTCondorCEBackend(options, context.queue, work_dir, context.bundle)
