"""The image's HEALTHCHECK: GET /healthz of the process this container runs.

uvicorn's `--port` from PID 1's command line, else the worker's metrics port
(CLASSIFIER_WORKER_METRICS_PORT, 9102), whose server answers any path.
Standard library only: it runs in the final image with nothing else.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def port_of_pid1() -> int:
    args = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    if b"--port" in args:
        return int(args[args.index(b"--port") + 1])
    return int(os.environ.get("CLASSIFIER_WORKER_METRICS_PORT", "9102"))


def main() -> int:
    url = f"http://127.0.0.1:{port_of_pid1()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
