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
import os
import signal
import sys
import time
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


_last = [time.time()]


def emit(stage: str, status: str, reason: str = "", detail: str = "", **extra) -> None:
    record = {
        "seconds": round(time.time() - _last[0], 1),
        "stage": stage,
        "status": status,
        "reason": reason[:400],
        "detail": detail[-1500:],
    }
    record.update(extra)
    print("@@ " + json.dumps(record), flush=True)
    _last[0] = time.time()


def _alarm(*_):
    raise TimeoutError(f"stage took longer than {STAGE_SECONDS} s")


def run_stage(stage: str, body) -> object | None:
    """Run ``body()``; classify and emit. Returns its value on a pass."""
    from coverage_outcomes import Frozen, NotApplicable, NotPlain, Refused

    from surgeon.errors import SurgeonError

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(STAGE_SECONDS)
    try:
        value = body()
    except Refused as error:
        emit(stage, "mismatch", str(error))
        return None
    except (NotPlain, Frozen) as reason:
        emit(stage, "refused", f"{type(reason).__name__}: {reason}")
        return None
    except NotApplicable as reason:
        emit(stage, "n/a", str(reason))
        return None
    except SurgeonError as error:
        if "stage took longer than" in str(error):  # our alarm, wrapped by capture
            emit(stage, "timeout", str(error).splitlines()[0], traceback.format_exc())
            return None
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


def prepare() -> None:
    """Imports and settings shared by every model: done once in the parent, so
    each forked child starts warm (imports take most of a minute on a loaded
    2-core machine)."""
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    import transformers

    import surgeon  # noqa: F401

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()


def run_architecture(arch) -> None:
    """Build ``arch`` and run every stage, emitting as it goes."""
    from coverage_checks import Checks
    from coverage_models import build

    _last[0] = time.time()
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


def forked(arch, output: str) -> None:
    """Entry of a forked child: stdout goes to ``output``."""
    with open(output, "w", buffering=1) as stream:
        sys.stdout = stream
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        run_architecture(arch)
        stream.flush()
    os._exit(0)


def main(model_type: str) -> None:
    prepare()
    from coverage_models import Architecture, discover

    arch = next((a for a in discover() if a.model_type == model_type), None)
    if arch is None:
        arch = Architecture(model_type, *sys.argv[2:4])
    run_architecture(arch)


if __name__ == "__main__":
    main(sys.argv[1])
