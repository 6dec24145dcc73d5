"""Dataset look-ups shared by gbasf2 (input files) and the gb2_ds_* commands."""

from __future__ import annotations

from collections.abc import Sequence

from gridpilot.cli.common import CliError
from gridpilot.client import CentralClient
from gridpilot.client_errors import CentralRequestError
from gridpilot.v1 import data_pb2


def list_dataset(client: CentralClient, lpn: str) -> list[data_pb2.FileReplicas]:
    """The dataset's files; CliError when central refuses or the dataset is unknown or empty."""
    try:
        response: data_pb2.ListDatasetResponse = client.call(
            client.data.ListDataset, data_pb2.ListDatasetRequest(lpn=lpn)
        )
    except CentralRequestError as exc:
        raise CliError(f"cannot list dataset {lpn}: {exc}") from exc
    if not response.files:
        raise CliError(f"dataset {lpn} is unknown or empty")
    return list(response.files)


# GetReplicas requests stay small however many files are asked about.
REPLICA_BATCH = 1000


def get_replicas(
    client: CentralClient, lfns: Sequence[str], site: str = ""
) -> list[data_pb2.FileReplicas]:
    """The catalog's answer for each known LFN (unknown ones are left out), replicas ordered
    best first for `site` (catalog order without one), skipped copies with their reason."""
    found: list[data_pb2.FileReplicas] = []
    for start in range(0, len(lfns), REPLICA_BATCH):
        response: data_pb2.GetReplicasResponse = client.call(
            client.data.GetReplicas,
            data_pb2.GetReplicasRequest(lfns=lfns[start : start + REPLICA_BATCH], site=site),
        )
        found.extend(response.files)
    return found
