"""A machine with two vCPUs under gdb (tests/gdb/smp.rs): QMP jobs on
vCPU 1 while the vCPUs run and while gdb holds them, a QMP stop that gdb
sees as an interrupt, system_reset of every vCPU, and quit. gdb and this
script take turns through marker files in DIR.

Usage: debugger_smp.py SOCKET DIR
"""

import asyncio
import os
import sys

from common import check, connect, next_event, quit_and_disconnect


async def wait_file(path):
    while not os.path.exists(path):
        await asyncio.sleep(0.05)


def touch(path):
    with open(path, "w"):
        pass


async def regs(q, cpu):
    return await q.execute(
        "human-monitor-command",
        {"command-line": "info registers", "cpu-index": cpu})


async def main():
    path, d = sys.argv[1], sys.argv[2]
    q = await connect(path)
    events = q.events
    # gdb's continue runs the machine.
    while (await q.execute("query-status"))["status"] != "running":
        await asyncio.sleep(0.05)
    cpus = await q.execute("query-cpus-fast")
    check([c["cpu-index"] for c in cpus] == [0, 1], cpus)
    # A job on the AP's thread while the vCPUs run.
    r = await regs(q, 1)
    check("RIP=" in r and "CR0=" in r, r)
    # A monitor's stop ends gdb's continue (gdb sees SIGINT).
    await q.execute("stop")
    await next_event(events, "STOP")
    await wait_file(os.path.join(d, "stopped"))
    st = await q.execute("query-status")
    check(st["status"] == "paused", st)
    # Jobs for every vCPU while gdb holds them.
    r0, r1 = await regs(q, 0), await regs(q, 1)
    check("RIP=" in r0 and "RIP=" in r1, (r0, r1))
    await q.execute("system_reset")
    ev = await next_event(events, "RESET")
    check(ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, ev)
    r0 = await regs(q, 0)
    check("RIP=000000000000fff0" in r0, r0)
    touch(os.path.join(d, "reset"))
    await wait_file(os.path.join(d, "checked"))
    await quit_and_disconnect(q, events)


asyncio.run(main())
