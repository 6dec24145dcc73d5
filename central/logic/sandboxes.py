"""Sandboxes: receive and serve the small tarballs of job inputs and outputs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from central.logic.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)
from central.logic.identity import Caller
from central.logic.submission import decode_spec
from central.sandboxes import (
    InvalidSandboxIdError,
    SandboxNotFoundError,
    SandboxStore,
    SandboxTooLargeError,
)
from central.store.interface import Store
from central.store.records import SandboxRecord
from gridpilot.logs import get_logger

log = get_logger(__name__)


class SandboxKind(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class UploadHeader:
    kind: SandboxKind
    job_id: int = 0
    attempt: int = 0
    # Announced by the client; 0 when unknown.
    size: int = 0


async def upload_sandbox(
    store: Store,
    sandboxes: SandboxStore,
    *,
    caller: Caller,
    header: UploadHeader,
    chunks: AsyncIterator[bytes],
    now: float,
) -> tuple[str, int]:
    """Store the streamed bytes and their metadata; over the limit nothing is kept."""
    if header.kind == SandboxKind.OUTPUT and header.job_id <= 0:
        raise InvalidArgumentError("an output sandbox needs the job id it belongs to")
    _check_upload(caller, header)
    try:
        sandboxes.check_size(header.size)
        upload = sandboxes.begin_upload()
        async with upload:
            async for chunk in chunks:
                await upload.write(chunk)
            sandbox_id, size = await upload.finish()
    except SandboxTooLargeError as exc:
        log.warning("sandbox.refused", user=caller.subject, size=exc.size, limit=exc.limit)
        raise ResourceExhaustedError(f"{exc}; nothing stored") from exc
    await store.add_sandbox(
        SandboxRecord(
            sandbox_id=sandbox_id,
            size=size,
            kind=header.kind.value,
            owner=caller.subject,
            job_id=header.job_id,
            attempt=header.attempt,
            created=now,
        )
    )
    log.info("sandbox.uploaded", sandbox_id=sandbox_id, size=size, kind=header.kind.value)
    return sandbox_id, size


def _check_upload(caller: Caller, header: UploadHeader) -> None:
    """People upload input sandboxes; a job token only its own attempt's output sandbox."""
    if caller.is_admin:
        return
    if header.kind == SandboxKind.INPUT:
        if not caller.is_person:
            raise PermissionDeniedError(f"{caller.describe()} may not upload input sandboxes")
        return
    if header.job_id != caller.job_id or header.attempt != caller.attempt or not caller.job_id:
        raise PermissionDeniedError(
            f"{caller.describe()} may not upload the output sandbox of job {header.job_id} "
            f"attempt {header.attempt}"
        )


async def _check_download(store: Store, caller: Caller, record: SandboxRecord) -> None:
    """Input sandboxes: their uploader, and the jobs that use them; output sandboxes: whoever
    may see the job."""
    if caller.is_admin:
        return
    denied = PermissionDeniedError(
        f"{caller.describe()} may not download sandbox {record.sandbox_id}"
    )
    if record.kind == SandboxKind.OUTPUT.value:
        job = await store.get_job(record.job_id)
        if job is None or not caller.is_person or not caller.may_see(job):
            raise denied
        return
    if caller.is_person:
        if record.owner != caller.subject:
            raise denied
        return
    job = await store.get_job(caller.job_id) if caller.job_id else None
    if job is None or decode_spec(job.spec, job.job_id).input_sandbox != record.sandbox_id:
        raise denied


async def download_sandbox(
    store: Store, sandboxes: SandboxStore, caller: Caller, sandbox_id: str
) -> AsyncIterator[bytes]:
    """The sandbox's chunks; NotFoundError before the first chunk when it does not exist."""
    try:
        path = sandboxes.open_read(sandbox_id)
    except InvalidSandboxIdError as exc:
        raise InvalidArgumentError(str(exc)) from exc
    record = await store.get_sandbox(sandbox_id)
    if path is None or record is None:
        raise NotFoundError(f"sandbox {sandbox_id} not found")
    await _check_download(store, caller, record)
    return _chunks(sandboxes, sandbox_id)


async def _chunks(sandboxes: SandboxStore, sandbox_id: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in sandboxes.iter_chunks(sandbox_id):
            yield chunk
    except SandboxNotFoundError as exc:
        raise NotFoundError(str(exc)) from exc
