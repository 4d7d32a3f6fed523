"""Helpers the QMP test scripts share (run by tests/qmp.rs with the
qemu.qmp package from PyPI)."""

import asyncio
import sys

from qemu.qmp import QMPClient


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


async def connect(path, name="hx86-test"):
    q = QMPClient(name)
    await q.connect(path)
    return q


async def disconnect_after_quit(q):
    """Disconnects from a hx86 that was told to quit or power off: it may
    have closed the socket already, which the client reports as EOFError
    (QEMU's own python tests take it the same way after a quit)."""
    try:
        await q.disconnect()
    except EOFError:
        pass


async def quit_and_disconnect(q, events):
    """QMP quit: SHUTDOWN follows with reason host-qmp-quit; prints OK."""
    await q.execute("quit")
    ev = await next_event(events, "SHUTDOWN")
    check(ev["data"]["reason"] == "host-qmp-quit", ev)
    print("OK", flush=True)
    await disconnect_after_quit(q)


async def hmp(q, line):
    return await q.execute("human-monitor-command", {"command-line": line})


async def next_event(listener, name, timeout=120):
    """The next event called `name` from `listener` (others are skipped)."""
    async def wait():
        async for ev in listener:
            if ev["event"] == name:
                return ev
    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        fail(f"no {name} event within {timeout} s")


async def read_u32(q, addr):
    """A 32-bit word of guest memory, read with the HMP `xp` command."""
    out = await hmp(q, f"xp /1wx {addr:#x}")
    return int(out.split()[-1], 16)
