"""gb2_proxy_init / gb2_login and gb2_proxy_info: get a token from central, and look at it.

    gb2_proxy_init -g belle_user [--lifetime HOURS]     # with the user certificate (mutual TLS)
    gb2_proxy_init -g belle_user --iam-token FILE       # with the collaboration IAM's token
    gb2_proxy_info [--json]

The user proves who they are with (in this order) an external IAM token given with
--iam-token, their certificate (GRIDPILOT_CERT/GRIDPILOT_KEY, `cert`/`key` in client.toml, or
~/.globus/usercert.pem) on central's login port, or a still-valid token (renewal). The token
is stored in GRIDPILOT_TOKEN_FILE (default ~/.config/gridpilot/token) with mode 0600, and
every other command uses it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from gridpilot.channel import TokenFileError, read_token_file, write_token_file
from gridpilot.cli.common import (
    EXIT_OK,
    CliError,
    add_central_option,
    make_parser,
    run_command,
)
from gridpilot.client import CentralClient
from gridpilot.client_errors import CentralRequestError, ClientError
from gridpilot.client_settings import (
    ClientSettings,
    TokenInfo,
    format_epoch,
    load_token,
    resolve_central,
    resolve_login,
    resolve_timeout,
    resolve_user_cert,
    token_file_path,
    transport,
)
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import auth_pb2

# A login that hangs is worse than one that says central is down.
INFO_TIMEOUT = 5.0


def format_time_left(seconds: float) -> str:
    """Like voms-proxy-info: hours:minutes:seconds (hours may exceed 24)."""
    whole = int(seconds)
    return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _add_token_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="where the token is kept (default: $GRIDPILOT_TOKEN_FILE, then "
        "~/.config/gridpilot/token)",
    )


# ---- gb2_proxy_init / gb2_login ----------------------------------------------------------------


def _init_parser(prog: str) -> argparse.ArgumentParser:
    parser = make_parser(prog, "Log in: get a token from central for one of your groups.")
    parser.add_argument(
        "-g", "--group", default="", help="group to act in, e.g. belle_user (default: your first)"
    )
    parser.add_argument(
        "--lifetime", type=float, default=0.0, metavar="HOURS", help="requested validity"
    )
    parser.add_argument(
        "--iam-token", type=Path, default=None, metavar="FILE", help="log in with an IAM token"
    )
    parser.add_argument(
        "--login",
        metavar="HOST:PORT",
        help="central's login port for certificate login (default: $GRIDPILOT_LOGIN, then "
        "client.toml)",
    )
    _add_token_file_option(parser)
    add_central_option(parser)
    return parser


def _issue(
    target: str, tls: ClientTls | None, bearer: str, request: auth_pb2.IssueTokenRequest
) -> auth_pb2.IssueTokenResponse:
    settings = ClientSettings(central=target, token=bearer, tls=tls, timeout=resolve_timeout())
    with CentralClient(settings) as client:
        response: auth_pb2.IssueTokenResponse = client.call(client.auth.IssueToken, request)
    return response


def _proxy_init(prog: str, argv: list[str] | None) -> int:
    args = _init_parser(prog).parse_args(argv)
    if args.lifetime < 0:
        raise CliError("--lifetime must not be negative")
    request = auth_pb2.IssueTokenRequest(group=args.group, lifetime=args.lifetime * 3600)
    path = token_file_path(args.token_file)
    if args.iam_token is not None:
        try:
            iam_token = read_token_file(args.iam_token)
        except TokenFileError as exc:
            raise CliError(str(exc)) from exc
        target, tls, bearer = resolve_central(args.central), transport(), iam_token
        how = "IAM token"
    elif (cert := resolve_user_cert()) is not None:
        # The certificate is the credential: no token on the login port.
        target, tls, bearer = resolve_login(args.login), transport(cert), ""
        how = f"certificate {cert[0]}"
    else:
        try:
            current, _info = load_token(path)
        except ClientError as exc:
            raise CliError(
                "no credential to log in with: configure your user certificate "
                "(GRIDPILOT_CERT and GRIDPILOT_KEY, or cert/key in client.toml) or pass "
                f"--iam-token FILE ({exc})"
            ) from exc
        target, tls, bearer = resolve_central(args.central), transport(), current
        how = "current token (renewal)"
    response = _issue(target, tls, bearer, request)
    write_token_file(path, response.token)
    print(
        f"Token for {response.subject} (group {response.group}, role {response.role}) "
        f"obtained with your {how}"
    )
    left = max(0.0, response.expires_unix - time.time())
    print(f"valid until {format_epoch(response.expires_unix)} ({format_time_left(left)} left)")
    print(f"stored in {path}")
    return EXIT_OK


def proxy_init_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_proxy_init", lambda: _proxy_init("gb2_proxy_init", argv))


def login_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_login", lambda: _proxy_init("gb2_login", argv))


# ---- gb2_proxy_info ----------------------------------------------------------------------------


def _verify_with_central(central: str | None, token: str) -> tuple[str, CentralRequestError | None]:
    """What central says about the token: a note for the output, and a refusal if any."""
    try:
        target = resolve_central(central)
        settings = ClientSettings(
            central=target,
            token=token,
            tls=transport(),
            timeout=min(INFO_TIMEOUT, resolve_timeout()),
        )
        with CentralClient(settings) as client:
            client.call(client.auth.WhoAmI, auth_pb2.WhoAmIRequest())
    except CentralRequestError as exc:
        return f"REFUSED by central at {target}", exc
    except ClientError as exc:
        return f"not checked ({exc})", None
    return f"accepted by central at {target}", None


def _info_lines(info: TokenInfo, path: Path, central_note: str) -> list[str]:
    left = "expired" if info.expired() else format_time_left(info.seconds_left())
    lines = [
        f"subject   : {info.subject}",
        f"group     : {info.group or '-'}",
        f"role      : {info.role}",
        f"VO        : {info.vo}",
    ]
    if info.sites:
        lines.append(f"sites     : {', '.join(info.sites)}")
    lines += [
        f"issuer    : {info.issuer}",
        f"token id  : {info.jti}",
        f"expires   : {format_epoch(info.expires)}",
        f"timeleft  : {left}",
        f"file      : {path}",
        f"central   : {central_note}",
    ]
    return lines


def _proxy_info(argv: list[str] | None) -> int:
    parser = make_parser("gb2_proxy_info", "Show who your token says you are, and for how long.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    _add_token_file_option(parser)
    add_central_option(parser)
    args = parser.parse_args(argv)
    path = token_file_path(args.token_file)
    token, info = load_token(path, allow_expired=True)
    refused: CentralRequestError | None = None
    if info.expired():
        note = "not checked (expired)"
    else:
        note, refused = _verify_with_central(args.central, token)
    if args.json:
        data = {
            **asdict(info),
            "sites": list(info.sites),
            "seconds_left": int(info.seconds_left()),
            "expired": info.expired(),
            "token_file": str(path),
            "central": note,
        }
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(_info_lines(info, path, note)))
    if info.expired():
        group = f" -g {info.group}" if info.group else ""
        raise CliError(
            f"your token expired at {format_epoch(info.expires)}: run gb2_proxy_init{group}"
        )
    if refused is not None:
        raise CliError(str(refused))
    return EXIT_OK


def proxy_info_main(argv: list[str] | None = None) -> int:
    return run_command("gb2_proxy_info", lambda: _proxy_info(argv))


if __name__ == "__main__":
    sys.exit(proxy_init_main())
