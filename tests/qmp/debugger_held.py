"""While gdb holds the CPU (hx86 -S with a debugger attached): QMP still
answers, HMP reads the registers at the entry point, and quit ends hx86.

Usage: debugger_held.py SOCKET
"""

import asyncio
import sys

from common import check, connect, disconnect_after_quit, hmp, next_event


async def main():
    q = await connect(sys.argv[1])
    events = q.events
    st = await q.execute("query-status")
    check(st["status"] == "prelaunch", st)
    regs = await hmp(q, "info registers")
    check("RIP=0000000000100000" in regs, regs)
    await q.execute("quit")
    ev = await next_event(events, "SHUTDOWN")
    check(ev["data"]["reason"] == "host-qmp-quit", ev)
    print("OK", flush=True)
    await disconnect_after_quit(q)


asyncio.run(main())
