"""`gridpilot admin ca|cert|keys|token ...`: offline security tasks on the central host.

    gridpilot admin ca init --dir DIR [--cn NAME]
    gridpilot admin cert issue --ca-dir DIR --out DIR --host H [--host H2 ...] [--name server]
    gridpilot admin cert issue --ca-dir DIR --out DIR --client CN
    gridpilot admin keys show|rotate|prune --data-dir DIR
    gridpilot admin token issue --data-dir DIR --sub NAME --role ROLE [--sites A,B] [--out FILE]

They work on files only (no central connection, no grpc), so an operator can create the CA,
the certificates and the first admin and site-director tokens before central ever starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gridpilot.cli.args import EXIT_ERROR, EXIT_OK, EXIT_USAGE, make_parser
from gridpilot.cli.main import SECURITY_ACTIONS
from gridpilot.security.ca import init_ca, issue_client_cert, issue_server_cert
from gridpilot.security.claims import Role
from gridpilot.security.files import PRIVATE_MODE, write_file_atomic
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer

PROG = "gridpilot admin"
KEYS_SUBDIR = "keys"
DEFAULT_ISSUER = "gridpilot"
DEFAULT_AUDIENCE = "gridpilot"
DEFAULT_TOKEN_LIFETIME = 7 * 86400


class _Failure(Exception):
    pass


def keys_directory(data_dir: Path) -> Path:
    """Where central keeps its signing keys inside its data directory."""
    return data_dir / KEYS_SUBDIR


def _format_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ca_init(args: argparse.Namespace) -> int:
    path = init_ca(args.dir, common_name=args.cn, days=args.days)
    print(f"CA created: {path} (key {args.dir / 'ca.key'}, keep it private)")
    return EXIT_OK


def _cert_issue(args: argparse.Namespace) -> int:
    if bool(args.host) == bool(args.client):
        raise _Failure("give either --host (server certificate) or --client CN, not both")
    if args.client:
        cert, key = issue_client_cert(args.ca_dir, args.out, args.client, days=args.days or 365)
    else:
        cert, key = issue_server_cert(
            args.ca_dir, args.out, list(args.host), name=args.name, days=args.days or 825
        )
    print(f"certificate: {cert}\nkey: {key}")
    return EXIT_OK


def _load_keys(data_dir: Path, *, create: bool) -> KeySet:
    directory = keys_directory(data_dir)
    if not create and not (directory / "signing-keys.json").is_file():
        raise _Failure(f"no signing keys in {directory} (central creates them at first start)")
    return KeySet.load_or_create(directory)


def _keys_show(args: argparse.Namespace) -> int:
    keyset = _load_keys(args.data_dir, create=False)
    current = keyset.current().kid
    rows = [
        {"kid": k.kid, "created": k.created, "retired": k.retired, "current": k.kid == current}
        for k in keyset.signing_keys()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'KID':<18}{'CREATED':<26}{'RETIRED':<26}")
    for row in keyset.signing_keys():
        mark = "  (current)" if row.kid == current else ""
        print(f"{row.kid:<18}{_format_time(row.created):<26}{_format_time(row.retired):<26}{mark}")
    return EXIT_OK


def _keys_rotate(args: argparse.Namespace) -> int:
    keyset = _load_keys(args.data_dir, create=True)
    key = keyset.rotate(time.time())
    print(f"new signing key {key.kid}; older keys stay valid for verification until pruned")
    return EXIT_OK


def _keys_prune(args: argparse.Namespace) -> int:
    if args.max_token_lifetime <= 0:
        raise _Failure("--max-token-lifetime must be positive")
    keyset = _load_keys(args.data_dir, create=False)
    dropped = keyset.prune(time.time(), args.max_token_lifetime)
    print(f"pruned {len(dropped)} key(s){': ' + ', '.join(dropped) if dropped else ''}")
    return EXIT_OK


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _token_issue(args: argparse.Namespace) -> int:
    keyset = _load_keys(args.data_dir, create=True)
    issuer = TokenIssuer(keyset, issuer=args.issuer, audience=args.audience)
    try:
        token, claims = issuer.issue(
            sub=args.sub,
            role=Role(args.role),
            lifetime=args.lifetime,
            group=args.group,
            vo=args.vo,
            sites=_split(args.sites),
            site=args.site,
            ce=args.ce,
            queue=args.queue,
        )
    except ValueError as exc:
        raise _Failure(str(exc)) from exc
    summary = (
        f"{claims.role.value} token for {claims.sub} (jti {claims.jti}), "
        f"expires {_format_time(claims.exp)}"
    )
    if args.out is None:
        print(token)
        print(summary, file=sys.stderr)
    else:
        write_file_atomic(args.out, (token + "\n").encode(), PRIVATE_MODE)
        print(f"{summary}; written to {args.out}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "Offline security tasks: CA, certificates, keys, tokens.")
    groups = parser.add_subparsers(dest="section", metavar="GROUP", required=True)

    ca = groups.add_parser("ca", help=SECURITY_ACTIONS["ca"]).add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    ca_init = ca.add_parser("init", help="create a new CA (refuses to overwrite one)")
    ca_init.add_argument("--dir", type=Path, required=True, help="directory for ca.pem/ca.key")
    ca_init.add_argument("--cn", default="gridpilot CA", help="the CA's common name")
    ca_init.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    ca_init.set_defaults(run=_ca_init)

    cert = groups.add_parser("cert", help=SECURITY_ACTIONS["cert"]).add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    cert_issue = cert.add_parser("issue", help="issue a server (--host) or client certificate")
    cert_issue.add_argument("--ca-dir", type=Path, required=True, help="the CA's directory")
    cert_issue.add_argument("--out", type=Path, required=True, help="output directory")
    cert_issue.add_argument(
        "--host", action="append", default=[], help="server DNS name or IP (repeatable)"
    )
    cert_issue.add_argument("--name", default="server", help="file name stem of a server cert")
    cert_issue.add_argument("--client", default="", metavar="CN", help="client certificate CN")
    cert_issue.add_argument("--days", type=int, default=0, help="validity (825 server, 365 client)")
    cert_issue.set_defaults(run=_cert_issue)

    keys = groups.add_parser("keys", help=SECURITY_ACTIONS["keys"]).add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    for name, help_text, run in (
        ("show", "list the signing keys", _keys_show),
        ("rotate", "start signing with a new key", _keys_rotate),
        ("prune", "drop keys retired longer than the longest token lifetime", _keys_prune),
    ):
        action = keys.add_parser(name, help=help_text)
        action.add_argument("--data-dir", type=Path, required=True, help="central's data dir")
        action.set_defaults(run=run)
        if name == "show":
            action.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "prune":
            action.add_argument(
                "--max-token-lifetime", type=float, required=True, metavar="SECONDS"
            )

    token = groups.add_parser("token", help=SECURITY_ACTIONS["token"]).add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    issue = token.add_parser("issue", help="issue a token signed with central's current key")
    issue.add_argument("--data-dir", type=Path, required=True, help="central's data directory")
    issue.add_argument("--sub", required=True, help="subject: user name or service name")
    issue.add_argument("--role", required=True, choices=[role.value for role in Role])
    issue.add_argument("--group", default="", help="gridpilot group, e.g. belle_admin")
    issue.add_argument("--vo", default="belle")
    issue.add_argument("--sites", default="", help="site director: sites, comma-separated")
    issue.add_argument("--site", default="", help="pilot registration: the site")
    issue.add_argument("--ce", default="", help="pilot registration: the computing element")
    issue.add_argument("--queue", default="", help="pilot registration: the queue")
    issue.add_argument("--lifetime", type=float, default=DEFAULT_TOKEN_LIFETIME, metavar="SECONDS")
    issue.add_argument("--issuer", default=DEFAULT_ISSUER, help="must match central's issuer")
    issue.add_argument("--audience", default=DEFAULT_AUDIENCE, help="must match central's")
    issue.add_argument("--out", type=Path, help="write the token to this file (0600)")
    issue.set_defaults(run=_token_issue)
    return parser


def main(argv: list[str]) -> int:
    """Run `gridpilot admin GROUP ACTION ...` (argv starts at GROUP)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (_Failure, OSError, ValueError, RuntimeError) as exc:
        print(f"{PROG} {args.section} {args.action}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
