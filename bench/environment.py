"""The machine and package versions a benchmark ran on, for its docs section."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path


def machine() -> str:
    """CPUs this process may use, the CPU model and the RAM, in one line."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    ram = f"{int(mem.group(1)) * 1024 / 2**30:.1f} GiB RAM" if mem else "RAM unknown"
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = model.group(1).strip() if model else platform.processor() or "unknown CPU"
    return f"{nproc} CPUs (nproc), {cpu}, {ram}"


def versions(*distributions: str) -> str:
    """Python's version and each distribution's, or 'not installed'."""
    found = [f"Python {platform.python_version()}"]
    for dist in distributions:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} not installed")
    return ", ".join(found)
