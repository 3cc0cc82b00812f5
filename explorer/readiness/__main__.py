"""A readiness wait in a process of its own, for a workload only a network namespace reaches
(the native reference's: `ip netns exec NAME python -m explorer.readiness ...`):

    python -m explorer.readiness READY_JSON HOST PORT TIMEOUT_S

prints {"ready_at": T} (T on CLOCK_MONOTONIC, which every process of the host shares), or exits
4 saying what it waited for and what it last saw."""

from __future__ import annotations

import json
import sys
import time

from explorer.errors import EXIT_NOT_READY, NotReady
from explorer.readiness import ReadySpec, wait_ready


def main(argv: list[str]) -> int:
    spec, host, port, timeout = ReadySpec.from_data(json.loads(argv[0])), argv[1], int(argv[2]), float(argv[3])
    try:
        ready = wait_ready(spec, host, port, time.monotonic() + timeout, what="the native reference")
    except NotReady as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NOT_READY
    print(json.dumps({"ready_at": ready}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
