"""What happens after the cut: compensation of the layers that read a cut axis,
and the check against the masked original."""

from __future__ import annotations

from dataclasses import dataclass

from surgeon.options import check_fields, option

from .compensate import COMPENSATIONS

__all__ = ["CutOptions"]


@dataclass(frozen=True)
class CutOptions:
    """Options of the cut's aftercare (see :mod:`surgeon.rewriters.compensate`)."""

    compensate: str | None = option(
        "refit+bias",
        "correct the layers that read a cut axis on the calibration activations: "
        "'refit+bias' (least squares with an intercept; measured best), 'refit', 'bias' "
        "(FLAP), or none",
        choices=(*sorted(COMPENSATIONS), None),
    )
    damp: float = option(0.01, "ridge damping of the refit", minimum=0)
    verify: bool = option(True, "check the cut against the masked original (before compensation)")

    def __post_init__(self) -> None:
        check_fields(self)
