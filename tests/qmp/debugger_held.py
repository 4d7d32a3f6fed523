"""While gdb holds the CPU (hx86 -S with a debugger attached): QMP still
answers, HMP reads the registers at the entry point, and quit ends hx86.

Usage: debugger_held.py SOCKET
"""

import asyncio
import sys

from common import check, connect, hmp, quit_and_disconnect


async def main():
    q = await connect(sys.argv[1])
    events = q.events
    st = await q.execute("query-status")
    check(st["status"] == "prelaunch", st)
    regs = await hmp(q, "info registers")
    check("RIP=0000000000100000" in regs, regs)
    await quit_and_disconnect(q, events)


asyncio.run(main())
