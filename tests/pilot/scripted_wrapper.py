"""A scripted stand-in for `python -m wrapper`, to drive the pilot's job supervision.

Not the real wrapper: it behaves the way a test needs (crash, hang, burn CPU, report) so
the pilot's handling of each case can be checked. The action is the MatchedJob's job_name:

    exit:N      print a few lines, exit N without report.done
    report      write payload.log and report.done, exit 0
    hang        start a child that sleeps, then sleep (until killed)
    burn        burn ~0.6 s CPU in a child process, then sleep (until killed)
    stubborn    ignore SIGTERM and sleep (until SIGKILL)
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from gridpilot.v1 import pilots_pb2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--central", required=True)
    parser.add_argument("--job-dir", required=True, type=Path)
    parser.add_argument("--site", required=True)
    parser.add_argument("--software-setup", default=None)
    parser.add_argument("--wall-limit", type=float, default=None)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--ca", default=None)
    parser.add_argument("--insecure", action="store_true")
    args = parser.parse_args()
    job_dir: Path = args.job_dir
    (job_dir / "argv.json").write_text(json.dumps(sys.argv[1:]))
    matched = pilots_pb2.MatchedJob.FromString((job_dir / "job.pb").read_bytes())
    action, _, value = matched.spec.job_name.partition(":")
    payload_log = job_dir / "payload.log"
    payload_log.write_text("".join(f"payload line {i}\n" for i in range(30)))
    print(f"scripted wrapper: job {matched.job_id} action {action}", flush=True)
    if action == "exit":
        print("something went badly wrong", flush=True)
        return int(value)
    if action == "report":
        (job_dir / "report.done").write_text("ok")
        return 0
    if action == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if action == "burn":
        burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
        subprocess.run([sys.executable, "-c", burn], check=True)
    if action == "hang":
        subprocess.Popen(["sleep", "300"])
    (job_dir / "started").write_text("yes")
    time.sleep(300)
    return 0


if __name__ == "__main__":
    sys.exit(main())
