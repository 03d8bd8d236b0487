"""What the monitor knows about Trainium hardware, for reports that do not say it themselves.

Figures: shared/reference/neuron-tools-and-trainium.md §4 (per chip). The simulator has its own
copy; the two packages never import each other, and a test checks that the figures agree.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class ChipFigures:
    hbm_bytes: int
    hbm_bw: float  # bytes/s
    bf16_flops: float  # dense, per chip
    fp32_flops: float
    phys_cores: int


CHIPS: dict[str, ChipFigures] = {
    "trainium": ChipFigures(32 * GIB, 820 * GIB, 190e12, 47.5e12, 2),
    "trainium2": ChipFigures(96 * GIB, 2.9e12, 667e12, 181e12, 8),
    "trainium3": ChipFigures(144 * GIB, 4.9e12, 671e12, 183e12, 8),
}

INSTANCE_CHIP = {"trn1": "trainium", "trn1n": "trainium", "trn2": "trainium2", "trn2u": "trainium2",
                 "trn3": "trainium3"}


def chip_for(device_type: str, instance_type: str) -> ChipFigures | None:
    if device_type in CHIPS:
        return CHIPS[device_type]
    family = instance_type.split(".")[0]
    name = INSTANCE_CHIP.get(family)
    return CHIPS.get(name) if name else None
