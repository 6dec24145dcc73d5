"""The `arc` backend: pilots as jobs on an ARC CE (A-REX), through its REST interface 1.0.

Native ARC states map onto pilot states by `NATIVE_STATES` (the table at the top of
sitedirectors/arc_parse.py, with the parsers and the xRSL builder). Per cycle, a queue's new
pilots go to the CE in one `POST /jobs?action=new` (a multi-job xRSL, `+(&...)(&...)`, up to
`max_jobs_per_request` descriptions), then each job's inputs are uploaded into its session
directory (`PUT /jobs/<id>/session/<file>`): the pilot's start script (the job's executable:
sitedirectors/start_script.py, written by sitedirectors/staging.py, its paths relative to the
session directory), central's CA, the registration token and, unless `bundle_url` is set,
the pilot bundle.
A-REX starts the job once every declared input is there; its output goes to `pilot.log`, the
one file kept after the job ends (`fetch_output` reads its tail).

The registration token travels only in the body of its own upload, into the session
directory, which A-REX creates 0700 for the local account the CE maps the director's
credential to: on the worker node only that account (and root) can read it, as with the 0600
file of the other backends; it is never in the xRSL, a URL or the job's environment.

Status comes in bulk from `action=status`, which A-REX answers from a per-job file its
information provider rewrites about once a minute: a job may show an earlier state (ACCEPTED)
for a minute or more after it moved on, so a lagging answer is never taken for an end. The
exit code and A-REX's error of a job that ended come from `action=info` once and are kept in
the backend's record of the job (under <director work_dir>/arc/references/). A job the CE
does not know (404, WIPED) is Submitted while younger than `status_lag`, Unknown while
missing for less than `vanish_grace`, then Aborted ("job vanished from the CE") -- unless the
backend already saw it end or cancelled it. `cancel` is `action=kill`: with ARC's fork LRMS
this stops only the job's shell, not the pilot under it, so a pilot also ends itself when
central tells it to. `cleanup` is `action=clean` for jobs that ended.

Options ([queues.backend_options]): sitedirectors/arc_options.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from gridpilot.logs import get_logger
from sitedirectors.arc_options import ArcOptions, convert_options
from sitedirectors.arc_parse import (
    NATIVE_STATES,
    VANISHED,
    InputFile,
    JobDescription,
    JobEntry,
    JobInfo,
    is_gone,
    is_job_id,
    is_safe_name,
    parse_entries,
    parse_info,
    parse_new_jobs,
    parse_status,
    render_submission,
    submit_error_is_transient,
    to_status,
)
from sitedirectors.arc_rest import ArcRequestError, ArcRest
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
from sitedirectors.remote import LocalFiles, tail_text
from sitedirectors.staging import LOG_FILE, START_SCRIPT, write_pilot_files
from sitedirectors.start_script import BundleOnNode

__all__ = ["NATIVE_STATES", "ArcBackend", "create_arc_backend"]

log = get_logger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_CHUNK = 1 << 20


# ---- the pilot's files, on their way to a session directory -------------------------------------


@dataclass
class SessionFiles:
    """`RemoteFiles` over a job's session directory not created yet: what write_pilot_files
    writes there (paths relative to it: the start script takes them from the directory the
    job starts in) is kept, as bytes or as the local file to send, and uploaded once A-REX has
    made the job. Modes do not travel: A-REX writes the files as the mapped account into the
    job's private (0700) session directory."""

    files: dict[str, bytes | Path] = field(default_factory=dict)

    def _name(self, path: str) -> str:
        name = path.removeprefix("./")
        if not is_safe_name(name):
            raise ValueError(f"not a file of the session directory: {path!r}")
        return name

    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        return None

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self.files[self._name(path)] = data

    def put_file(self, local: Path, path: str, mode: int = 0o644) -> None:
        self.files[self._name(path)] = local

    def exists(self, path: str) -> bool:
        return self._name(path) in self.files

    def size(self, path: str) -> int | None:
        data = self.files.get(self._name(path))
        if data is None:
            return None
        return data.stat().st_size if isinstance(data, Path) else len(data)

    def tail(self, path: str, max_bytes: int) -> str:
        data = self.files.get(self._name(path))
        raw = data.read_bytes() if isinstance(data, Path) else (data or b"")
        return tail_text(raw[-max_bytes:], len(raw))

    def remove_tree(self, path: str) -> None:
        self.files.pop(self._name(path), None)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


# ---- the backend -----------------------------------------------------------------------------


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    """What the backend keeps per job: its pilot, when it was submitted, whether the backend
    cancelled it, since when the CE has not known it, and how it ended once seen ended."""

    pilot_id: str
    submitted: float
    cancelled: bool = False
    missing_since: float = 0.0
    final_state: str = ""
    exit_code: int | None = None
    error: str = ""


@dataclass(frozen=True)
class _Prepared:
    launch: PilotLaunch
    files: SessionFiles
    description: JobDescription


class ArcBackend(Backend):
    name = "arc"

    def __init__(
        self,
        options: ArcOptions,
        state_dir: Path,
        bundle: PilotBundle | None = None,
        *,
        rest: ArcRest | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.state_dir = state_dir
        self.bundle = bundle
        self.rest = rest or ArcRest(options)
        self.endpoint = options.endpoint
        self._clock = clock
        self._records = ReferenceRecords(LocalFiles(), str(state_dir / "references"), _Record)

    # ---- records ----

    def _read_record(self, reference: str) -> _Record | None:
        try:
            return self._records.read(reference)
        except OSError as exc:
            log.warning("pilot.record_unreadable", reference=reference, error=str(exc))
            return None

    def _write_record(self, reference: str, record: _Record) -> None:
        try:
            self._records.write(reference, record)
        except OSError as exc:
            log.warning("pilot.record_failed", reference=reference, error=str(exc))

    def _chunks(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        size = self.options.max_jobs_per_request
        for start in range(0, len(items), size):
            yield items[start : start + size]

    # ---- submit ----

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        results: dict[str, SubmitResult] = {}
        prepared: list[_Prepared] = []
        for launch in request.pilots:
            outcome = self._prepare(request.queue, launch)
            if isinstance(outcome, SubmitResult):
                results[launch.pilot_id] = outcome
            else:
                prepared.append(outcome)
        for chunk in self._chunks(prepared):
            for result in self._submit_chunk(chunk):
                results[result.pilot_id] = result
        return [results[launch.pilot_id] for launch in request.pilots]

    def _bundle_on_node(self) -> BundleOnNode | None:
        if self.bundle is None:
            return None
        # Relative paths: in the session directory, wherever A-REX puts it on the node.
        cache = self.options.cache_dir or "bundle-cache"
        return BundleOnNode(self.bundle.file_name, self.bundle.sha256, cache)

    def _prepare(self, queue: PilotQueue, launch: PilotLaunch) -> _Prepared | SubmitResult:
        pilot_id = launch.pilot_id
        if not _SAFE_ID.match(pilot_id):
            return SubmitResult.failed(pilot_id, f"unsafe pilot id {pilot_id!r}")
        if not launch.command and self.bundle is None:
            return SubmitResult.failed(
                pilot_id, "no pilot bundle configured (director.pilot_bundle) and no pilot command"
            )
        files = SessionFiles()
        try:
            write_pilot_files(files, launch, ".", self._bundle_on_node())
        except (ValueError, OSError) as exc:
            return SubmitResult.failed(pilot_id, f"cannot prepare pilot {pilot_id}: {exc}")
        inputs = [InputFile(name) for name in files.files]
        if not launch.command and self.bundle is not None:
            if self.options.bundle_url:
                url = self.bundle.url_from(self.options.bundle_url)
                inputs.append(InputFile(self.bundle.file_name, url))
            else:
                files.files[self.bundle.file_name] = self.bundle.path
                inputs.append(InputFile(self.bundle.file_name))
        description = JobDescription(
            executable=START_SCRIPT,
            inputs=tuple(inputs),
            log_file=LOG_FILE,
            job_name=f"gridpilot-{pilot_id}",
            queue=self.options.queue,
            walltime_minutes=self.options.walltime,
            # ARC's memory is per slot.
            memory_mb=-(-queue.memory_mb // max(queue.slots, 1)),
            count=max(queue.slots, 1),
            runtime_environments=tuple(self.options.runtime_environments),
        )
        return _Prepared(launch, files, description)

    def _submit_chunk(self, chunk: Sequence[_Prepared]) -> list[SubmitResult]:
        body = render_submission([p.description for p in chunk]).encode()
        try:
            response = self.rest.request(
                "POST",
                "/jobs",
                "submit (action=new)",
                params={"action": "new"},
                content=body,
                headers={"Content-Type": "application/rsl"},
            )
            entries = parse_new_jobs(response.text, len(chunk))
        except ArcRequestError as exc:
            log.error(
                "arc.submit_failed", endpoint=self.endpoint, pilots=len(chunk), error=str(exc)
            )
            make = SubmitResult.retry if exc.transient else SubmitResult.failed
            return [make(p.launch.pilot_id, str(exc)) for p in chunk]
        except ValueError as exc:
            message = f"ARC CE {self.endpoint}: {exc}"
            return [SubmitResult.failed(p.launch.pilot_id, message) for p in chunk]
        submitted = self._clock()
        return [
            self._complete(p, entry, submitted) for p, entry in zip(chunk, entries, strict=True)
        ]

    def _complete(self, prepared: _Prepared, entry: JobEntry, submitted: float) -> SubmitResult:
        """Upload a created job's inputs (or say why the CE did not create it)."""
        pilot_id = prepared.launch.pilot_id
        if not entry.ok or not is_job_id(entry.job_id):
            message = f"ARC CE {self.endpoint} refused the job: {entry.reason or entry.code}"
            log.error("arc.job_refused", endpoint=self.endpoint, pilot_id=pilot_id, error=message)
            if submit_error_is_transient(entry.reason):
                return SubmitResult.retry(pilot_id, message)
            return SubmitResult.failed(pilot_id, message)
        job_id = entry.job_id
        self._write_record(job_id, _Record(pilot_id=pilot_id, submitted=submitted))
        try:
            for name, data in prepared.files.files.items():
                content = _file_chunks(data) if isinstance(data, Path) else data
                self.rest.request(
                    "PUT", f"/jobs/{job_id}/session/{name}", f"upload {name}", content=content
                )
        except (ArcRequestError, OSError) as exc:
            # Without all its inputs the job would wait for them forever: drop it.
            self._discard(job_id)
            log.error("arc.upload_failed", endpoint=self.endpoint, job=job_id, error=str(exc))
            if isinstance(exc, ArcRequestError) and not exc.transient:
                return SubmitResult.failed(pilot_id, str(exc))
            return SubmitResult.retry(pilot_id, str(exc))
        log.info("pilot.submitted", pilot_id=pilot_id, reference=job_id, backend=self.name)
        return SubmitResult.ok(pilot_id, job_id)

    def _discard(self, job_id: str) -> None:
        for action in ("kill", "clean"):
            try:
                self.rest.jobs_action(action, [job_id])
            except ArcRequestError as exc:
                log.warning("arc.discard_failed", job=job_id, action=action, error=str(exc))
        self._records.remove(job_id)

    # ---- status ----

    def _entries(self, job_ids: Sequence[str], operation: str) -> dict[str, JobEntry]:
        entries: dict[str, JobEntry] = {}
        for chunk in self._chunks(job_ids):
            try:
                entries.update(parse_status(self.rest.jobs_action("status", chunk)))
            except (ArcRequestError, ValueError) as exc:
                raise BackendError(self.name, operation, str(exc)) from exc
        return entries

    def _infos(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        infos: dict[str, JobInfo] = {}
        for chunk in self._chunks(job_ids):
            try:
                infos.update(parse_info(self.rest.jobs_action("info", chunk)))
            except (ArcRequestError, ValueError) as exc:
                # The end is known; only its exit code is missing (asked again next time).
                log.warning("arc.info_failed", endpoint=self.endpoint, error=str(exc))
        return infos

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        statuses: dict[str, BackendStatus] = {}
        job_ids = []
        for ref in references:
            if is_job_id(ref):
                job_ids.append(ref)
            else:
                reason = f"not an ARC job id: {ref!r}"
                statuses[ref] = BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)
        entries = self._entries(job_ids, "status") if job_ids else {}
        now = self._clock()
        ended: list[tuple[str, str, _Record]] = []
        for job_id in job_ids:
            entry = entries.get(job_id)
            record = self._read_record(job_id)
            if record is not None and record.final_state:
                # Seen ended: that is final, whatever the CE says later (it may wipe the job).
                statuses[job_id] = self._ended(record.final_state, record)
                continue
            if entry is None or is_gone(entry):
                statuses[job_id] = self._missing(job_id, record, now)
                continue
            if record is not None and record.missing_since:
                record = msgspec.structs.replace(record, missing_since=0.0)
                self._write_record(job_id, record)
            native = entry.state.upper()
            state = NATIVE_STATES.get(native)
            if not entry.ok:
                reason = f"the CE answered {entry.code} for {job_id}: {entry.reason}"
                statuses[job_id] = BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)
            elif state is None or state not in FINAL_PILOT_STATES:
                statuses[job_id] = to_status(native)
            elif record is None:
                statuses[job_id] = BackendStatus(
                    PilotState.UNKNOWN, native, reason=f"no record of {job_id} (cleaned up?)"
                )
            else:
                ended.append((job_id, native, record))
        infos = self._infos([job_id for job_id, _, _ in ended]) if ended else {}
        for job_id, native, record in ended:
            info = infos.get(job_id)
            if info is None or info.code != 200:
                statuses[job_id] = self._ended(native, record)
                continue
            seen = msgspec.structs.replace(
                record, final_state=native, exit_code=info.exit_code, error=info.error
            )
            self._write_record(job_id, seen)
            statuses[job_id] = self._ended(native, seen)
        return statuses

    @staticmethod
    def _ended(native: str, record: _Record) -> BackendStatus:
        return to_status(
            native, exit_code=record.exit_code, error=record.error, cancelled=record.cancelled
        )

    def _missing(self, job_id: str, record: _Record | None, now: float) -> BackendStatus:
        """A job the CE does not show (unknown id, wiped, or left out of the answer)."""
        if record is None:
            reason = f"the CE does not know {job_id} and there is no record of it (cleaned up?)"
            return BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)
        if record.cancelled:
            return to_status("KILLED", cancelled=True)
        if now - record.submitted < self.options.status_lag:
            reason = "not yet visible in the CE's status (it lags)"
            return BackendStatus(PilotState.SUBMITTED, "unknown", reason=reason)
        if not record.missing_since:
            record = msgspec.structs.replace(record, missing_since=now)
            self._write_record(job_id, record)
        missing = now - record.missing_since
        if missing >= self.options.vanish_grace:
            return to_status(VANISHED)
        reason = f"unknown to the CE for {missing:.0f} s"
        return BackendStatus(PilotState.UNKNOWN, "unknown", reason=reason)

    # ---- cancel, output, cleanup ----

    def cancel(self, references: Sequence[str]) -> None:
        records = {ref: self._read_record(ref) for ref in references if is_job_id(ref)}
        for ref in set(references) - set(records):
            log.warning("pilot.cancel_skipped", reference=ref, reason="not an ARC job id")
        # Jobs seen ended are left alone (A-REX queues a kill even for those).
        job_ids = [ref for ref, rec in records.items() if rec is None or not rec.final_state]
        for chunk in self._chunks(job_ids):
            try:
                answer = parse_entries(self.rest.jobs_action("kill", chunk), "action=kill")
            except (ArcRequestError, ValueError) as exc:
                raise BackendError(self.name, "cancel", str(exc)) from exc
            for entry in answer:
                # 404: unknown (cleaned); 505: cannot be cancelled (it ended): not an error.
                if not entry.ok:
                    log.info(
                        "arc.kill_refused", job=entry.job_id, code=entry.code, why=entry.reason
                    )
        for job_id in job_ids:
            record = records[job_id]
            if record is not None and not record.cancelled:
                self._write_record(job_id, msgspec.structs.replace(record, cancelled=True))
        if job_ids:
            log.info("pilots.cancelled", references=",".join(job_ids), backend=self.name)

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        if not is_job_id(reference):
            raise BackendError(self.name, "fetch_output", f"not an ARC job id: {reference!r}")
        path = f"/jobs/{reference}/session/{LOG_FILE}"
        try:
            head = self.rest.request("HEAD", path, f"size of {LOG_FILE}")
            size = int(head.headers.get("content-length", "0"))
            start = max(0, size - max_bytes)
            headers = {"Range": f"bytes={start}-"} if start else None
            body = self.rest.request("GET", path, f"read {LOG_FILE}", headers=headers).content
        except (ArcRequestError, ValueError) as exc:
            raise BackendError(self.name, "fetch_output", str(exc)) from exc
        # A CE that ignores the range sends everything: keep the tail.
        return tail_text(body[-max_bytes:], max(size, len(body)))

    def cleanup(self, references: Sequence[str]) -> None:
        job_ids = [ref for ref in references if is_job_id(ref)]
        if not job_ids:
            return
        entries = self._entries(job_ids, "cleanup")
        done, known = [], []
        for job_id in job_ids:
            entry = entries.get(job_id)
            gone = entry is None or is_gone(entry)
            state = None if gone or entry is None else NATIVE_STATES.get(entry.state.upper())
            if not gone and state not in FINAL_PILOT_STATES:
                why = f"still on the CE ({entry.state if entry else '?'})"
                log.warning("pilot.cleanup_skipped", reference=job_id, reason=why)
                continue
            done.append(job_id)
            if not gone:
                known.append(job_id)
        for chunk in self._chunks(known):
            try:
                self.rest.jobs_action("clean", chunk)
            except ArcRequestError as exc:
                raise BackendError(self.name, "cleanup", str(exc)) from exc
        for job_id in done:
            self._records.remove(job_id)

    def close(self) -> None:
        self.rest.close()


# ---- factory -----------------------------------------------------------------------------------


def create_arc_backend(context: BackendContext) -> Backend:
    options = convert_options(context.options, context.queue)
    state_dir = Path(context.work_dir).resolve() / "arc"
    return ArcBackend(options, state_dir, context.bundle)
