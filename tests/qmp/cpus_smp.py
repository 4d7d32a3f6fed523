"""query-cpus-fast on a machine with two vCPUs: one entry per vCPU, each
with the host thread that runs it (distinct, and not hx86's main thread),
as QEMU reports them; then quit.

Usage: cpus_smp.py SOCKET HX86_PID
"""

import asyncio
import os
import sys

from common import check, connect, disconnect_after_quit


async def main():
    path, pid = sys.argv[1], int(sys.argv[2])
    q = await connect(path)
    cpus = await q.execute("query-cpus-fast")
    print("cpus:", cpus, flush=True)
    check([c["cpu-index"] for c in cpus] == [0, 1], cpus)
    tids = [c["thread-id"] for c in cpus]
    check(len(set(tids)) == 2 and pid not in tids, f"thread ids {tids}, pid {pid}")
    # Both are threads of hx86.
    for t in tids:
        check(os.path.exists(f"/proc/{pid}/task/{t}"), f"{t} is not a thread of {pid}")
    await q.execute("quit")
    await disconnect_after_quit(q)
    print("OK", flush=True)


asyncio.run(main())
