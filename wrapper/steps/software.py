"""Step 4: the software setup and the payload command line.

The site's template (`--software-setup`, e.g. "source /cvmfs/.../{release}/setup.sh") is the
only shell text; user input reaches bash as separate arguments (`exec "$@"`), never as code.
The release name is checked before it is put into the template.
"""

from __future__ import annotations

import re
import shlex

# When no template is given the release must already provide basf2 on PATH.
DEFAULT_SETUP = "true"
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class SetupError(ValueError):
    """The job asks for something the software setup cannot express safely."""


def setup_snippet(template: str | None, release: str) -> str:
    """The shell snippet preparing `release`, from the site's template."""
    if not template:
        return DEFAULT_SETUP
    if "{release}" in template:
        if not _RELEASE.match(release):
            raise SetupError(f"invalid release name {release!r}")
        return template.replace("{release}", release)
    return template


def payload_command(
    setup: str, steering_file: str, inputs: list[str], basf2_options: str
) -> list[str]:
    """`bash -c '<setup> && exec "$@"' bash basf2 <steering> -i <in>... <options>` as a list."""
    if not steering_file:
        raise SetupError("the job names no steering file")
    try:
        options = shlex.split(basf2_options)
    except ValueError as exc:
        raise SetupError(f"cannot parse basf2 options {basf2_options!r}: {exc}") from exc
    args = ["basf2", steering_file]
    for name in inputs:
        args += ["-i", name]
    return ["bash", "-c", f'{setup} && exec "$@"', "bash", *args, *options]
