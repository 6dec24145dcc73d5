"""How a step ends a job early: with a report (`JobFailure`) or without (`AbortWithoutReport`)."""

from __future__ import annotations

from gridpilot.v1 import common_pb2, pilots_pb2

ExitCategory = common_pb2.ExitCategory


class JobFailure(Exception):
    """The attempt failed in a way the final report should name (category + message)."""

    def __init__(
        self,
        category: common_pb2.ExitCategory.ValueType,
        message: str,
        exit_code: int = 0,
        outputs: list[pilots_pb2.OutputFile] | None = None,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.exit_code = exit_code
        # Outputs already stored before the failure, so central still learns where they are.
        self.outputs = list(outputs or [])

    @property
    def category_name(self) -> str:
        return common_pb2.ExitCategory.Name(self.category)


class AbortWithoutReport(Exception):
    """Stop now and report nothing: the pilot (or central's stall handling) owns the outcome."""


class ParentGone(AbortWithoutReport):
    """The pilot that started this wrapper is gone."""


class Terminated(AbortWithoutReport):
    """The wrapper received SIGTERM/SIGINT (the pilot kills jobs that way and reports them)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received signal {signum}")
        self.signum = signum
