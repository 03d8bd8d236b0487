"""HBM use per core in neuron-monitor's categories (shared/reference/simulator-modeling.md §1.4).

Model states: bf16 weights (2 B/param), bf16 or fp32 gradients (2 or 4 B), fp32 master weights and
AdamW moments (12 B, sharded over data-parallel ranks with ZeRO-1). Activations per layer follow
Korthikanti et al. (selective recompute with sequence parallelism: 34 s b h / t bytes; none:
s b h (10 + 24/t + 5 a s / (h t)); full recompute: 2 s b h).
"""

from __future__ import annotations

from dataclasses import dataclass

from .presets import Preset
from .workload import TransformerConfig, local_params

MIB = 1024**2


@dataclass(frozen=True)
class CoreMemory:
    tensors: int  # weights, gradients, optimizer state and peak activations
    constants: int
    model_code: int
    model_shared_scratchpad: int
    runtime_memory: int
    activations: int  # the part of `tensors` that rises and falls within a step

    @property
    def total(self) -> int:
        return self.tensors + self.constants + self.model_code + self.model_shared_scratchpad + self.runtime_memory


def activation_bytes(cfg: TransformerConfig) -> float:
    s, b, h, a, t = cfg.seq, cfg.micro_batch, cfg.d_model, cfg.heads, cfg.tp
    scale = cfg.bytes_per_el / 2
    per_layer: float
    if cfg.recompute == "full":
        per_layer = 2 * s * b * h
    elif cfg.recompute == "selective":
        per_layer = 34 * s * b * h / t
    else:
        per_layer = s * b * h * (10 + 24 / t + 5 * a * s / (h * t))
    # 1F1B keeps up to `pp` micro-batches in flight on the first stage.
    return per_layer * (cfg.layers / cfg.pp) * min(cfg.pp, cfg.accumulation) * scale


def core_memory(preset: Preset, cfg: TransformerConfig) -> CoreMemory:
    n = local_params(cfg)
    grad_b = 2 if cfg.dtype == "bf16" else 4
    weight_b = 2 if cfg.dtype == "bf16" else 4
    master_b = 4 if cfg.dtype == "bf16" else 0  # fp32 training needs no separate master copy
    opt = (master_b + 8) * n / (cfg.world_dp if cfg.zero1 else 1)
    act = activation_bytes(cfg)
    tensors = weight_b * n + grad_b * n + opt + act
    scratch = min(4096 * MIB, 8 * cfg.micro_batch * cfg.seq * max(cfg.d_model, cfg.d_ff // cfg.tp) * cfg.bytes_per_el)
    constants = 2 * cfg.seq * cfg.head_dim * 4 + 32 * MIB  # rotary tables, masks, loss scales
    code = int(160 * MIB + 4 * MIB * cfg.layers / cfg.pp)
    runtime = 200 * 1024 + (64 * MIB if cfg.cores_used > 1 else 0)  # collective ring buffers
    return CoreMemory(int(tensors), int(constants), code, int(scratch), runtime, int(act))


def idle_core_memory() -> CoreMemory:
    """A core the runtime holds but gives no work: loaded code and runtime buffers only."""
    return CoreMemory(0, 0, 160 * MIB, 0, 200 * 1024, 0)


def host_memory(preset: Preset, cfg: TransformerConfig, workers: int) -> dict[str, int]:
    """Host side of the training process, neuron-monitor's usage_breakdown.host categories."""
    app = int(4 * 1024 * MIB + 2 * cfg.params + workers * 1536 * MIB)
    return {"application_memory": app, "constants": 0, "dma_buffers": 256 * 1024, "tensors": 0}
