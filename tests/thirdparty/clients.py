"""Third-party clients the contract tests read our topics and documents with, fetched once.

Each lands in a cache folder outside the repository (like the broker's jars)
and is reused while its pinned version is unchanged, so only the first run pays:
- the CloudEvents Java SDK with kafka-clients (Maven Central, pom.xml here),
  and CloudEventsReader.java compiled against them with the JDK on the machine;
- `@asyncapi/parser` from npm, run by asyncapi_check.cjs;
- `promtool`, built from the Prometheus Go module (the same pin as the chart's tools).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "classifier-stack"

ASYNCAPI_PARSER_VERSION = "3.6.6"
PROMETHEUS_MODULE_VERSION = "v0.316.0"  # promtool of Prometheus 3.x


# What provides each command, for the message when one is missing.
_PACKAGES = {"mvn": "maven", "javac": "openjdk-17-jdk-headless", "npm": "npm", "node": "nodejs"}


def _run(cmd: list[str], **kwargs: object) -> None:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).is_file():
        raise RuntimeError(
            f"{cmd[0]} is missing: apt-get install -y {_PACKAGES.get(cmd[0], cmd[0])}"
        )
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _install_once(home: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary sibling and move it into place: concurrent runs never see half."""
    if (home / ".complete").exists():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=home.name + ".", dir=home.parent))
    try:
        build(staging)
        (staging / ".complete").touch()
        try:
            staging.rename(home)
        except OSError:  # another run finished first
            if not (home / ".complete").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def java_reader_command() -> list[str]:
    """`java ... CloudEventsReader`: kafka-clients 3.9.1 + CloudEvents Java SDK 4.0.1."""
    pom, source = HERE / "pom.xml", HERE / "CloudEventsReader.java"
    digest = hashlib.sha256(pom.read_bytes() + source.read_bytes()).hexdigest()[:12]

    def build(into: Path) -> None:
        _run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={into / 'jars'}"]
        )  # fmt: skip
        _run(["javac", "-d", str(into / "classes"), "-cp", f"{into / 'jars'}/*", str(source)])

    home = _install_once(CACHE / f"cloudevents-java-{digest}", build)
    return ["java", "-cp", f"{home / 'classes'}:{home / 'jars'}/*", "CloudEventsReader"]


def asyncapi_check_command() -> list[str]:
    """`node asyncapi_check.cjs <parser dir>`: prints the parser's diagnostics as JSON."""

    def build(into: Path) -> None:
        _run(
            ["npm", "install", "--prefix", str(into), "--no-audit", "--no-fund",
             "--loglevel=error", f"@asyncapi/parser@{ASYNCAPI_PARSER_VERSION}"]
        )  # fmt: skip

    home = _install_once(CACHE / f"asyncapi-parser-{ASYNCAPI_PARSER_VERSION}", build)
    return ["node", str(HERE / "asyncapi_check.cjs"), str(home)]


def _stamped(folder: Path, name: str, version: str) -> bool:
    """Built at this version (the chart's tools add their build tags after it)."""
    stamp = folder / f".{name}.version"
    return (
        (folder / name).is_file() and stamp.is_file() and stamp.read_text().split()[:1] == [version]
    )


def promtool() -> Path:
    """A promtool binary: on PATH, built by the chart's tools, or built here once."""
    on_path = shutil.which("promtool")
    if on_path:
        return Path(on_path)
    gobin = Path(os.environ.get("GOBIN") or Path.home() / "go" / "bin")
    # The chart's tools (scripts/k8s-tools.sh) build the same pin; either copy will do.
    for folder in (CACHE / "k8s-tools" / "bin", gobin):
        if _stamped(folder, "promtool", PROMETHEUS_MODULE_VERSION):
            return folder / "promtool"
    go = shutil.which("go") or next(
        (g for g in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(g).is_file()), None
    )
    if go is None:
        raise RuntimeError("promtool is built with Go: apt-get install -y golang-go")
    _run(
        [go, "install", "-ldflags=-s -w",
         f"github.com/prometheus/prometheus/cmd/promtool@{PROMETHEUS_MODULE_VERSION}"],
        env={**os.environ, "GOBIN": str(gobin), "CGO_ENABLED": "0", "GOTOOLCHAIN": "auto"},
    )  # fmt: skip
    (gobin / ".promtool.version").write_text(PROMETHEUS_MODULE_VERSION + "\n")
    return gobin / "promtool"
