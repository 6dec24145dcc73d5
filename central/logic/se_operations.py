"""Blocking operations on storage elements that central's data requests are made of.

Each one is safe to repeat after a crash or a failed attempt: a replication finds a verified
destination copy and stops, a deletion of a copy already gone succeeds. Async callers run them
in a thread.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from gridpilot.logs import get_logger
from wrapper.se import SEFileNotFoundError, StorageError, open_storage

log = get_logger(__name__)


class ReplicationError(Exception):
    """One attempt of a request failed; it will be retried (or fail for good)."""


def copy_problem(se_url: str, lfn: str, size: int, adler32: str) -> str:
    """What is wrong with the copy of `lfn` on the SE ("" when it matches the catalog);
    SEFileNotFoundError when there is no copy."""
    storage = open_storage(se_url)
    try:
        got_size = storage.stat(lfn)
        if got_size != size:
            return f"size {got_size} != catalog size {size}"
        got_sum = storage.checksum(lfn)
        if got_sum != adler32.lower():
            return f"adler32 {got_sum} != catalog adler32 {adler32.lower()}"
        return ""
    finally:
        storage.close()


def has_verified_copy(se_url: str, lfn: str, size: int, adler32: str) -> bool:
    try:
        return copy_problem(se_url, lfn, size, adler32) == ""
    except SEFileNotFoundError:
        return False


def replicate(source_url: str, target_url: str, lfn: str, size: int, adler32: str) -> None:
    """Copy one file between SEs through a temporary file and verify the target copy."""
    if has_verified_copy(target_url, lfn, size, adler32):
        return
    source, target = open_storage(source_url), open_storage(target_url)
    try:
        with tempfile.TemporaryDirectory(prefix="gridpilot-replicate-") as tmp:
            local = Path(tmp) / "file"
            source.download(lfn, local)
            target.upload(local, lfn)
        problem = copy_problem(target_url, lfn, size, adler32)
        if problem:
            try:
                target.delete(lfn)
            except StorageError:
                log.warning("replication.bad_copy_left", lfn=lfn, se_url=target_url)
            raise ReplicationError(f"{lfn}: the copy on {target_url} does not verify: {problem}")
    finally:
        source.close()
        target.close()


def delete_copy(se_url: str, lfn: str) -> None:
    """Delete the SE's copy; already gone means an earlier attempt got this far."""
    storage = open_storage(se_url)
    try:
        with contextlib.suppress(SEFileNotFoundError):
            storage.delete(lfn)
    finally:
        storage.close()
