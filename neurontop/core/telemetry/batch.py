"""Samples in blocks: one array per figure, one row per report (for export and hints over long runs).

A Batch is made by stacking decoded Samples (`from_samples`, here) or straight from a profile's
columnar chunks (colread.py), with the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
            else:
                out[k] = v
        return Batch(**out)


def layout_of(s: Sample) -> Layout:
    return Layout(
        s.n_cores, s.cores_per_device, s.n_devices, s.hbm_capacity, s.hbm_bw, s.core_peak_flops, s.link_pairs,
        s.link_bw, len(s.vcpu_busy), -1 if s.link_rate is None else len(s.link_rate), s.engines is not None,
        s.hbm_rate is not None, s.training is not None, s.input is not None, s.instance_id,
        s.instance_type)


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


def _some(a: np.ndarray | None) -> np.ndarray:
    assert a is not None  # (the layout says every row has it)
    return a


def _stack(ss: list[Sample], lay: Layout) -> Batch:
    n, c = len(ss), lay.n_cores
    f = lambda get: np.array([get(s) for s in ss], dtype=np.float64)  # noqa: E731
    nan = float("nan")
    tr = [s.training for s in ss]
    return Batch(
        layout=lay,
        time_s=f(lambda s: s.time_s),
        timestamp=f(lambda s: nan if s.timestamp is None else s.timestamp),
        seq=np.array([s.seq for s in ss], dtype=np.int64),
        period=f(lambda s: s.period_s),
        util=np.stack([s.util for s in ss]).reshape(n, c),
        flops=np.stack([s.flops if s.flops is not None else np.zeros(c) for s in ss]).reshape(n, c),
        flops_ok=np.array([s.flops is not None for s in ss], dtype=bool),
        mem_core=np.stack([s.mem_per_core for s in ss]).reshape(n, c),
        engines=np.stack([_some(s.engines) for s in ss]) if lay.has_engines else None,
        hbm_rate=np.stack([_some(s.hbm_rate) for s in ss]) if lay.has_hbm_rate else None,
        link_rate=np.stack([_some(s.link_rate) for s in ss]).reshape(n, lay.n_links) if lay.n_links >= 0 else None,
        efa_rate=f(lambda s: nan if s.efa_rate is None else s.efa_rate),
        sys_user=f(lambda s: s.sys_user), sys_system=f(lambda s: s.sys_system), sys_idle=f(lambda s: s.sys_idle),
        runtime_user=f(lambda s: s.runtime_user), runtime_system=f(lambda s: s.runtime_system),
        host_mem_used=np.array([s.host_mem_used for s in ss], dtype=np.int64),
        vcpu_busy=np.stack([s.vcpu_busy for s in ss]).reshape(n, lay.n_vcpu),
        step=np.array([t.step if t is not None else s.seq for s, t in zip(ss, tr, strict=True)], dtype=np.int64),
        loss=f(lambda s: nan if s.training is None or s.training.loss is None else s.training.loss),
        tokens_per_s=f(lambda s: nan if s.training is None else s.training.tokens_per_s),
        mfu=f(lambda s: nan if s.training is None else s.training.mfu),
        step_p50=f(lambda s: nan if s.training is None else s.training.step_time_s.p50),
        micro_batch=np.array([t.micro_batch if t is not None else 0 for t in tr], dtype=np.int64),
        seq_len=np.array([t.seq if t is not None else 0 for t in tr], dtype=np.int64),
        input_wait=f(lambda s: nan if s.input is None else s.input.wait_frac),
        exposed_comm=f(lambda s: s.exposed_comm_s),
        busbw_max=f(lambda s: s.busbw_max),
        link_mean=f(lambda s: nan if s.link_mean is None else s.link_mean),
        events={i: s.events for i, s in enumerate(ss) if s.events},
    )
