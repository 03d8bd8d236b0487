"""Samples in blocks: one array per figure, one row per report (export, hints, diagnose).

A Batch is made by stacking decoded Samples (`from_samples`, here: live, logs, replay) or straight
from a profile's columnar chunks (store/colread.py), with the same result. Its columns are the field
catalogue's batch fields (fields.py; a test checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fields import ENGINE_NAMES, batch_fields, path_fields
from .sample import Sample


@dataclass(frozen=True)
class Layout:
    """What every row of a batch shares."""

    n_cores: int
    cores_per_device: int
    n_devices: int
    hbm_capacity: int
    hbm_bw: float
    core_peak_flops: float
    link_pairs: tuple[tuple[int, int], ...]
    link_bw: float
    n_vcpu: int
    n_links: int  # -1: no link rates
    has_engines: bool
    has_hbm_rate: bool
    has_training: bool
    has_input: bool
    instance_id: str = ""
    instance_type: str = ""
    dtype: str = ""  # the training's number format, when the extension says it
    exec_cores: int = 0  # cores the first runtime drives: its executions run concurrently, one per core


@dataclass
class Batch:
    layout: Layout
    time_s: np.ndarray  # [n]
    timestamp: np.ndarray  # [n] unix time, NaN when unknown
    seq: np.ndarray  # [n] int64
    period: np.ndarray  # [n]
    util: np.ndarray  # [n, cores] percent
    flops: np.ndarray  # [n, cores] FLOP/s (0 where flops_ok is False)
    flops_ok: np.ndarray  # [n] bool: the sample has flops
    mem_core: np.ndarray  # [n, cores] int64 bytes
    engines: np.ndarray | None  # [n, 5, cores]
    hbm_rate: np.ndarray | None  # [n, cores]
    link_rate: np.ndarray | None  # [n, links]
    efa_rate: np.ndarray  # [n], NaN when unknown
    sys_user: np.ndarray
    sys_system: np.ndarray
    sys_idle: np.ndarray
    runtime_user: np.ndarray
    runtime_system: np.ndarray
    host_mem_used: np.ndarray  # [n] int64
    ecc_corrected: np.ndarray  # [n] events in the period, every device
    ecc_uncorrected: np.ndarray
    ecc_device: np.ndarray  # [n] int64, -1 when none
    vcpu_busy: np.ndarray  # [n, vcpus]
    step: np.ndarray  # [n] int64: the training step, else the sample's seq
    loss: np.ndarray  # [n] NaN when unknown (as the training figures below)
    tokens_per_s: np.ndarray
    mfu: np.ndarray
    step_p50: np.ndarray
    micro_batch: np.ndarray  # [n] int64
    seq_len: np.ndarray  # [n] int64
    input_wait: np.ndarray  # [n] fraction, NaN without input figures
    exposed_comm: np.ndarray  # [n] seconds
    busbw_max: np.ndarray  # [n] bytes/s
    link_mean: np.ndarray  # [n] NaN without link rates
    events: dict[int, tuple[dict, ...]] = field(default_factory=dict)  # row -> the report's events
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # the catalogue's `path` figures, [n] each

    def __len__(self) -> int:
        return len(self.time_s)

    def dev_mem(self) -> np.ndarray:
        """[n, devices] bytes used on each device."""
        nd = self.layout.n_devices
        return self.mem_core.reshape(len(self), nd, -1).sum(axis=2) if nd else self.mem_core

    def rows(self, a: int, b: int) -> Batch:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if isinstance(v, np.ndarray):
                out[k] = v[a:b]
            elif k == "events":
                out[k] = {i - a: e for i, e in v.items() if a <= i < b}
            elif k == "extra":
                out[k] = {name: x[a:b] for name, x in v.items()}
            else:
                out[k] = v
        return Batch(**out)


def concat(batches: list[Batch]) -> Batch:
    """Batches of one layout as one, in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    out: dict[str, Any] = {}
    for k, v in first.__dict__.items():
        if isinstance(v, np.ndarray):
            out[k] = np.concatenate([getattr(b, k) for b in batches])
        elif k == "events":
            starts = np.cumsum([0, *(len(b) for b in batches)]).tolist()
            out[k] = {a + i: e for a, b in zip(starts, batches, strict=False) for i, e in b.events.items()}
        elif k == "extra":
            out[k] = {name: np.concatenate([b.extra[name] for b in batches]) for name in v}
        else:
            out[k] = v
    return Batch(**out)


def layout_of(s: Sample) -> Layout:
    return Layout(
        s.n_cores, s.cores_per_device, s.n_devices, s.hbm_capacity, s.hbm_bw, s.core_peak_flops, s.link_pairs,
        s.link_bw, len(s.vcpu_busy), -1 if s.link_rate is None else len(s.link_rate), s.engines is not None,
        s.hbm_rate is not None, s.training is not None, s.input is not None, s.instance_id,
        s.instance_type, s.training.dtype if s.training is not None else "", s.exec_cores)


def from_samples(samples: list[Sample]) -> list[Batch]:
    """Stack samples into batches, a new one wherever the layout changes."""
    out: list[Batch] = []
    a = 0
    while a < len(samples):
        lay = layout_of(samples[a])
        b = a + 1
        while b < len(samples) and layout_of(samples[b]) == lay:
            b += 1
        out.append(_stack(samples[a:b], lay))
        a = b
    return out


def _stack(ss: list[Sample], lay: Layout) -> Batch:
    """The catalogue's batch columns (fields.py), each from its accessor on every sample."""
    n = len(ss)
    dims = {"row": (), "core": (lay.n_cores,), "vcpu": (lay.n_vcpu,), "link": (max(0, lay.n_links),),
            "engine_core": (len(ENGINE_NAMES), lay.n_cores), "device": (lay.n_devices,)}
    cols: dict[str, Any] = {}
    for f in batch_fields():
        get = f.sample
        assert get is not None
        if f.optional is not None and not f.optional(lay):
            cols[f.name] = None
        elif f.shape == "row":
            cols[f.name] = np.array([get(s) for s in ss], dtype=f.dtype)
        else:
            cols[f.name] = np.stack([get(s) for s in ss]).reshape(n, *dims[f.shape])
    extra = {f.name: np.array([s.extras.get(f.name, f.default) for s in ss], dtype=np.float64) for f in path_fields()}
    return Batch(layout=lay, **cols, extra=extra, events={i: s.events for i, s in enumerate(ss) if s.events})
