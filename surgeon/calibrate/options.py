"""How units are scored: the criterion and the calibration data it reads."""

from __future__ import annotations

from dataclasses import dataclass

from surgeon.calibrate.criteria import CRITERIA
from surgeon.options import check_fields, option

__all__ = ["CalibrationOptions"]


@dataclass(frozen=True)
class CalibrationOptions:
    """Options of scoring: which criterion, on how much calibration text, where."""

    criterion: str = option(
        "flap",
        "importance criterion: 'flap' (activation variance x weight; measured best), "
        "'taylor' (needs a loss), 'magnitude' (weights only, no data), ...",
        choices=sorted(CRITERIA),
    )
    samples: int = option(64, "calibration sequences", minimum=1)
    length: int = option(256, "tokens per calibration sequence", minimum=1)
    layerwise: bool = option(
        False, "calibrate one block at a time on --device (models larger than it)"
    )
    device: str | None = option(None, "device of layerwise calibration (default: the model's)")
    seed: int = option(0, "seed of the 'random' criterion", minimum=0)

    def __post_init__(self) -> None:
        check_fields(self)
