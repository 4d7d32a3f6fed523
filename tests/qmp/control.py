"""Drives hx86 over QMP with the real client: greeting, query-*, stop and
cont (checked on a guest that counts in memory), HMP through
human-monitor-command, system_reset, quit; events checked.

Usage: control.py SOCKET COUNTER_ADDR [prelaunch]
"""

import asyncio
import sys

from common import check, connect, disconnect_after_quit, hmp, next_event, read_u32

from qemu.qmp import ExecuteError


async def main():
    path, counter = sys.argv[1], int(sys.argv[2], 0)
    prelaunch = len(sys.argv) > 3 and sys.argv[3] == "prelaunch"
    q = await connect(path)
    g = q.greeting.QMP
    check(g.version["qemu"] == {"major": 7, "minor": 2, "micro": 0}, f"greeting {g}")
    check(g.version["package"].startswith("hx86"), f"package {g.version}")
    events = q.events

    st = await q.execute("query-status")
    print("status:", st, flush=True)
    if prelaunch:
        check(st == {"status": "prelaunch", "running": False, "singlestep": False}, st)
        check(await read_u32(q, counter) == 0, "the guest ran before cont")
        await q.execute("cont")
        await next_event(events, "RESUME")
    else:
        check(st["status"] == "running" and st["running"] is True, st)

    # The guest counts: wait until it has.
    while await read_u32(q, counter) == 0:
        await asyncio.sleep(0.05)

    await q.execute("stop")
    await next_event(events, "STOP")
    st = await q.execute("query-status")
    check(st["status"] == "paused" and st["running"] is False, st)
    info = await hmp(q, "info status")
    check(info.strip() == "VM status: paused", repr(info))
    a = await read_u32(q, counter)
    await asyncio.sleep(0.5)
    b = await read_u32(q, counter)
    check(a == b, f"the counter moved while stopped: {a:#x} -> {b:#x}")
    regs = await hmp(q, "info registers")
    check("RIP=" in regs and "CR0=" in regs, regs)

    await q.execute("cont")
    await next_event(events, "RESUME")
    while await read_u32(q, counter) == b:
        await asyncio.sleep(0.05)
    print(f"counter {b:#x} -> moved after cont", flush=True)

    cpus = await q.execute("query-cpus-fast")
    check(len(cpus) == 1 and cpus[0]["cpu-index"] == 0 and cpus[0]["thread-id"] > 0, cpus)
    kvm = await q.execute("query-kvm")
    check(set(kvm) == {"enabled", "present"}, kvm)
    names = {c["name"] for c in await q.execute("query-commands")}
    for c in ("qmp_capabilities", "query-status", "stop", "cont", "quit",
              "system_powerdown", "human-monitor-command"):
        check(c in names, f"query-commands lacks {c}")
    v = await q.execute("query-version")
    check(v["qemu"]["major"] == 7, v)

    try:
        await q.execute("no-such-command")
        check(False, "an unknown command succeeded")
    except ExecuteError as e:
        check(e.error_class == "CommandNotFound", e)

    await q.execute("system_reset")
    ev = await next_event(events, "RESET")
    check(ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, ev)

    await q.execute("quit")
    ev = await next_event(events, "SHUTDOWN")
    check(ev["data"] == {"guest": False, "reason": "host-qmp-quit"}, ev)
    check("timestamp" in ev and "seconds" in ev["timestamp"], ev)
    await disconnect_after_quit(q)
    print("OK", flush=True)


asyncio.run(main())
