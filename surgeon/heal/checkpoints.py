"""Training checkpoints for healing runs: accelerate's ``save_state`` (model,
optimizer and random states of every process) plus a small JSON of our own
that says where the run stands. The JSON is written last, so a checkpoint
without it was cut short and is never resumed from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from surgeon.errors import InputError

__all__ = ["KEEP", "STATE", "latest", "read_state", "write"]

STATE = "heal_state.json"
KEEP = 2  # newest complete checkpoints kept; older ones are removed


def _step_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("step-*") if (p / STATE).is_file())


def latest(directory: str | Path) -> Path | None:
    """The newest complete checkpoint under ``directory``, if any."""
    directory = Path(directory)
    found = _step_dirs(directory) if directory.is_dir() else []
    return found[-1] if found else None


def read_state(checkpoint: Path, shape: dict[str, Any]) -> dict[str, Any]:
    """The run state of ``checkpoint``; refuses one made with other run options
    (the schedule and the data order would not match)."""
    state = json.loads((checkpoint / STATE).read_text())
    differ = {k: (state["shape"].get(k), v) for k, v in shape.items() if state["shape"].get(k) != v}
    if differ:
        listed = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differ.items())
        raise InputError(
            f"heal: cannot resume from '{checkpoint}', it was made with other options "
            f"({listed}); use the same options or another checkpoint_dir"
        )
    return state


def write(accelerator, directory: str | Path, step: int, state: dict[str, Any]) -> Path:
    """Save the run after ``step`` optimizer steps (every process calls this)."""
    path = Path(directory) / f"step-{step:08d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / STATE).write_text(json.dumps(state, indent=1))
        for old in _step_dirs(Path(directory))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path
