"""`gridpilot admin ...`: operator views of pilots and storage elements, and SE bans."""

from __future__ import annotations

import argparse
import json

from central.models.pilot_states import PilotState
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
    se_table,
    se_to_dict,
)
from gridpilot.client import CentralClient, ClientSettings
from gridpilot.enums import pilot_state_to_proto
from gridpilot.v1 import data_pb2, sitedirectors_pb2


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
    with CentralClient(ClientSettings.resolve(args.central)) as client:
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


def _list_ses(client: CentralClient) -> list[data_pb2.StorageElement]:
    response: data_pb2.ListStorageElementsResponse = client.call(
        client.data.ListStorageElements, data_pb2.ListStorageElementsRequest()
    )
    return list(response.storage_elements)


def _ses(args: argparse.Namespace) -> int:
    with CentralClient(ClientSettings.resolve(args.central)) as client:
        ses = _list_ses(client)
    if args.json:
        print(json.dumps([se_to_dict(se) for se in ses], indent=2))
        return EXIT_OK
    out = console()
    if ses:
        out.print(se_table(ses))
    out.print(f"{len(ses)} storage element(s)")
    return EXIT_OK


def _se_status(args: argparse.Namespace) -> int:
    if args.read is None and args.write is None:
        raise UsageError("say what to change: --read/--no-read and/or --write/--no-write")
    with CentralClient(ClientSettings.resolve(args.central)) as client:
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


_ACTIONS = {"pilots": _pilots, "se": _ses, "se-status": _se_status}


def run(args: argparse.Namespace) -> int:
    """Run the parsed `gridpilot admin ACTION` (the parser lives in gridpilot.cli.main)."""
    action = _ACTIONS[args.admin_command]
    return run_command(f"gridpilot admin {args.admin_command}", lambda: action(args))
