"""Running commands and handling files where the pilots run: the two things a batch-system or
SSH backend needs from "the submit host", behind two small interfaces.

The SLURM backend runs `sbatch`/`squeue`/`scancel` and writes start scripts; whether that
happens on the director's own host (`LocalRunner`, `LocalFiles`) or on a login node reached
over SSH (sitedirectors/ssh_session.py) is the caller's choice, so the SLURM logic exists once.
Commands are always argument lists: nothing is ever split or interpreted by a shell on the
director's side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

DEFAULT_COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line for errors: the program, its exit status and the first line it printed."""
        said = (self.stderr.strip() or self.stdout.strip()).splitlines()
        first = said[0] if said else "no output"
        return f"{self.argv[0]} exited with {self.returncode}: {first}"


class CommandError(Exception):
    """The command could not be run at all (missing program, timeout, lost connection).

    `transient` says whether trying again later may work (a timeout or a dropped
    connection) or not (the program does not exist, authentication was refused).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class CommandRunner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        stdin: bytes | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run `argv` to completion. A non-zero exit status is a result, not an error;
        raises `CommandError` only when the command could not run or finish."""
        ...


class RemoteFiles(Protocol):
    """Files on the host where pilots run. Paths are POSIX paths on that host."""

    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        """Create `path` and its parents (no error when it exists)."""
        ...

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write atomically; the file has `mode` before any content is in it."""
        ...

    def put_file(self, local: Path, path: str, mode: int = 0o644) -> None:
        """Copy a local file to `path` atomically."""
        ...

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int | None:
        """The file's size in bytes, None when it does not exist."""
        ...

    def tail(self, path: str, max_bytes: int) -> str:
        """The last `max_bytes` bytes as text, starting at a line boundary ("" if missing)."""
        ...

    def remove_tree(self, path: str) -> None:
        """Remove a file or a directory tree; a missing path is not an error."""
        ...


# ---- on the director's own host ----------------------------------------------------------------


class LocalRunner:
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        stdin: bytes | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> CommandResult:
        env = {**os.environ, **environment} if environment else None
        try:
            done = subprocess.run(
                list(argv),
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise CommandError(f"{argv[0]}: command not found", transient=False) from exc
        except PermissionError as exc:
            raise CommandError(f"{argv[0]}: {exc}", transient=False) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(f"{argv[0]} timed out after {timeout:g} s", transient=True) from exc
        return CommandResult(
            tuple(argv),
            done.returncode,
            done.stdout.decode("utf-8", errors="replace"),
            done.stderr.decode("utf-8", errors="replace"),
        )


class LocalFiles:
    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        tmp = f"{path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, local: Path, path: str, mode: int = 0o644) -> None:
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            shutil.copyfile(local, tmp)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    def tail(self, path: str, max_bytes: int) -> str:
        return tail_file(Path(path), max_bytes)

    def remove_tree(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)


def tail_text(data: bytes, total_size: int) -> str:
    """`data` (the last bytes of a file of `total_size` bytes) as text from a line boundary."""
    text = data.decode("utf-8", errors="replace")
    if len(data) < total_size and "\n" in text[:-1]:
        # Drop the cut first line so the tail starts at a line boundary (unless it is the
        # only line: a cut line beats an empty tail).
        text = text.partition("\n")[2]
    return text


def tail_file(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` bytes of a file as text ("" when it does not exist)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return ""
    return tail_text(data, size)
