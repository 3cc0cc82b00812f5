"""The I/O load's init, once per side: fio's init job (explorer/load/io.py: lay the file out,
then one O_DIRECT read), run as a child of this process so that a side's refusal of O_DIRECT
is an answer, not a failed load:

    python -m explorer.load.io_init -- FIO_ARGV...

prints one JSON line, {"direct": true} or {"direct": false, "refused": WHY}, and exits 0;
any other failure of fio is passed on (its output on stderr, its exit code). It runs in the load
client's process group: stopping the client (a timeout, Ctrl-C) stops this fio with it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from explorer.load.io import refusal


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: python -m explorer.load.io_init -- FIO_ARGV...", file=sys.stderr)
        return 2
    done = subprocess.run(argv[1:], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode == 0:
        print(json.dumps({"direct": True}))
        return 0
    why = refusal(done.stdout, done.stderr)
    if why is not None:
        print(json.dumps({"direct": False, "refused": why}))
        return 0
    sys.stderr.write(done.stderr or done.stdout)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
