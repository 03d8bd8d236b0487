"""Helpers for driving the app with recorded reports (deterministic, no wall clock)."""

from __future__ import annotations

from neurontop.core.telemetry.sample import Decoder
from neurontop.ui.app import NeuronTopApp, SampleReceived


def decoded(lines):
    d = Decoder()
    return [d.decode(x) for x in lines]


def paused_replay(samples):
    """(clock, app): a replay of these samples, paused at the start."""
    from neurontop.core.store.profile import LogTimeline
    from neurontop.core.store.replay import ReplayClock

    clock = ReplayClock(LogTimeline(samples), speed=1.0)
    clock.paused = True
    return clock, make_app(replay=clock)


def make_app(**kw) -> NeuronTopApp:
    kw.setdefault("show_self", False)
    kw.setdefault("source_label", "test")
    return NeuronTopApp(**kw)


async def feed(app: NeuronTopApp, pilot, samples) -> None:
    for s in samples:
        app.post_message(SampleReceived(s))
    await pilot.pause()
    app.dirty = True
    app._render_if_dirty()
    await pilot.pause()


def grid_text(app: NeuronTopApp) -> list[str]:
    return app.grid.render().plain.splitlines()
