"""`gridpilot admin ...`: operator views of pilots and storage elements, SE bans, and the
security actions of a running central (revocation, site and user bans, draining pilots,
service tokens). Every call carries the operator's token (an admin's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from central.models.pilot_states import PilotState
from gridpilot.channel import write_token_file
from gridpilot.cli.common import (
    EXIT_OK,
    CliError,
    UsageError,
    console,
    run_command,
    split_names,
)
from gridpilot.cli.tables import (
    pilot_summary_line,
    pilot_to_dict,
    pilots_table,
    queue_to_dict,
    queues_table,
    se_table,
    se_to_dict,
)
from gridpilot.client import CentralClient
from gridpilot.client_settings import ClientSettings, format_epoch
from gridpilot.enums import pilot_state_to_proto
from gridpilot.v1 import admin_pb2, auth_pb2, data_pb2, sitedirectors_pb2


def _client(args: argparse.Namespace) -> CentralClient:
    return CentralClient(ClientSettings.resolve(args.central, token_file=args.token_file))


def parse_pilot_state(text: str) -> PilotState:
    for state in PilotState:
        if state.value.lower() == text.strip().lower():
            return state
    choices = ", ".join(s.value for s in PilotState)
    raise UsageError(f"unknown pilot state {text!r} (choose from {choices})")


def _pilots(args: argparse.Namespace) -> int:
    states = [parse_pilot_state(s) for s in split_names(args.status)]
    if args.limit < 0:
        raise UsageError(f"--limit must not be negative, got {args.limit}")
    request = sitedirectors_pb2.ListPilotsRequest(
        site=args.site,
        queue=args.queue,
        states=[pilot_state_to_proto(s) for s in states],
        limit=args.limit,
    )
    with _client(args) as client:
        response: sitedirectors_pb2.ListPilotsResponse = client.call(
            client.site_directors.ListPilots, request
        )
    pilots = list(response.pilots)
    if args.json:
        print(json.dumps([pilot_to_dict(p) for p in pilots], indent=2))
        return EXIT_OK
    out = console()
    if pilots:
        out.print(pilots_table(pilots))
    out.print(pilot_summary_line(pilots))
    return EXIT_OK


def _pilot_log(args: argparse.Namespace) -> int:
    request = sitedirectors_pb2.ListPilotsRequest(pilot_id=args.pilot_id)
    with _client(args) as client:
        response: sitedirectors_pb2.ListPilotsResponse = client.call(
            client.site_directors.ListPilots, request
        )
    found = list(response.pilots)
    if not found:
        raise CliError(f"no pilot {args.pilot_id!r} (see `gridpilot admin pilots`)")
    pilot = found[0]
    if args.json:
        print(json.dumps(pilot_to_dict(pilot), indent=2))
        return EXIT_OK
    if not pilot.log_tail:
        print(f"pilot {pilot.pilot_id}: no log kept ({pilot.status_reason or 'none fetched'})")
        return EXIT_OK
    print(pilot.log_tail, end="" if pilot.log_tail.endswith("\n") else "\n")
    return EXIT_OK


def _queues(args: argparse.Namespace) -> int:
    request = sitedirectors_pb2.ListQueuesRequest(site=args.site, director=args.director)
    with _client(args) as client:
        response: sitedirectors_pb2.ListQueuesResponse = client.call(
            client.site_directors.ListQueues, request
        )
    queues = list(response.queues)
    if args.json:
        print(json.dumps([queue_to_dict(q) for q in queues], indent=2))
        return EXIT_OK
    out = console()
    if queues:
        out.print(queues_table(queues))
    failing = sum(q.health == sitedirectors_pb2.QUEUE_HEALTH_FAILING for q in queues)
    out.print(f"{len(queues)} queue(s), {failing} failing")
    return EXIT_OK


def _list_ses(client: CentralClient) -> list[data_pb2.StorageElement]:
    response: data_pb2.ListStorageElementsResponse = client.call(
        client.data.ListStorageElements, data_pb2.ListStorageElementsRequest()
    )
    return list(response.storage_elements)


def _ses(args: argparse.Namespace) -> int:
    with _client(args) as client:
        ses = _list_ses(client)
    if args.json:
        print(json.dumps([se_to_dict(se) for se in ses], indent=2))
        return EXIT_OK
    out = console()
    if ses:
        out.print(se_table(ses))
    unreadable = sum(not se.readable for se in ses)
    unwritable = sum(not se.writable for se in ses)
    out.print(
        f"{len(ses)} storage element(s), {unreadable} not readable, {unwritable} not writable"
    )
    return EXIT_OK


def _se_status(args: argparse.Namespace) -> int:
    if args.read is None and args.write is None:
        raise UsageError("say what to change: --read/--no-read and/or --write/--no-write")
    with _client(args) as client:
        # The RPC sets both flags; keep the one the operator did not mention as it is.
        current = next((se for se in _list_ses(client) if se.name == args.name), None)
        if current is None:
            raise CliError(f"unknown storage element {args.name!r}")
        read = current.read_allowed if args.read is None else args.read
        write = current.write_allowed if args.write is None else args.write
        client.call(
            client.data.SetStorageElementStatus,
            data_pb2.SetStorageElementStatusRequest(
                name=args.name, read_allowed=read, write_allowed=write
            ),
        )
    print(
        f"{args.name}: read {'allowed' if read else 'banned'}, "
        f"write {'allowed' if write else 'banned'}"
    )
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    kinds = [
        ("jti", args.jti),
        ("user", args.user),
        ("pilot_id", args.pilot),
        ("site_director", args.site_director),
    ]
    kind, value = next((k, v) for k, v in kinds if v)
    request = admin_pb2.RevokeRequest(reason=args.reason, **{kind: value})
    with _client(args) as client:
        client.call(client.admin.Revoke, request)
    print(f"revoked {kind.removesuffix('_id')} {value}: its tokens are refused from now on")
    return EXIT_OK


def _revocations(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response: admin_pb2.ListRevocationsResponse = client.call(
            client.admin.ListRevocations, admin_pb2.ListRevocationsRequest()
        )
    revoked = list(response.revocations)
    if args.json:
        rows = [
            {"kind": r.kind, "value": r.value, "reason": r.reason, "created": r.created_unix}
            for r in revoked
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in revoked:
        reason = f" ({r.reason})" if r.reason else ""
        print(f"{format_epoch(r.created_unix)}  {r.kind:<13} {r.value}{reason}")
    print(f"{len(revoked)} revocation(s)")
    return EXIT_OK


def _ban(args: argparse.Namespace) -> int:
    banned = not args.unban
    what = args.admin_command.removeprefix("ban-")
    with _client(args) as client:
        if what == "site":
            client.call(
                client.admin.SetSiteBanned,
                admin_pb2.SetSiteBannedRequest(site=args.name, banned=banned, reason=args.reason),
            )
        else:
            client.call(
                client.admin.SetUserBanned,
                admin_pb2.SetUserBannedRequest(user=args.name, banned=banned, reason=args.reason),
            )
    print(f"{what} {args.name} {'banned' if banned else 'no longer banned'}")
    return EXIT_OK


def _drain(args: argparse.Namespace) -> int:
    request = admin_pb2.DrainPilotsRequest(pilot_ids=args.pilot or [], site=args.site or "")
    with _client(args) as client:
        response: admin_pb2.DrainPilotsResponse = client.call(client.admin.DrainPilots, request)
    drained = list(response.drained)
    for pilot_id in drained:
        print(pilot_id)
    print(f"{len(drained)} pilot(s) told to drain")
    return EXIT_OK


def _service_token(args: argparse.Namespace) -> int:
    sites = split_names([args.sites])
    if args.role == "site_director" and not sites:
        raise UsageError("a site director token needs --sites A,B")
    if args.lifetime < 0:
        raise UsageError("--lifetime must not be negative")
    request = auth_pb2.IssueServiceTokenRequest(
        subject=args.subject,
        role=args.role,
        group=args.group,
        sites=sites,
        lifetime=args.lifetime,
    )
    with _client(args) as client:
        response: auth_pb2.IssueServiceTokenResponse = client.call(
            client.auth.IssueServiceToken, request
        )
    if args.out is None:
        print(response.token)
        return EXIT_OK
    out: Path = args.out
    write_token_file(out, response.token)
    print(
        f"{args.role} token for {args.subject} (id {response.jti}) valid until "
        f"{format_epoch(response.expires_unix)}, written to {out}"
    )
    return EXIT_OK


_ACTIONS = {
    "pilots": _pilots,
    "pilot-log": _pilot_log,
    "queues": _queues,
    "se": _ses,
    "se-status": _se_status,
    "revoke": _revoke,
    "revocations": _revocations,
    "ban-site": _ban,
    "ban-user": _ban,
    "drain": _drain,
    "service-token": _service_token,
}


def run(args: argparse.Namespace) -> int:
    """Run the parsed `gridpilot admin ACTION` (the parser lives in gridpilot.cli.main)."""
    action = _ACTIONS[args.admin_command]
    return run_command(f"gridpilot admin {args.admin_command}", lambda: action(args))
