"""The pilot: runs on a worker node, registers, pulls jobs, runs wrappers, streams heartbeats."""

from pilot._version import __version__
from pilot.exit_codes import PilotExitCode
from pilot.pilot import Pilot
from pilot.settings import PilotSettings

__all__ = ["Pilot", "PilotExitCode", "PilotSettings", "__version__"]
