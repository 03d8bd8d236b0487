"""How figures are written for people: counts, clock times, one piece of evidence."""

from __future__ import annotations

COUNT_UNITS = ("cores", "vCPUs", "reports", "")  # counts: the name says what is counted


def plural(n: float, word: str) -> str:
    """'1 core', '2 cores', '1 vCPU' ('word' is the singular)."""
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def clock(seconds: float) -> str:
    """hh:mm:ss of a time from the start of a stream."""
    seconds = max(0.0, seconds)
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def format_evidence(name: str, value: float, unit: str) -> str:
    """One piece of evidence as the hints pane and `diagnose` both print it (the pane's precision)."""
    if unit == "%":
        return f"{name} {value:.1f} %"
    if unit == "GB/s":
        return f"{name} {value:.1f} GB/s"
    if unit in ("GiB", "TFLOP/s", "s"):
        return f"{name} {value:.2f} {unit}"
    if unit in COUNT_UNITS:
        return f"{name} {value:g}"
    return f"{name} {value:g} {unit}"
