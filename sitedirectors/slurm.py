"""The `slurm` backend: pilots as SLURM batch jobs, submitted with the SLURM commands of a
submit host.

Native SLURM job states map onto pilot states by `NATIVE_STATES` (the table at the top of
sitedirectors/slurm_parse.py, with the parsers). A job that none of `squeue --json`,
`scontrol show job` and (when accounting answers) `sacct` knows has vanished from the batch
system: Aborted, once `vanish_grace` seconds have passed since its submission.

Everything host-specific goes through a `CommandRunner` and `RemoteFiles`
(sitedirectors/remote.py): on the director's own host for `backend = "slurm"`, over SSH for
the SSH backend's slurm mode. Layout under `work_dir` (on a file system the worker nodes
share with the submit host):

    pilots/<pilot_id>/          0700: registration.token (0600), ca.pem, start.sh,
                                pilot.log (the job's output), reference, work/
    references/<reference>      {"pilot_id", "submitted", "cancelled"}: reference -> pilot
    bundles/<bundle file name>  the pilot bundle, staged once per checksum

The batch script goes to `sbatch --parsable` on its standard input and only runs the pilot's
start script (sitedirectors/slurm_script.py, sitedirectors/start_script.py); the registration
token stays in its 0600 file, never in argv, the environment or the script SLURM keeps. Jobs
are submitted with `--export=NONE`, so the director's environment never reaches a pilot: the
job gets the user's login environment and the pilot the queue's `pilot.environment`. A
submission of n > 1 pilots is one job array (`--array=0-<n-1>`); references are "<jobid>" or
"<jobid>_<task>". Backend options ([queues.backend_options]):

    work_dir = "/shared/gridpilot"  # default: <director work_dir>/slurm
    partition = "grid"              # default: the cluster's default partition
    account = ""
    qos = ""
    time_limit = 0                  # minutes; 0 = the partition's default
    extra_sbatch_args = []          # appended to every sbatch command
    slurm_conf = ""                 # SLURM_CONF for every command ("" = SLURM's default)
    bundle_dir = ""                 # default: <work_dir>/bundles
    cache_dir = ""                  # unpacked bundles on the nodes; default <work_dir>/bundle-cache
    array = true                    # one sbatch --array for several pilots
    command_timeout = 60.0          # seconds for each SLURM command
    vanish_grace = 60.0             # seconds a new job may stay invisible before "vanished"
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import msgspec

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from gridpilot.logs import get_logger
from sitedirectors.base import (
    DEFAULT_LOG_CAP_BYTES,
    Backend,
    BackendContext,
    BackendError,
    BackendStatus,
    PilotLaunch,
    PilotQueue,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.bundle import PilotBundle
from sitedirectors.records import ReferenceRecords
from sitedirectors.remote import (
    CommandError,
    CommandResult,
    CommandRunner,
    LocalFiles,
    LocalRunner,
    RemoteFiles,
)
from sitedirectors.slurm_parse import (
    NATIVE_STATES,
    VANISHED,
    NativeJob,
    SlurmReference,
    is_unknown_job_error,
    parse_reference,
    parse_sacct,
    parse_sbatch_output,
    parse_scontrol_jobs,
    parse_squeue_json,
    sbatch_error_is_transient,
    sbatch_error_message,
    to_status,
)
from sitedirectors.slurm_script import (
    ArrayTask,
    SlurmOptions,
    convert_options,
    render_array_script,
    render_single_script,
    sbatch_argv,
)
from sitedirectors.staging import LOG_FILE, remove_quietly, stage_bundle, write_pilot_files
from sitedirectors.start_script import BundleOnNode

__all__ = [
    "NATIVE_STATES",
    "SlurmBackend",
    "SlurmOptions",
    "convert_options",
    "create_slurm_backend",
]

log = get_logger(__name__)

REFERENCE_FILE = "reference"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# A failed sacct (no accounting) is asked again only after this many seconds.
_SACCT_RETRY = 600.0
# Failures worth retrying next cycle: the host is short of something, not misconfigured.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.ENOSPC, errno.EMFILE})


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    """What the backend keeps per reference: its pilot, when it was submitted, and whether
    the backend cancelled it (SLURM forgets a pending array task as soon as it is cancelled)."""

    pilot_id: str
    submitted: float
    cancelled: bool = False


@dataclass(frozen=True)
class _Prepared:
    pilot_id: str
    pilot_dir: str


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(
        self,
        runner: CommandRunner,
        files: RemoteFiles,
        options: SlurmOptions,
        bundle: PilotBundle | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not PurePosixPath(options.work_dir).is_absolute():
            raise ValueError(f"slurm backend work_dir must be absolute, got {options.work_dir!r}")
        self.runner = runner
        self.files = files
        self.options = options
        self.bundle = bundle
        self.work_dir = options.work_dir.rstrip("/") or "/"
        self.bundle_dir = options.bundle_dir or f"{self.work_dir}/bundles"
        self.cache_dir = options.cache_dir or f"{self.work_dir}/bundle-cache"
        self._clock = clock
        self._environment = {"SLURM_CONF": options.slurm_conf} if options.slurm_conf else None
        self._sacct_failed_at: float | None = None
        self._records = ReferenceRecords(files, f"{self.work_dir}/references", _Record)

    # ---- paths and records ----

    def pilot_dir(self, pilot_id: str) -> str:
        return f"{self.work_dir}/pilots/{pilot_id}"

    def _run(self, argv: Sequence[str], stdin: bytes | None = None) -> CommandResult:
        return self.runner.run(
            argv,
            timeout=self.options.command_timeout,
            stdin=stdin,
            environment=self._environment,
        )

    # ---- submit ----

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        results: dict[str, SubmitResult] = {}
        bundle: BundleOnNode | None = None
        bundle_error: SubmitResult | None = None
        if not all(launch.command for launch in request.pilots):
            bundle, bundle_error = self._stage_bundle()
        prepared: list[_Prepared] = []
        for launch in request.pilots:
            if bundle_error is not None and not launch.command:
                results[launch.pilot_id] = replace(bundle_error, pilot_id=launch.pilot_id)
                continue
            outcome = self._prepare(launch, bundle)
            if isinstance(outcome, SubmitResult):
                results[launch.pilot_id] = outcome
            else:
                prepared.append(outcome)
        if self.options.array and len(prepared) > 1:
            batches = [prepared]
        else:
            batches = [[p] for p in prepared]
        for batch in batches:
            for result in self._sbatch(request.queue, batch):
                results[result.pilot_id] = result
        return [results[launch.pilot_id] for launch in request.pilots]

    def _stage_bundle(self) -> tuple[BundleOnNode | None, SubmitResult | None]:
        """The staged bundle, or the result for every pilot that needed it."""
        if self.bundle is None:
            error = "no pilot bundle configured (director.pilot_bundle) and no pilot command"
            return None, SubmitResult.failed("", error)
        try:
            return stage_bundle(self.files, self.bundle, self.bundle_dir, self.cache_dir), None
        except (OSError, CommandError) as exc:
            message = f"cannot stage the pilot bundle in {self.bundle_dir}: {exc}"
            log.error("bundle.stage_failed", bundle_dir=self.bundle_dir, error=str(exc))
            return None, _failure("", message, exc)

    def _prepare(
        self, launch: PilotLaunch, bundle: BundleOnNode | None
    ) -> _Prepared | SubmitResult:
        """The pilot directory with its token, CA and start script."""
        pilot_id = launch.pilot_id
        if not _SAFE_ID.match(pilot_id):
            return SubmitResult.failed(pilot_id, f"unsafe pilot id {pilot_id!r}")
        pilot_dir = self.pilot_dir(pilot_id)
        try:
            if self.files.exists(pilot_dir):
                return SubmitResult.failed(pilot_id, f"pilot directory exists: {pilot_dir}")
            self.files.make_dirs(pilot_dir, 0o700)
        except (OSError, CommandError) as exc:
            return _failure(pilot_id, f"cannot create pilot directory {pilot_dir}: {exc}", exc)
        try:
            write_pilot_files(self.files, launch, pilot_dir, bundle)
        except ValueError as exc:
            self._remove_dirs([pilot_dir])
            return SubmitResult.failed(pilot_id, str(exc))
        except (OSError, CommandError) as exc:
            self._remove_dirs([pilot_dir])
            return _failure(pilot_id, f"cannot write the files of pilot {pilot_id}: {exc}", exc)
        return _Prepared(pilot_id, pilot_dir)

    def _sbatch(self, queue: PilotQueue, batch: Sequence[_Prepared]) -> list[SubmitResult]:
        if len(batch) == 1:
            script = render_single_script(batch[0].pilot_id, batch[0].pilot_dir)
        else:
            script = render_array_script([ArrayTask(p.pilot_id, p.pilot_dir) for p in batch])
        dirs = [p.pilot_dir for p in batch]
        argv = sbatch_argv(self.options, queue, dirs, self.work_dir)
        try:
            done = self._run(argv, stdin=script.encode())
        except CommandError as exc:
            # Should sbatch have submitted before timing out, the job finds no start script
            # and ends at once: no pilot runs that the director does not know of.
            self._remove_dirs(dirs)
            log.error("sbatch.failed", queue=queue.name, pilots=len(batch), error=str(exc))
            return [_failure(p.pilot_id, f"sbatch: {exc}", exc) for p in batch]
        if not done.ok:
            self._remove_dirs(dirs)
            message = sbatch_error_message(done.stderr or done.stdout, done.returncode)
            transient = sbatch_error_is_transient(done.stderr or done.stdout)
            log.error(
                "sbatch.refused",
                queue=queue.name,
                pilots=len(batch),
                error=message,
                transient=transient,
            )
            make = SubmitResult.retry if transient else SubmitResult.failed
            return [make(p.pilot_id, message) for p in batch]
        try:
            job_id = parse_sbatch_output(done.stdout)
        except ValueError as exc:
            # Without a job id the job cannot be tracked: without its directory it cannot run.
            self._remove_dirs(dirs)
            return [SubmitResult.failed(p.pilot_id, str(exc)) for p in batch]
        submitted = self._clock()
        results = []
        for index, prepared in enumerate(batch):
            reference = job_id if len(batch) == 1 else f"{job_id}_{index}"
            self._record_submission(prepared, reference, submitted)
            log.info(
                "pilot.submitted",
                pilot_id=prepared.pilot_id,
                reference=reference,
                backend=self.name,
            )
            results.append(SubmitResult.ok(prepared.pilot_id, reference))
        return results

    def _record_submission(self, prepared: _Prepared, reference: str, submitted: float) -> None:
        try:
            self.files.write_file(f"{prepared.pilot_dir}/{REFERENCE_FILE}", reference.encode())
            self._records.write(reference, _Record(pilot_id=prepared.pilot_id, submitted=submitted))
        except (OSError, CommandError) as exc:
            # The job runs and is tracked by its reference; without the record, its end and
            # its log will be out of reach (Unknown), which the warning has to explain.
            log.warning("pilot.record_failed", pilot_id=prepared.pilot_id, error=str(exc))

    def _remove_dirs(self, dirs: Iterable[str]) -> None:
        for path in dirs:
            remove_quietly(self.files, path)

    # ---- status ----

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        statuses: dict[str, BackendStatus] = {}
        parsed: dict[str, SlurmReference] = {}
        for ref in references:
            try:
                parsed[ref] = parse_reference(ref)
            except ValueError as exc:
                statuses[ref] = BackendStatus(PilotState.UNKNOWN, "unknown", reason=str(exc))
        natives, errors = self.native_jobs(parsed)
        now = self._clock()
        for ref in parsed:
            native = natives.get(ref)
            status = to_status(native) if native is not None else None
            if status is not None and status.state not in FINAL_PILOT_STATES:
                statuses[ref] = status
                continue
            # Finished or gone: only pilots this backend still has files for count.
            record = self._records.read(ref)
            if record is None:
                statuses[ref] = BackendStatus(
                    PilotState.UNKNOWN,
                    "unknown",
                    reason=f"no record of {ref} under {self.work_dir} (cleaned up?)",
                )
            elif status is not None:
                statuses[ref] = status
            elif ref in errors:
                statuses[ref] = BackendStatus(PilotState.UNKNOWN, "unknown", reason=errors[ref])
            elif record.cancelled:
                statuses[ref] = to_status(NativeJob("CANCELLED"))
            elif now - record.submitted < self.options.vanish_grace:
                statuses[ref] = BackendStatus(
                    PilotState.UNKNOWN, "unknown", reason="not (yet) visible in the batch system"
                )
            else:
                statuses[ref] = to_status(NativeJob(VANISHED))
        return statuses

    def native_jobs(
        self, parsed: Mapping[str, SlurmReference]
    ) -> tuple[dict[str, NativeJob], dict[str, str]]:
        """SLURM's view of the references: squeue first (one call), then `scontrol show job`
        per job id squeue did not show, then sacct when accounting answers. Also returns the
        errors of the lookups that failed (as reasons by reference)."""
        if not parsed:
            return {}, {}
        natives = self._squeue()
        errors: dict[str, str] = {}
        missing = [ref for ref in parsed if ref not in natives]
        for job_id in dict.fromkeys(parsed[ref].job_id for ref in missing):
            found, error = self._scontrol(job_id)
            natives.update(found)
            if error:
                errors.update({ref: error for ref in missing if parsed[ref].job_id == job_id})
        missing = [ref for ref in missing if ref not in natives and ref not in errors]
        if missing:
            natives.update(self._sacct(missing))
        return {ref: natives[ref] for ref in parsed if ref in natives}, errors

    def _squeue(self) -> dict[str, NativeJob]:
        # 22.05 ignores filters with --json and lists every job it still holds (finished
        # ones for MinJobAge); later versions honour them, hence --states=all.
        argv = ["squeue", "--json", "--me", "--states=all"]
        try:
            done = self._run(argv)
        except CommandError as exc:
            raise BackendError(self.name, "status", f"squeue: {exc}") from exc
        if not done.ok:
            raise BackendError(self.name, "status", done.describe())
        try:
            return parse_squeue_json(done.stdout)
        except ValueError as exc:
            raise BackendError(self.name, "status", str(exc)) from exc

    def _scontrol(self, job_id: str) -> tuple[dict[str, NativeJob], str]:
        try:
            done = self._run(["scontrol", "show", "job", job_id])
        except CommandError as exc:
            return {}, f"scontrol show job {job_id}: {exc}"
        if done.ok:
            return parse_scontrol_jobs(done.stdout), ""
        if is_unknown_job_error(done.stderr + done.stdout):
            return {}, ""
        return {}, done.describe()

    def _sacct(self, references: Sequence[str]) -> dict[str, NativeJob]:
        """Finished jobs from accounting, if the cluster has it (else nothing, quietly)."""
        now = self._clock()
        if self._sacct_failed_at is not None and now - self._sacct_failed_at < _SACCT_RETRY:
            return {}
        argv = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", ",".join(references)]
        try:
            done = self._run(argv)
        except CommandError as exc:
            done = CommandResult(tuple(argv), -1, "", str(exc))
        if not done.ok:
            self._sacct_failed_at = now
            log.debug("sacct.unavailable", error=done.describe())
            return {}
        self._sacct_failed_at = None
        return parse_sacct(done.stdout)

    # ---- cancel, output, cleanup ----

    def cancel(self, references: Sequence[str]) -> None:
        jobs = []
        for ref in references:
            try:
                jobs.append(str(parse_reference(ref)))
            except ValueError:
                log.warning("pilot.cancel_skipped", reference=ref, reason="bad reference")
        if not jobs:
            return
        try:
            done = self._run(["scancel", *jobs])
        except CommandError as exc:
            raise BackendError(self.name, "cancel", f"scancel: {exc}") from exc
        # Finished and unknown jobs are not an error (scancel may say so, or not).
        if not done.ok and not is_unknown_job_error(done.stderr):
            raise BackendError(self.name, "cancel", done.describe())
        log.info("pilots.cancelled", references=",".join(jobs), backend=self.name)
        for ref in jobs:
            record = self._records.read(ref)
            if record is None or record.cancelled:
                continue
            try:
                self._records.write(ref, msgspec.structs.replace(record, cancelled=True))
            except (OSError, CommandError) as exc:
                log.warning("pilot.cancel_not_recorded", reference=ref, error=str(exc))

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        parse_reference(reference)
        record = self._records.read(reference)
        if record is None:
            raise BackendError(self.name, "fetch_output", f"no record of {reference}")
        return self.files.tail(f"{self.pilot_dir(record.pilot_id)}/{LOG_FILE}", max_bytes)

    def cleanup(self, references: Sequence[str]) -> None:
        parsed: dict[str, SlurmReference] = {}
        for ref in references:
            try:
                parsed[ref] = parse_reference(ref)
            except ValueError:
                log.warning("pilot.cleanup_skipped", reference=ref, reason="bad reference")
        natives, errors = self.native_jobs(parsed)
        for ref in parsed:
            native = natives.get(ref)
            alive = native is not None and to_status(native).state not in FINAL_PILOT_STATES
            if alive or ref in errors:
                reason = "still in the batch system" if alive else errors[ref]
                log.warning("pilot.cleanup_skipped", reference=ref, reason=reason)
                continue
            record = self._records.read(ref)
            if record is not None:
                self._remove_dirs([self.pilot_dir(record.pilot_id)])
            self._remove_dirs([self._records.path(ref)])


def _failure(pilot_id: str, message: str, exc: BaseException) -> SubmitResult:
    """Retry later what may pass (a dropped connection, a full disk), fail the rest."""
    transient = isinstance(exc, CommandError) and exc.transient
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        transient = True
    if transient:
        return SubmitResult.retry(pilot_id, message)
    return SubmitResult.failed(pilot_id, message)


# ---- factory -----------------------------------------------------------------------------------


def create_slurm_backend(context: BackendContext) -> SlurmBackend:
    """The backend on the director's own host (it is the SLURM submit host)."""
    options = convert_options(context.options, context.queue)
    if not options.work_dir:
        work_dir = str(Path(context.work_dir).resolve() / "slurm")
        options = msgspec.structs.replace(options, work_dir=work_dir)
    return SlurmBackend(LocalRunner(), LocalFiles(), options, context.bundle)
