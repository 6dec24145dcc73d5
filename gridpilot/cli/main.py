"""`gridpilot`: the umbrella command for operators.

    gridpilot central serve --config central.toml
    gridpilot pilot ...            gridpilot sitedirector ...       gridpilot demo ...
    gridpilot bench matcher [--quick] [--json] [--jobs N] ...   (docs/benchmarks.md)
    gridpilot admin pilots [--site S] [--status S] [--json]
    gridpilot admin pilot-log PILOT_ID             gridpilot admin queues [--json]
    gridpilot admin se [--json]
    gridpilot admin se-status NAME --no-write
    gridpilot admin revoke --jti J | --user U | --pilot P | --site-director D [--reason R]
    gridpilot admin revocations [--json]
    gridpilot admin ban-site SITE [--unban]      gridpilot admin ban-user USER [--unban]
    gridpilot admin drain --pilot ID [--pilot ID2 ...] | --site S
    gridpilot admin service-token --subject S --role site_director --sites A,B [--out FILE]
    gridpilot admin ca|cert|keys|token ...   (offline: CA, certificates, signing keys, tokens)
    gridpilot admin bundle build|verify ...  (offline: the pilot bundle, docs/pilot-bundle.md)
    gridpilot --version

Online admin commands act with the admin's token (the token file of gb2_proxy_init, or
--token-file). The components are imported only when their command runs, so `gridpilot --help`
stays fast (no grpc, no asyncio loop) and a host with only the pilot installed can still run
the pilot.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from gridpilot import __version__
from gridpilot.cli.args import EXIT_USAGE, add_central_option, make_parser

PROG = "gridpilot"

# command -> (module, what it is); the module's main(argv) gets everything after the command.
COMPONENTS: dict[str, tuple[str, str]] = {
    "central": ("central.main", "the central service (e.g. 'gridpilot central serve --config F')"),
    "pilot": ("pilot.main", "the worker-node pilot"),
    "sitedirector": ("sitedirectors.main", "the site director loop"),
    "demo": ("gridpilot.demo.runner", "run a local demonstration grid"),
    "bench": ("gridpilot.bench.main", "benchmarks (e.g. 'gridpilot bench matcher --quick')"),
}


# `gridpilot admin <one of these>` works on local files only: gridpilot.cli.security_admin.
SECURITY_ACTIONS: dict[str, str] = {
    "ca": "create the certificate authority (offline)",
    "cert": "issue server and client certificates (offline)",
    "keys": "show, rotate or prune the token-signing keys (offline)",
    "token": "issue a signed token, e.g. the first admin's (offline)",
}
# `gridpilot admin bundle build|verify`: the pilot bundle, local files only (gridpilot.cli.bundle).
BUNDLE_ACTION = "bundle"


def _load_main(command: str) -> Callable[[list[str]], int | None]:
    module_name = COMPONENTS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing component is "not available"; a broken import inside it is a bug.
        missing = exc.name or ""
        if not missing or not (module_name + ".").startswith(missing + "."):
            raise
        raise _Unavailable(f"'{PROG} {command}' is not available here ({exc})") from exc
    return cast(Callable[[list[str]], int | None], module.main)


class _Unavailable(Exception):
    pass


def _run_component(command: str, rest: list[str]) -> int:
    try:
        component_main = _load_main(command)
    except _Unavailable as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    try:
        code = component_main(rest)
    except SystemExit as exc:
        # Components may exit through argparse (--help, usage errors); callers want a code.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return int(code or 0)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    add_central_option(parser)
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="the admin token (default: $GRIDPILOT_TOKEN_FILE, then ~/.config/gridpilot/token)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "gridpilot: pilot-based workload management.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMPONENTS.items():
        # Listed for --help only: main() hands these to the component before argparse runs.
        commands.add_parser(name, help=help_text, add_help=False)

    admin = commands.add_parser("admin", help="look at and steer a running central")
    actions = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    for name, help_text in SECURITY_ACTIONS.items():
        # Listed for --help only: main() hands these to gridpilot.cli.security_admin.
        actions.add_parser(name, help=help_text, add_help=False)
    actions.add_parser(BUNDLE_ACTION, help="build or verify the pilot bundle", add_help=False)

    pilots = actions.add_parser("pilots", help="list pilots")
    pilots.add_argument("--site", default="", help="only pilots of this site")
    pilots.add_argument("--queue", default="", help="only pilots of this queue")
    pilots.add_argument("--status", action="append", metavar="STATE", help="only these states")
    pilots.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    pilots.add_argument("--json", action="store_true", help="machine-readable output")
    _add_connection_options(pilots)

    pilot_log = actions.add_parser("pilot-log", help="the log tail central keeps of a pilot")
    pilot_log.add_argument("pilot_id", help="pilot id (from `gridpilot admin pilots`)")
    pilot_log.add_argument("--json", action="store_true", help="the whole record as JSON")
    _add_connection_options(pilot_log)

    queues = actions.add_parser("queues", help="site directors' queues and their errors")
    queues.add_argument("--site", default="", help="only queues of this site")
    queues.add_argument("--director", default="", help="only queues of this director")
    queues.add_argument("--json", action="store_true", help="machine-readable output")
    _add_connection_options(queues)

    ses = actions.add_parser("se", help="list storage elements")
    ses.add_argument("--json", action="store_true", help="machine-readable output")
    _add_connection_options(ses)

    se_status = actions.add_parser("se-status", help="allow or ban reading/writing on an SE")
    se_status.add_argument("name", help="storage element name")
    se_status.add_argument("--read", action=argparse.BooleanOptionalAction, default=None)
    se_status.add_argument("--write", action=argparse.BooleanOptionalAction, default=None)
    _add_connection_options(se_status)

    revoke = actions.add_parser("revoke", help="revoke a token, a user, a pilot or a director")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--jti", help="one token, by its id (gb2_proxy_info shows it)")
    target.add_argument("--user", help="every token of this user")
    target.add_argument("--pilot", help="a pilot's session token and its jobs' tokens")
    target.add_argument("--site-director", help="every token of this site director")
    revoke.add_argument("--reason", default="", help="recorded with the revocation")
    _add_connection_options(revoke)

    revocations = actions.add_parser("revocations", help="list revocations")
    revocations.add_argument("--json", action="store_true", help="machine-readable output")
    _add_connection_options(revocations)

    for what in ("site", "user"):
        ban = actions.add_parser(f"ban-{what}", help=f"ban a {what} (or lift the ban)")
        ban.add_argument("name", metavar=what.upper(), help=f"the {what}'s name")
        ban.add_argument("--unban", action="store_true", help="lift the ban")
        ban.add_argument("--reason", default="", help="recorded with the ban")
        _add_connection_options(ban)

    drain = actions.add_parser("drain", help="tell pilots to take no new job")
    drain_target = drain.add_mutually_exclusive_group(required=True)
    drain_target.add_argument("--pilot", action="append", metavar="ID", help="repeatable")
    drain_target.add_argument("--site", help="every connected pilot of this site")
    _add_connection_options(drain)

    service = actions.add_parser("service-token", help="issue a token for a service identity")
    service.add_argument("--subject", required=True, help="e.g. the site director's name")
    service.add_argument("--role", required=True, choices=["site_director", "production", "admin"])
    service.add_argument("--sites", default="", help="site director: its sites, comma separated")
    service.add_argument("--group", default="", help="production/admin: the group")
    service.add_argument(
        "--lifetime", type=float, default=0.0, metavar="SECONDS", help="0: central's default"
    )
    service.add_argument("--out", type=Path, default=None, help="write the token here (0600)")
    _add_connection_options(service)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] in COMPONENTS:
        return _run_component(args_in[0], args_in[1:])
    if args_in[:1] == ["admin"] and len(args_in) > 1 and args_in[1] in SECURITY_ACTIONS:
        security_admin = importlib.import_module("gridpilot.cli.security_admin")
        return cast(int, security_admin.main(args_in[1:]))
    if args_in[:2] == ["admin", BUNDLE_ACTION]:
        bundle_cli = importlib.import_module("gridpilot.cli.bundle")
        return cast(int, bundle_cli.main(args_in[2:]))

    parser = build_parser()
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command in COMPONENTS:
        return _run_component(args.command, [])
    # grpc and rich load only now, when a command needs central.
    admin = importlib.import_module("gridpilot.cli.admin")
    return cast(int, admin.run(args))
