"""The POSIX `sh` scripts the ssh backend runs on the remote host (direct mode), and the pure
parsers of what they print.

Each runs as `sh -s -- ARGS...` with the script on standard input: the values travel as
positional parameters, never inside the script text, and the command line the remote login
shell reads holds only those words, each quoted with `shlex.quote` (sitedirectors/
ssh_session.py) -- no newlines or shell syntax, so a csh login shell reads it as well. They
need only `sh`, coreutils, `setsid` and /proc -- no Python on the host. Pilots are passed
as `PID ID` pairs; a PID is the pilot launcher's, which leads its own session and process
group. Output lines start with a `gridpilot-...` marker so a chatty login shell cannot
confuse the parsers below.

/proc/PID/stat is read past the last ") " (the command name may contain spaces): then $1 is
the state, $3 the process group and ${20} the start time in clock ticks since boot, which
tells the launcher from a later process that got its PID.
"""

from __future__ import annotations

from dataclasses import dataclass

# alive PID DIR: PID is a live process (not a zombie) and, when DIR/process recorded a
# start time, the same process that was launched.
_ALIVE = r"""
alive() {
    _dir=$2
    { read -r _line <"/proc/$1/stat"; } 2>/dev/null || return 1
    set -f
    set -- ${_line##*') '}
    set +f
    _state=$1 _start=${20:-}
    case $_state in Z|X|x) return 1 ;; esac
    _recorded=
    { read -r _pid _recorded <"$_dir/process"; } 2>/dev/null
    [ -z "$_recorded" ] || [ "$_recorded" = "$_start" ]
}
"""

# group_alive PGID: some live process (not a zombie) is still in the process group.
_GROUP_ALIVE = r"""
group_alive() {
    _group=$1
    for _stat in /proc/[0-9]*/stat; do
        { read -r _line <"$_stat"; } 2>/dev/null || continue
        set -f
        set -- ${_line##*') '}
        set +f
        if [ "$3" = "$_group" ]; then
            case $1 in Z|X|x) ;; *) return 0 ;; esac
        fi
    done
    return 1
}
"""

# finished DIR [PID]: the pilot of DIR ended (exit code written, or its launcher is gone).
_FINISHED = r"""
finished() {
    _fdir=$1 _fpid=${2:-}
    [ -e "$_fdir/exit_code" ] && return 0
    if [ -z "$_fpid" ]; then
        { read -r _fpid _rest <"$_fdir/process"; } 2>/dev/null || _fpid=
    fi
    [ -n "$_fpid" ] && alive "$_fpid" "$_fdir" && return 1
    return 0
}
"""

# sh -s -- PILOT_DIR
# Starts start.sh detached from the SSH session: nohup (no SIGHUP when the session ends),
# setsid (its own session and process group, so cancel can signal all of it: a background
# job of a non-interactive shell is no group leader, so setsid does not fork and $! is the
# launcher itself), all standard streams away from the channel so the session can close.
# The exit status is written under a temporary name and renamed: a reader never sees half.
LAUNCH_SCRIPT = r"""
cd "$1" || exit 97
launcher='sh start.sh >pilot.log 2>&1; echo $? >exit_code.tmp && mv exit_code.tmp exit_code'
nohup setsid sh -c "$launcher" >/dev/null 2>&1 </dev/null &
pid=$!
start=
{ read -r line <"/proc/$pid/stat"; } 2>/dev/null && {
    set -f
    set -- ${line##*') '}
    set +f
    start=${20:-}
}
echo "$pid $start" >process.tmp && mv process.tmp process
echo "gridpilot-pid $pid $start"
"""

# sh -s -- PILOTS_DIR PID ID [PID ID ...]
# The process is looked at before the exit code: a launcher that is gone and left no exit
# code was killed (see sitedirectors/ssh.py native_state).
STATUS_SCRIPT = (
    _ALIVE
    + r"""
pilots=$1
shift
while [ $# -ge 2 ]; do
    pid=$1 id=$2
    shift 2
    dir=$pilots/$id
    if [ ! -d "$dir" ]; then
        echo "gridpilot-status $id missing"
        continue
    fi
    if alive "$pid" "$dir"; then a=1; else a=0; fi
    code=
    { read -r code <"$dir/exit_code"; } 2>/dev/null
    if [ -e "$dir/cancelled" ]; then c=1; else c=0; fi
    echo "gridpilot-status $id present $a $c ${code:--}"
done
"""
)

# sh -s -- PILOTS_DIR GRACE_TENTHS PID ID [PID ID ...]
# Marks each pilot cancelled, sends SIGTERM to the process groups of those still running,
# waits up to the grace for the groups to empty, then SIGKILLs what is left. A PID whose
# directory is gone is never signalled: nothing says it is still ours.
CANCEL_SCRIPT = (
    _ALIVE
    + _GROUP_ALIVE
    + r"""
pilots=$1 tenths=$2
shift 2
groups=
while [ $# -ge 2 ]; do
    pid=$1 id=$2
    shift 2
    dir=$pilots/$id
    [ -d "$dir" ] || continue
    : >"$dir/cancelled"
    if alive "$pid" "$dir" && kill -s TERM -- "-$pid" 2>/dev/null; then
        groups="$groups $pid"
        echo "gridpilot-cancelled $id $pid"
    fi
done
i=0
while [ -n "$groups" ] && [ "$i" -lt "$tenths" ]; do
    sleep 0.1
    i=$((i + 1))
    left=
    for g in $groups; do
        if group_alive "$g"; then left="$left $g"; fi
    done
    groups=$left
done
for g in $groups; do
    kill -s KILL -- "-$g" 2>/dev/null && echo "gridpilot-killed $g"
done
exit 0
"""
)

# sh -s -- PILOTS_DIR AGE_MINUTES PID ID [PID ID ...]
# Removes the given pilots' directories unless they still run; then, unless AGE_MINUTES is
# negative, every pilot directory unchanged for AGE_MINUTES whose pilot ended (leftovers of
# pilots the director forgot).
CLEANUP_SCRIPT = (
    _ALIVE
    + _FINISHED
    + r"""
pilots=$1 age=$2
shift 2
while [ $# -ge 2 ]; do
    pid=$1 id=$2
    shift 2
    dir=$pilots/$id
    [ -d "$dir" ] || continue
    if finished "$dir" "$pid"; then
        rm -rf -- "$dir" && echo "gridpilot-removed $id"
    else
        echo "gridpilot-kept $id"
    fi
done
[ "$age" -ge 0 ] || exit 0
for dir in "$pilots"/*/; do
    dir=${dir%/}
    [ -d "$dir" ] || continue
    [ -n "$(find "$dir" -maxdepth 0 -mmin "+$age" 2>/dev/null)" ] || continue
    if finished "$dir"; then
        rm -rf -- "$dir" && echo "gridpilot-removed-old ${dir##*/}"
    fi
done
exit 0
"""
)


# ---- parsing what they print -----------------------------------------------------------------


@dataclass(frozen=True)
class RemotePilot:
    """What one line of the status command says about a pilot directory."""

    present: bool
    alive: bool = False
    cancelled: bool = False
    exit_code: int | None = None


def parse_launch_output(stdout: str) -> tuple[int, str]:
    """The launch command's `gridpilot-pid PID [START]` line -> (pid, start time in ticks,
    "" when /proc had none); ValueError when the line is missing."""
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "gridpilot-pid" and fields[1].isdigit():
            start = fields[2] if len(fields) > 2 and fields[2].isdigit() else ""
            return int(fields[1]), start
    raise ValueError(f"no pilot PID in the launch output: {stdout.strip()[:200]!r}")


def parse_exit_code(text: str) -> int | None:
    stripped = text.strip()
    if not stripped.lstrip("-").isdigit():
        return None
    return int(stripped)


def parse_status_output(stdout: str) -> dict[str, RemotePilot]:
    """The status command's lines, by pilot id:

        gridpilot-status <id> present <alive 0|1> <cancelled 0|1> <exit code or ->
        gridpilot-status <id> missing

    Other lines (a chatty login shell) are ignored."""
    found: dict[str, RemotePilot] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] != "gridpilot-status":
            continue
        pilot_id, what = fields[1], fields[2]
        if what == "missing":
            found[pilot_id] = RemotePilot(present=False)
        elif what == "present" and len(fields) >= 6:
            found[pilot_id] = RemotePilot(
                present=True,
                alive=fields[3] == "1",
                cancelled=fields[4] == "1",
                exit_code=parse_exit_code(fields[5]),
            )
    return found


def marked_lines(stdout: str, marker: str) -> list[list[str]]:
    """The fields after `marker` of every line that starts with it."""
    found: list[list[str]] = []
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == marker:
            found.append(fields[1:])
    return found
