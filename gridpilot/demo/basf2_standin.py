"""A STAND-IN for basf2, used by the demo and the tests. It is not the Belle II software.

It behaves enough like basf2 for the wrapper to be exercised for real:

    basf2 STEERING [-i INPUT]... [-o OUTPUT] [-n EVENTS]

checks that the steering file exists (else exits 1 with a basf2-like fatal error), reads every
input file fully, prints "[INFO] Processed event N" progress lines, writes OUTPUT (default
output.root) whose content is derived from the steering file, the inputs and the event count,
and exits 0. The steering file is checksummed, never executed.

Options that only the stand-in has, for tests and the demo:

    --standin-seconds S     spread the event loop over S seconds (sleeping between events)
    --standin-exit-code N   end with exit code N (and write no output) after the event loop
    --standin-rss-mb M      allocate and touch M MB for the whole run

Options real basf2 has but the stand-in does not know are reported and ignored.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

OUTPUT_MAGIC = "GRIDPILOT-BASF2-STANDIN-OUTPUT 1"
DEFAULT_EVENTS = 100
_CHUNK = 1 << 20
_PAGE = 4096


@dataclass(frozen=True)
class InputSummary:
    name: str
    size: int
    adler32: str


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="basf2", description="Stand-in for basf2 (gridpilot demo; not the real software)."
    )
    parser.add_argument("steering", help="steering file")
    parser.add_argument("-i", "--input", action="append", default=[], help="input file")
    parser.add_argument("-o", "--output", default="output.root", help="output file")
    parser.add_argument("-n", "--events", type=int, default=None, help="number of events")
    parser.add_argument("--standin-seconds", type=float, default=0.0)
    parser.add_argument("--standin-exit-code", type=int, default=0)
    parser.add_argument("--standin-rss-mb", type=int, default=0)
    return parser.parse_known_args(argv)


def summarize_file(path: Path) -> InputSummary:
    """Read the whole file (as basf2 would) and return its size and adler32."""
    value, size = 1, 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            value = zlib.adler32(chunk, value)
            size += len(chunk)
    return InputSummary(name=path.name, size=size, adler32=f"{value & 0xFFFFFFFF:08x}")


def render_output(steering: InputSummary, inputs: list[InputSummary], events: int) -> bytes:
    """The output file's content: deterministic, so tests can predict it."""
    lines = [
        OUTPUT_MAGIC,
        f"steering {steering.name} {steering.adler32}",
        *(f"input {s.name} {s.size} {s.adler32}" for s in inputs),
        f"events {events}",
    ]
    seed = zlib.adler32("\n".join(lines).encode())
    for event in range(events):
        seed = zlib.adler32(f"{event}:{seed}".encode(), seed)
        lines.append(f"event {event} {seed & 0xFFFFFFFF:08x}")
    return ("\n".join(lines) + "\n").encode()


def _touch_memory(megabytes: int) -> bytearray:
    block = bytearray(megabytes * 1024 * 1024)
    # A fresh bytearray may be backed by untouched zero pages; write one byte per page.
    for offset in range(0, len(block), _PAGE):
        block[offset] = 1
    return block


def main(argv: list[str] | None = None) -> int:
    args, unknown = _parse(sys.argv[1:] if argv is None else argv)
    if unknown:
        print(f"[WARNING] basf2 stand-in ignores options: {' '.join(unknown)}", flush=True)
    steering_path = Path(args.steering)
    if not steering_path.is_file():
        print(f"[FATAL] Could not find steering file: {args.steering}", file=sys.stderr)
        return 1
    ballast = _touch_memory(args.standin_rss_mb) if args.standin_rss_mb > 0 else bytearray()
    steering = summarize_file(steering_path)
    inputs: list[InputSummary] = []
    for name in args.input:
        try:
            inputs.append(summarize_file(Path(name)))
        except OSError as exc:
            print(f"[FATAL] Could not open input file {name}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"[INFO] Opened input file {name} ({inputs[-1].size} bytes)", flush=True)
    events = args.events if args.events is not None else DEFAULT_EVENTS
    if events < 0:
        print(f"[FATAL] Invalid number of events: {events}", file=sys.stderr)
        return 1
    pause = args.standin_seconds / events if events else args.standin_seconds
    step = max(1, events // 100)
    print(f"[INFO] Starting event processing ({events} events)", flush=True)
    if events == 0 and pause > 0:
        time.sleep(pause)
    for event in range(1, events + 1):
        if pause > 0:
            time.sleep(pause)
        if event % step == 0 or event == events:
            print(f"[INFO] Processed event {event}", flush=True)
    del ballast
    if args.standin_exit_code != 0:
        print(
            f"[ERROR] stand-in asked to fail with exit code {args.standin_exit_code}",
            file=sys.stderr,
        )
        return int(args.standin_exit_code)
    Path(args.output).write_bytes(render_output(steering, inputs, events))
    print(f"[INFO] Wrote {args.output}", flush=True)
    print("[INFO] basf2 stand-in finished successfully", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
