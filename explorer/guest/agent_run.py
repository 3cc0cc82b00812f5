"""`python -m explorer.guest.agent_run URI DOMAIN -- ARGV...`: run ARGV inside a full-OS guest
through its guest agent (guest-exec, output captured), print what it printed, and exit with
its exit code. A load path's argv prefix: the load client then runs inside the guest, against
the guest's own loopback, while explorer's rounds run it as they run any client on the host.

The guest agent polls the command every 50 ms and hands its output back whole at its end, so
the round's figures are the client's own (it times itself), not this relay's."""

from __future__ import annotations

import sys

import libvirt  # optional dependency (libvirt-python): only a VM side's load path runs this

from explorer.errors import BackendError
from explorer.guest import agent

TIMEOUT_S = 600.0  # a round is bounded by its caller, which ends this process on its own timeout


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        print("usage: python -m explorer.guest.agent_run URI DOMAIN -- ARGV...", file=sys.stderr)
        return 2
    uri, name, argv = args[0], args[1], args[3:]
    try:
        conn = libvirt.open(uri)
        domain = conn.lookupByName(name)
        result = agent.run(domain, argv, TIMEOUT_S)
    except (libvirt.libvirtError, BackendError) as exc:
        print(f"agent_run: {argv[0]} in {name}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
