"""Slow-header clients (slowloris), run as a process of their own so that their
event loop does not delay the test's measurements.

python -m tests.slow_clients PORT COUNT INTERVAL
prints `open S` once every connection is open (S: seconds since the first
connection attempt), then one line per connection: the seconds from the first
attempt until the server closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import time


async def trickle(
    port: int, interval: float, started: float, opened: asyncio.Event, closed: list[float]
) -> None:
    """Send one header byte every `interval` s until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened.set()
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    try:
        for byte in request:
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                # The server answers 408 and closes: the read returns (data or EOF) then.
                await asyncio.wait_for(reader.read(1024), timeout=interval)
                break
            except TimeoutError:
                continue
            except OSError:
                break
    finally:
        closed.append(time.monotonic() - started)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def main(port: int, count: int, interval: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))
    closed: list[float] = []
    events = [asyncio.Event() for _ in range(count)]
    started = time.monotonic()
    tasks = [asyncio.create_task(trickle(port, interval, started, e, closed)) for e in events]
    await asyncio.gather(*(e.wait() for e in events))
    print(f"open {time.monotonic() - started:.3f}", flush=True)  # noqa: T201 - the protocol
    await asyncio.gather(*tasks)
    for seconds in closed:
        print(f"{seconds:.3f}")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
