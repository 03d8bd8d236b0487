"""Transformer training workloads turned into per-step op lists.

FLOP and byte counts follow shared/reference/simulator-modeling.md §1.1-1.2 (6NPM per matmul in
training, bf16 = 2 bytes/element, AdamW ~28 B/param of HBM traffic). Counts are per logical core
for one micro-batch on one tensor-parallel shard of one pipeline stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Engine = Literal["tensor", "vector", "scalar", "gpsimd"]
Phase = Literal["fwd", "bwd", "opt"]


@dataclass(frozen=True)
class TransformerConfig:
    name: str
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    d_ff: int
    seq: int
    vocab: int
    micro_batch: int
    global_batch: int
    dtype: Literal["bf16", "fp32"] = "bf16"
    tp: int = 1
    pp: int = 1
    dp: int = 1  # data-parallel ranks on this instance
    nodes: int = 1  # instances in the job (data parallel across EFA)
    gated_mlp: bool = True
    zero1: bool = True  # optimizer state sharded over data-parallel ranks
    recompute: Literal["selective", "none", "full"] = "selective"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def params(self) -> int:
        d, f, hd = self.d_model, self.d_ff, self.head_dim
        attn = d * d * 2 + 2 * d * self.kv_heads * hd
        mlp = (3 if self.gated_mlp else 2) * d * f
        return self.layers * (attn + mlp + 2 * d) + 2 * self.vocab * d

    @property
    def cores_used(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def world_dp(self) -> int:
        return self.dp * self.nodes

    @property
    def accumulation(self) -> int:
        """Micro-batches per step on each data-parallel rank."""
        return max(1, self.global_batch // (self.micro_batch * self.world_dp))

    @property
    def bytes_per_el(self) -> int:
        return 2 if self.dtype == "bf16" else 4

    def flops_per_token(self) -> float:
        """Model FLOPs per token, PaLM convention (6N + 12 L d s), no recompute."""
        return 6 * self.params + 12 * self.layers * self.d_model * self.seq

    def validate(self) -> None:
        if self.d_model % self.heads or self.heads % self.kv_heads:
            raise ValueError("d_model must divide by heads and heads by kv_heads")
        for field in ("layers", "d_model", "seq", "vocab", "micro_batch", "global_batch", "tp", "pp", "dp"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1")
        if self.layers % self.pp:
            raise ValueError("layers must divide by pp")


@dataclass(frozen=True)
class Op:
    name: str
    engine: Engine
    phase: Phase
    flops: float
    hbm_bytes: float
    count: int = 1  # identical repetitions (layers)


@dataclass(frozen=True)
class Collective:
    name: str
    kind: Literal["all_reduce", "all_gather", "reduce_scatter", "send_recv"]
    bytes: float  # size of the array on each rank
    ranks: int
    per: Literal["microbatch", "step"]
    count: int
    overlappable: bool  # may run under the backward pass


def build_ops(cfg: TransformerConfig) -> list[Op]:
    """Ops of one micro-batch (fwd + bwd) on one core, plus the optimizer step."""
    b, s, d, f = cfg.micro_batch, cfg.seq, cfg.d_model, cfg.d_ff
    t, e = cfg.tp, cfg.bytes_per_el
    n = b * s
    layers = cfg.layers // cfg.pp
    kv = cfg.kv_heads * cfg.head_dim
    mlp_mats = 3 if cfg.gated_mlp else 2

    def gemm(name: str, m: int, k: int, nn: int) -> tuple[Op, Op]:
        fl = 2.0 * m * k * nn
        by = e * (m * k + k * nn + m * nn)
        return (
            Op(name, "tensor", "fwd", fl, by, layers),
            Op(name + "_grad", "tensor", "bwd", 2 * fl, 2 * by, layers),
        )

    ops: list[Op] = []
    for pair in (
        gemm("qkv_proj", n, d, (d + 2 * kv) // t),
        gemm("attn_scores", n, s, d // t),  # QK^T and AV together: 2 x (n*s*d/t) MACs
        gemm("attn_values", n, s, d // t),
        gemm("out_proj", n, d // t, d),
        gemm("mlp_in", n, d, (mlp_mats - 1) * f // t),
        gemm("mlp_out", n, f // t, d),
    ):
        ops.extend(pair)
    act = n * d  # one activation tensor of the residual stream
    ops += [
        Op("rmsnorm", "vector", "fwd", 2 * 4.0 * act, 2 * 2 * e * act, layers),
        Op("rmsnorm_grad", "vector", "bwd", 2 * 8.0 * act, 2 * 3 * e * act, layers),
        Op("softmax", "vector", "fwd", 5.0 * n * s * cfg.heads / t, 4 * e * n * d / t, layers),
        Op("softmax_grad", "vector", "bwd", 8.0 * n * s * cfg.heads / t, 8 * e * n * d / t, layers),
        Op("activation", "scalar", "fwd", 8.0 * n * f / t, 3 * e * n * f / t, layers),
        Op("activation_grad", "scalar", "bwd", 12.0 * n * f / t, 5 * e * n * f / t, layers),
        Op("residual_add", "scalar", "fwd", 2.0 * act, 2 * 3 * e * act, layers),
        Op("rope_dropout", "gpsimd", "fwd", 6.0 * act / t, 2 * e * act / t, layers),
        Op("rope_dropout_grad", "gpsimd", "bwd", 6.0 * act / t, 2 * e * act / t, layers),
    ]
    if cfg.recompute == "full":
        ops += [replace(o, name=o.name + "_recompute", phase="bwd") for o in ops if o.phase == "fwd"]
    # Embedding and unembedding live on the first and last stage; spread them over stages.
    v_share = 1.0 / cfg.pp
    un_f = 2.0 * n * d * cfg.vocab / t * v_share
    un_b = e * (n * d + d * cfg.vocab / t + n * cfg.vocab / t) * v_share
    ops += [
        Op("unembed", "tensor", "fwd", un_f, un_b),
        Op("unembed_grad", "tensor", "bwd", 2 * un_f, 2 * un_b),
        Op("cross_entropy", "vector", "fwd", 5.0 * n * cfg.vocab / t * v_share, 2 * e * n * cfg.vocab / t * v_share),
    ]
    return ops


def local_params(cfg: TransformerConfig) -> float:
    return cfg.params / (cfg.tp * cfg.pp)


def optimizer_op(cfg: TransformerConfig) -> Op:
    """AdamW over this core's shard: memory-bound, ~28 B/param and ~12 FLOP/param (§1.2)."""
    shard = local_params(cfg) / (cfg.world_dp if cfg.zero1 else 1)
    per_param_bytes = 28.0 if cfg.dtype == "bf16" else 32.0
    return Op("adamw", "vector", "opt", 12.0 * shard, per_param_bytes * shard)


def build_collectives(cfg: TransformerConfig) -> list[Collective]:
    b, s, d = cfg.micro_batch, cfg.seq, cfg.d_model
    layers = cfg.layers // cfg.pp
    out: list[Collective] = []
    if cfg.tp > 1:
        # Megatron TP: 2 all-reduces of b*s*h per layer forward and 2 backward (§2.2).
        out.append(
            Collective("tp_allreduce", "all_reduce", cfg.bytes_per_el * b * s * d, cfg.tp, "microbatch", 4 * layers, False)
        )
    if cfg.pp > 1:
        out.append(Collective("pp_sendrecv", "send_recv", cfg.bytes_per_el * b * s * d, 2, "microbatch", 2, False))
    if cfg.world_dp > 1:
        grad_bytes = (2.0 if cfg.dtype == "bf16" else 4.0) * local_params(cfg)
        if cfg.zero1:
            out.append(Collective("dp_reduce_scatter", "reduce_scatter", grad_bytes, cfg.world_dp, "step", 1, True))
            out.append(Collective("dp_all_gather", "all_gather", grad_bytes, cfg.world_dp, "step", 1, False))
        else:
            out.append(Collective("dp_allreduce", "all_reduce", grad_bytes, cfg.world_dp, "step", 1, True))
    return out


# Shipped configurations (public architecture figures of each model family).
WORKLOADS: dict[str, TransformerConfig] = {
    "gpt-small": TransformerConfig(
        name="gpt-small", layers=12, d_model=768, heads=12, kv_heads=12, d_ff=3072, seq=1024,
        vocab=50257, micro_batch=8, global_batch=64, dp=2, gated_mlp=False,
    ),
    "gpt-1.3b": TransformerConfig(
        name="gpt-1.3b", layers=24, d_model=2048, heads=16, kv_heads=16, d_ff=8192, seq=2048,
        vocab=50257, micro_batch=1, global_batch=256, dp=32, gated_mlp=False,
    ),
    "llama2-7b": TransformerConfig(
        name="llama2-7b", layers=32, d_model=4096, heads=32, kv_heads=32, d_ff=11008, seq=4096,
        vocab=32000, micro_batch=1, global_batch=64, tp=8, dp=4,
    ),
    "llama3-8b": TransformerConfig(
        name="llama3-8b", layers=32, d_model=4096, heads=32, kv_heads=8, d_ff=14336, seq=8192,
        vocab=128256, micro_batch=1, global_batch=64, tp=4, dp=16,
    ),
}

DEFAULT_WORKLOAD = {"trn1.2xlarge": "gpt-small", "trn1.32xlarge": "llama2-7b", "trn2.48xlarge": "llama3-8b"}
