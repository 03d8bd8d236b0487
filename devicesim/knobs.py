"""Every knob's type and allowed range, in one place: the CLI's --set and control requests both
validate here, so a bad value is refused with the knob's name before anything changes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .timing import Knobs


@dataclass(frozen=True)
class KnobSpec:
    kind: type  # int, float, bool or str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return " or ".join(self.choices)
        what = "a whole number" if self.kind is int else "a number"
        return f"{what} from {self.low:g} to {self.high:g}"


KNOBS: dict[str, KnobSpec] = {
    "workers": KnobSpec(int, 1, 1024),
    "cpu_us_per_token": KnobSpec(float, 0, 1e6),
    "prefetch": KnobSpec(int, 1, 1024),
    "host_sync_ms": KnobSpec(float, 0, 600_000),
    "link_efficiency": KnobSpec(float, 0.001, 1),
    "overlap_grad_allreduce": KnobSpec(bool),
    "straggler_core": KnobSpec(int, -1, 4095),
    "straggler_factor": KnobSpec(float, 1, 1000),
    "idle_cores": KnobSpec(int, 0, 4096),
    "micro_batch": KnobSpec(int, 1, 65536),
    "global_batch": KnobSpec(int, 1, 2**24),
    "seq": KnobSpec(int, 1, 2**20),
    "dtype": KnobSpec(str, choices=("bf16", "fp32")),
    "zero1": KnobSpec(bool),
    "recompute": KnobSpec(str, choices=("selective", "none", "full")),
    "nodes": KnobSpec(int, 1, 4096),
    "extra_tensor_bytes": KnobSpec(int, 0, 2**50),
    "launch_ms": KnobSpec(float, 0, 600_000),
    "graphs_per_micro": KnobSpec(int, 1, 1_000_000),
    "compile_s": KnobSpec(float, 0, 86_400),
    "leak_mb_per_s": KnobSpec(float, 0, 2**20),
    "ecc_per_s": KnobSpec(float, 0, 1e6),
    "hang_after_s": KnobSpec(float, 0, 86_400 * 365),
    "ecc_device": KnobSpec(int, 0, 1023),
    "slowdown": KnobSpec(float, 1, 1000),
    "efa_efficiency": KnobSpec(float, 0.001, 1),
}
assert set(KNOBS) == set(Knobs.__dataclass_fields__), "every knob has a spec"

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class KnobError(ValueError):
    """A knob name or value that is refused; the message names the knob."""


def check(name: object, value: object) -> object:
    """The value, typed, if `name` is a knob and `value` fits it (a JSON value or the text of --set)."""
    if not isinstance(name, str) or name not in KNOBS:
        raise KnobError(f"unknown knob {str(name)[:40]!r}; knobs: {', '.join(KNOBS)}")
    spec = KNOBS[name]
    bad = KnobError(f"knob {name}: {str(value)[:40]!r} is not {spec.describe()}")
    if isinstance(value, str) and spec.kind is not str:
        text = value.strip().lower()
        if spec.kind is bool:
            if text not in _TRUE + _FALSE:
                raise bad
            return text in _TRUE
        try:
            value = int(text) if spec.kind is int else float(text)
        except ValueError:
            raise bad from None
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.kind is str:
        if value not in spec.choices:
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    if spec.kind is int and not (isinstance(value, int) or (math.isfinite(value) and value == int(value))):
        raise bad
    if isinstance(value, float) and not math.isfinite(value):
        raise bad
    if not (spec.low <= value <= spec.high):  # type: ignore[operator]
        raise bad
    return int(value) if spec.kind is int else float(value)


def check_all(sets: object) -> dict:
    if not isinstance(sets, dict):
        raise KnobError("'set' must be an object of knob: value")
    return {k: check(k, v) for k, v in sets.items()}
