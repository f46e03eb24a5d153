"""One model through every stage of the coverage sweep, in this process.

``python bench/coverage_stages.py MODEL_TYPE`` builds the small model and
prints one ``@@ {json}`` line per stage as soon as it finishes, so the parent
(bench/coverage.py) keeps what was done when a later stage hangs or kills the
process. Each stage is classified as ``pass``, ``refused`` (a SurgeonError: up
front or rolled back), ``mismatch`` (returned, then the library's own check
or the comparison says not equal), ``crash`` (any other exception),
``timeout`` or ``n/a`` (nothing of that kind to cut, or an earlier stage it
needs did not pass).
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
import warnings
from pathlib import Path

STAGE_SECONDS = 150
STAGES = (
    "analyze",
    "user-inputs",
    "widths",
    "kv-groups",
    "queries",
    "block",
    "hidden",
    "generate",
    "save-load",
    "from-pretrained",
    "prune",
)


def emit(stage: str, status: str, reason: str = "", detail: str = "", **extra) -> None:
    record = {"stage": stage, "status": status, "reason": reason[:400], "detail": detail[-1500:]}
    record.update(extra)
    print("@@ " + json.dumps(record), flush=True)


def _alarm(*_):
    raise TimeoutError(f"stage took longer than {STAGE_SECONDS} s")


def run_stage(stage: str, body) -> object | None:
    """Run ``body()``; classify and emit. Returns its value on a pass."""
    from coverage_checks import NotApplicable, Refused
    from surgeon.errors import SurgeonError

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(STAGE_SECONDS)
    try:
        value = body()
    except Refused as error:
        emit(stage, "mismatch", str(error))
        return None
    except NotApplicable as reason:
        emit(stage, "n/a", str(reason))
        return None
    except SurgeonError as error:
        emit(stage, "refused", f"{type(error).__name__}: {error}", traceback.format_exc())
        return None
    except TimeoutError as error:
        emit(stage, "timeout", str(error), traceback.format_exc())
        return None
    except Exception as error:  # noqa: BLE001 - everything else is a crash to report
        emit(stage, "crash", f"{type(error).__name__}: {error}", traceback.format_exc())
        return None
    finally:
        signal.alarm(0)
    note = value[1] if isinstance(value, tuple) and len(value) == 2 else ""
    emit(stage, "pass", note if isinstance(note, str) else "")
    return value


def main(model_type: str) -> None:
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import transformers

    transformers.logging.set_verbosity_error()
    from coverage_checks import Checks
    from coverage_models import Architecture, build, discover

    arch = next((a for a in discover() if a.model_type == model_type), None)
    if arch is None:
        arch = Architecture(model_type, *sys.argv[2:4])
    try:
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(60)
        model = build(arch)
        signal.alarm(0)
    except BaseException as error:  # noqa: BLE001 - unbuildable rows are listed, not failed
        emit("build", "unbuildable", f"{type(error).__name__}: {error}", traceback.format_exc())
        return
    emit("build", "pass", f"{sum(p.numel() for p in model.parameters())} parameters")
    Checks(model, arch).run_all(run_stage)


if __name__ == "__main__":
    main(sys.argv[1])
