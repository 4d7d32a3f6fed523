"""system_powerdown of a Linux guest: the ACPI power button, which busybox
acpid in the guest turns into a power-off; POWERDOWN then SHUTDOWN
(guest, guest-shutdown) are checked.

Usage: powerdown.py SOCKET
"""

import asyncio
import sys

from common import check, connect, disconnect_after_quit, next_event


async def main():
    q = await connect(sys.argv[1])
    events = q.events
    st = await q.execute("query-status")
    check(st["status"] == "running", st)
    await q.execute("system_powerdown")
    await next_event(events, "POWERDOWN")
    ev = await next_event(events, "SHUTDOWN", timeout=600)
    check(ev["data"] == {"guest": True, "reason": "guest-shutdown"}, ev)
    print("OK", flush=True)
    await disconnect_after_quit(q)


asyncio.run(main())
