"""`python -m central serve --config FILE [--listen HOST:PORT] [--data-dir DIR] [--port-file F]
[--insecure]`.

The port file holds "host:port" of the main port on its first line and, when central serves a
mutual-TLS login port, "login host:port" on the second (readers take the first line).

SIGHUP re-reads the configuration file and applies its [matcher] section (fair share, running
limits, matching delays) without a restart; an invalid file is refused with a log line and the
policy in force stays. Every other section needs a restart.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for a bad configuration or command
line, 1 when central cannot start (port taken, data directory unusable...).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sqlite3
import sys
from pathlib import Path

import msgspec
import uvloop

from central.config import CentralConfig, ConfigError, check_serving, load_config
from central.process import write_port_file
from central.server import DEFAULT_GRACE_SECONDS, Central, RunningCentral, serving
from gridpilot.logs import configure_logging, get_logger

log = get_logger("central.main")

PROG = "gridpilot-central"

# CPython collects its youngest generation every 700 net allocations. Under load most young
# objects are in-flight RPCs (coroutines, futures, messages) that would die a few ms later:
# collected that often they survive, get promoted, and force full collections of the whole
# heap every second or so (150-300 ms pauses with a million waiting jobs: the matcher
# benchmark's p99). 10,000 lets them die young first (docs/benchmarks.md).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def freeze_startup_heap() -> None:
    """Once serving: what startup built (modules, configuration, the matcher's task queues)
    lives as long as the process; full collections need not walk it again."""
    gc.collect()
    gc.freeze()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="gridpilot central service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run central until SIGTERM/SIGINT")
    serve.add_argument("--config", required=True, type=Path, help="central TOML configuration")
    serve.add_argument("--listen", help="HOST:PORT to listen on (overrides central.listen)")
    serve.add_argument("--data-dir", type=Path, help="data directory (overrides central.data_dir)")
    serve.add_argument(
        "--port-file",
        type=Path,
        help='write "host:port" here (atomically) once serving',
    )
    serve.add_argument(
        "--grace", type=float, default=DEFAULT_GRACE_SECONDS, help="seconds to drain on stop"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve plaintext WITHOUT TLS (tests and laptops only; logs a warning)",
    )
    return parser


def _with_overrides(
    config: CentralConfig, listen: str | None, data_dir: Path | None, insecure: bool = False
) -> CentralConfig:
    if insecure:
        security = msgspec.structs.replace(config.security, insecure=True)
        config = msgspec.structs.replace(config, security=security)
    central = config.central
    if listen:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"--listen {listen!r} is not HOST:PORT")
        central = msgspec.structs.replace(central, listen=listen)
    if data_dir is not None:
        central = msgspec.structs.replace(central, data_dir=str(data_dir))
    return msgspec.structs.replace(config, central=central)


def _local_host(listen: str) -> str:
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: the port file names the local address
    if ":" in host:
        host = f"[{host}]"
    return host


async def reload_matcher_policy(central: Central, config_path: Path) -> bool:
    """SIGHUP: apply the file's [matcher] section if the whole file is valid; False if refused."""
    try:
        # Off the event loop: reading a file may block.
        fresh = await asyncio.to_thread(load_config, config_path)
    except ConfigError as exc:
        log.error("central.reload_refused", path=str(config_path), error=str(exc))
        return False
    try:
        central.reload_matcher(fresh.matcher)
    except ValueError as exc:  # the matcher refused the policy: the old one stays
        log.error("central.reload_refused", path=str(config_path), error=str(exc))
        return False
    log.info("central.reloaded", path=str(config_path), section="matcher")
    return True


async def serve(
    config: CentralConfig, port_file: Path | None, grace: float, config_path: Path | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running: RunningCentral | None = None
    reloads: set[asyncio.Task[bool]] = set()

    def on_hangup() -> None:
        if config_path is None:
            log.warning("central.reload_ignored", reason="no configuration file")
            return
        if running is None:
            log.warning("central.reload_ignored", reason="central is not serving")
            return
        task = asyncio.create_task(reload_matcher_policy(running.central, config_path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Before starting: SIGHUP's default action would end the process.
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        async with serving(config, grace=grace) as started:
            running = started
            host = _local_host(config.central.listen)
            login = started.login_port
            login_address = (
                f"{_local_host(config.security.login_listen)}:{login}"
                if login is not None
                else None
            )
            freeze_startup_heap()
            if port_file is not None:
                write_port_file(port_file, host, started.port, login_address)
            log.info(
                "central.serving",
                host=host,
                port=started.port,
                login=login_address or "",
                tls=not config.security.insecure,
                pid=os.getpid(),
            )
            await stop.wait()
            log.info("central.stopping", grace=grace)
            running = None
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _with_overrides(
            load_config(args.config), args.listen, args.data_dir, args.insecure
        )
        check_serving(config)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.central.log_level)
    tune_gc()
    try:
        uvloop.run(serve(config, args.port_file, args.grace, args.config))
    except (OSError, RuntimeError, ValueError, sqlite3.Error) as exc:
        print(f"{PROG}: error: cannot run central: {exc}", file=sys.stderr)
        return 1
    return 0
