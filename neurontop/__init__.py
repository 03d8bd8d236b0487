"""neuron-top: a terminal monitor for Trainium-class accelerators, and a Python API for its recordings.

`neurontop.open(path)` opens a profile or a neuron-monitor log as tables (neurontop/api.py,
docs/api.md). The command line and the monitor import nothing from here.
"""

from __future__ import annotations

from typing import Any


def open(path: str, skip_bad: bool = False) -> Any:  # noqa: A001
    """A profile (.ntprof) or a neuron-monitor log as a `neurontop.api.Run`."""
    from .api import open as _open

    return _open(path, skip_bad)
