"""Replace one ``## `` section of a markdown file, leaving the others alone.

The benchmark scripts each own a section of ``docs/benchmarks.md`` (or
``docs/reliability.md``) and rewrite only that one.
"""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(doc: Path, heading: str, text: str, title: str = "# Benchmarks") -> None:
    """Put ``text`` (which starts with ``heading``) in place of the section that
    starts with ``heading``, or append it when the file has no such section."""
    current = doc.read_text() if doc.exists() else title + "\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = text.rstrip("\n") + "\n"
    if pattern.search(current):
        updated = pattern.sub(lambda _: body + "\n", current).rstrip("\n") + "\n"
    else:
        updated = current.rstrip("\n") + "\n\n" + body
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(updated)
