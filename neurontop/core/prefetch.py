"""Read a profile's batches in a second process while this one writes them out.

An export's two halves cost about the same (decoding columns into figures; hints and formatting
text), so on a machine with two cores or more a forked reader runs the first half beside the
second. The pipe between them holds a few batches at most: memory stays flat. Without fork (or
with one core) the batches are read in this process, the same way.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .batch import Batch
from .colread import iter_profile
from .export import Figures, reduce_batch
from .hints import BatchHintMonitor
from .logs import InputError
from .profile import Profile, ProfileError


@dataclass(frozen=True)
class _Failed:
    message: str


@dataclass(frozen=True)
class HintOptions:
    """Evaluate hints in the reader too (they need every row in order, and the reader has them)."""

    threshold: float
    causes: tuple[str, ...]


def _reader(path: str, skip_bad: bool, hints: HintOptions | None, groups: tuple[str, ...] | None,
            conn) -> None:
    try:
        for item in _serial(path, skip_bad, hints, groups):
            conn.send(item)
        conn.send(None)
    except (ProfileError, InputError) as exc:
        conn.send(_Failed(str(exc)))
    except BrokenPipeError:
        pass  # the writer stopped early (an error, Ctrl-C): nothing to tell
    except Exception as exc:  # noqa: BLE001 - shown to the user as the reader's failure, not a traceback
        conn.send(_Failed(f"{path}: reading failed: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def parallel_ok() -> bool:
    return "fork" in mp.get_all_start_methods() and (os.cpu_count() or 1) >= 2


def batches(path: str, skip_bad: bool = False, parallel: bool | None = None,
            hints: HintOptions | None = None, groups: tuple[str, ...] | None = None,
            ) -> Iterator[tuple[Batch | Figures, np.ndarray | None]]:
    """The profile's samples as batches (colread.iter_profile), each with its rows' hint flags
    ([rows, causes] bool, when `hints` asks), decoded in a forked reader when it helps. With
    `groups` (an export's field groups) each batch comes reduced to its figures (`Figures`, hints
    included): the reader gathers them, and only the matrix crosses the pipe.

    The reader is forked here, at the call, not at the first batch: before the caller starts
    threads of its own (a progress bar's), which a forked child must not inherit mid-write."""
    if not (parallel_ok() if parallel is None else parallel):
        return _serial(path, skip_bad, hints, groups)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_reader, args=(path, skip_bad, hints, groups, send), name="neuron-top-export-reader",
                       daemon=True)
    proc.start()
    send.close()
    return _received(path, recv, proc)


def _serial(path: str, skip_bad: bool, hints: HintOptions | None, groups: tuple[str, ...] | None = None,
            ) -> Iterator[tuple[Batch | Figures, np.ndarray | None]]:
    """Batches and their hint flags, read in this process (also the reader process's loop)."""
    mon = BatchHintMonitor(hints.threshold) if hints is not None else None
    for b in iter_profile(Profile(path), skip_bad):
        mask = mon.feed(b, hints.causes) if mon is not None else None
        yield (reduce_batch(b, groups, mask), None) if groups is not None else (b, mask)


def _received(path: str, recv, proc) -> Iterator[tuple[Batch | Figures, np.ndarray | None]]:
    try:
        while True:
            try:
                item = recv.recv()
            except EOFError:
                raise ProfileError(f"{path}: the reader process stopped (exit code {proc.exitcode})") from None
            if item is None:
                return
            if isinstance(item, _Failed):
                raise ProfileError(item.message)
            yield item
    finally:
        recv.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()
