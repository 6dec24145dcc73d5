"""The bundle's `bin/gridpilot-pilot`: a POSIX sh launcher that picks a Python the bundle
has dependencies for and runs the pilot from the bundle.

It must work on a bare worker node, so it needs nothing but sh (not even coreutils) and the
candidate Pythons themselves. Exit 78 (sysexits' EX_CONFIG, as the start script) when no
usable Python is found: the node, not the pilot, is at fault.
"""

from __future__ import annotations

EXIT_NO_PYTHON = 78

# Why each piece:
# - B from the launcher's own path, so the unpacked bundle can live anywhere (the start
#   script's cache dir, or a hand-unpacked copy);
# - the tag probe runs with -I so a broken PYTHONPATH or user site cannot make it lie, and
#   prints the implementation too: a PyPy 3.11 must not be taken for CPython 3.11;
# - -s keeps the user's site-packages from shadowing the bundle's pinned dependencies, and
#   -P (Python >= 3.11, like the bundle) the current directory from shadowing the pilot.
LAUNCHER_SCRIPT = r"""#!/bin/sh
# gridpilot pilot launcher (written by `gridpilot admin bundle build`).
# Runs the pilot with the first Python that this bundle has dependencies for:
# $GRIDPILOT_PYTHON if set, else python3.13, python3.12, python3.11, python3 from PATH.
set -u
case $0 in
    */*) self=$0 ;;
    *) self=$(command -v -- "$0") || self=./$0 ;;
esac
B=$(CDPATH='' cd -- "${self%/*}/.." && pwd -P) || {
    echo "gridpilot-pilot: cannot find the bundle directory of $0" >&2
    exit 78
}

supported() {
    list=""
    for dir in "$B"/lib/cp3*; do
        [ -d "$dir" ] || continue
        minor=${dir##*/cp3}
        list="${list:+$list, }3.$minor"
    done
    echo "${list:-none (no lib/cp3* in $B)}"
}

python_tag() {
    "$1" -I -c 'import sys; i = sys.implementation.name; v = sys.version_info
print(("cp" if i == "cpython" else i + "-") + "%d%d" % (v[0], v[1]))' 2>/dev/null
}

py=""
tag=""
if [ -n "${GRIDPILOT_PYTHON:-}" ]; then
    tag=$(python_tag "$GRIDPILOT_PYTHON") || tag=""
    if [ -z "$tag" ]; then
        echo "gridpilot-pilot: GRIDPILOT_PYTHON=$GRIDPILOT_PYTHON does not run" >&2
        exit 78
    fi
    if [ ! -d "$B/lib/$tag" ]; then
        echo "gridpilot-pilot: GRIDPILOT_PYTHON=$GRIDPILOT_PYTHON is $tag; this bundle" \
            "supports CPython $(supported)" >&2
        exit 78
    fi
    py=$GRIDPILOT_PYTHON
else
    for candidate in python3.13 python3.12 python3.11 python3; do
        path=$(command -v "$candidate" 2>/dev/null) || continue
        tag=$(python_tag "$path") || continue
        if [ -n "$tag" ] && [ -d "$B/lib/$tag" ]; then
            py=$path
            break
        fi
    done
    if [ -z "$py" ]; then
        echo "gridpilot-pilot: no supported Python on PATH; this bundle needs CPython" \
            "$(supported) (python3.X on PATH, or set GRIDPILOT_PYTHON)" >&2
        exit 78
    fi
fi

PYTHONPATH="$B/app:$B/lib/$tag${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec "$py" -s -P -m pilot "$@"
"""
