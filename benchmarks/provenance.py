"""What made a study's numbers: the commit, the library versions, the hardware and the command.

Every study report opens with this block (`with_provenance`), so a number read later can be
traced to the code, the libraries and the machine that produced it. Versions come from the
installed distributions' metadata, so reading them imports no framework.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("numpy", "jax", "jaxlib", "flax", "optax", "torch", "torchvision")


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def provenance(argv: list[str] | None = None) -> dict:
    """The commit (and whether the tree had uncommitted changes), versions, hardware, command."""
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_changes": None if status is None else bool(status),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "command": shlex.join(["python", *(sys.argv if argv is None else argv)]),
    }


def markdown(record: dict) -> str:
    dirty = {True: " (with uncommitted changes)", False: "", None: ""}[record["uncommitted_changes"]]
    libraries = ", ".join(f"{name} {version}" for name, version in record["libraries"].items())
    return "\n".join([
        "## Provenance", "",
        f"- commit: `{record['commit']}`{dirty}",
        f"- libraries: Python {record['python']}, {libraries}",
        f"- hardware: {record['cpu']}, {record['cpu_count']} CPUs, {record['platform']}",
        f"- command: `{record['command']}`", "",
    ])


def with_provenance(report: str, record: dict | None = None) -> str:
    """`report` (Markdown opening with a `# ` title) with the provenance block after its title."""
    block = markdown(record or provenance())
    title, newline, rest = report.partition("\n")
    if not title.startswith("# "):
        return block + "\n" + report
    return f"{title}\n\n{block}\n{rest.lstrip(chr(10))}"
