"""What the header says the view is doing: one value, with its label and colour."""

from __future__ import annotations

import enum


class UiState(enum.Enum):
    CONNECTING = ("CONNECTING", "bold")
    LIVE = ("LIVE", "bold green")
    PAUSED = ("PAUSED", "bold yellow")  # the display is frozen (live) or the replay clock stopped
    STALE_QUIET = ("STALE (no reports)", "bold red")  # connected, but no report for a few periods
    STALE_LOST = ("STALE (reconnecting)", "bold red")  # the source went away; retrying
    ENDED = ("ENDED", "bold magenta")  # the source ended (end of input, the command exited)
    REPLAY = ("REPLAY", "bold cyan")
    REPLAY_END = ("REPLAY (end)", "bold cyan")

    def __init__(self, label: str, style: str) -> None:
        self.label = label
        self.style = style

    @property
    def live(self) -> bool:
        """Reading a live source (the stale check applies)."""
        return self is UiState.LIVE

    @property
    def replay(self) -> bool:
        return self in (UiState.REPLAY, UiState.REPLAY_END)
