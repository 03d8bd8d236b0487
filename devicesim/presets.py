"""Hardware presets with the published Trainium figures.

Every number comes from shared/reference/neuron-tools-and-trainium.md §4 (AWS Neuron docs):
chip-level dense peaks, HBM capacity and bandwidth, NeuronLink bandwidth per chip, per-core
engine peaks (NKI architecture guides) and instance vCPU / memory / EFA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

GIB = 1024**3
TB = 1e12
GB = 1e9


@dataclass(frozen=True)
class Preset:
    name: str
    device_type: str  # neuron_hardware_info.neuron_device_type
    device_version: str  # neuron_hardware_info.neuron_device_version
    core_version: str  # "v2", "v3" (LNC=1) or "v3d" (LNC=2)
    n_devices: int
    phys_cores_per_device: int
    lnc: int  # physical cores fused into one logical core
    chip_bf16_flops: float  # dense BF16 FLOP/s per chip
    chip_fp32_flops: float  # FP32 FLOP/s per chip
    tensor_bf16_flops: float  # TensorE peak per physical core
    tensor_fp32_flops: float
    vector_flops: float  # VectorE FP32 peak per physical core
    scalar_flops: float  # ScalarE FP32 peak per physical core
    hbm_bytes: int  # per chip
    hbm_bw: float  # bytes/s per chip
    sbuf_bytes: int  # per physical core
    links_per_device: int
    link_bw_per_device: float  # bytes/s per chip, all NeuronLink links together (one direction)
    torus: tuple[int, int]  # 2D torus shape of the chips on one instance
    vcpus: int
    host_mem_bytes: int
    efa_gbps: float

    @property
    def cores_per_device(self) -> int:
        """Logical NeuronCores per device, as neuron-monitor counts them."""
        return self.phys_cores_per_device // self.lnc

    @property
    def n_cores(self) -> int:
        return self.n_devices * self.cores_per_device

    @property
    def core_bf16_flops(self) -> float:
        """Dense BF16 peak of one logical core (chip peak / logical cores)."""
        return self.chip_bf16_flops / self.cores_per_device

    @property
    def core_fp32_flops(self) -> float:
        return self.chip_fp32_flops / self.cores_per_device

    @property
    def core_hbm_bw(self) -> float:
        return self.hbm_bw / self.cores_per_device

    @property
    def core_hbm_bytes(self) -> int:
        return self.hbm_bytes // self.cores_per_device

    @property
    def link_bw(self) -> float:
        """Bandwidth of one NeuronLink link, bytes/s."""
        return self.link_bw_per_device / max(1, self.links_per_device)

    def with_lnc(self, lnc: int) -> Preset:
        if self.device_type != "trainium2":
            raise ValueError("LNC is selectable on Trainium2 only")
        if lnc not in (1, 2):
            raise ValueError("LNC must be 1 or 2")
        return replace(self, lnc=lnc, core_version="v3d" if lnc == 2 else "v3")


_TRN1_CHIP: dict[str, Any] = dict(
    device_type="trainium",
    device_version="v2",
    core_version="v2",
    phys_cores_per_device=2,
    lnc=1,
    chip_bf16_flops=190 * TB,
    chip_fp32_flops=47.5 * TB,
    tensor_bf16_flops=92 * TB,
    tensor_fp32_flops=23 * TB,
    vector_flops=2.3 * TB,
    scalar_flops=2.9 * TB,
    hbm_bytes=32 * GIB,
    hbm_bw=820 * GIB,
    sbuf_bytes=24 * 1024**2,
    links_per_device=4,
)

PRESETS: dict[str, Preset] = {
    "trn1.2xlarge": Preset(
        name="trn1.2xlarge",
        n_devices=1,
        link_bw_per_device=384 * GB,
        torus=(1, 1),
        vcpus=8,
        host_mem_bytes=32 * GIB,
        efa_gbps=25,
        **_TRN1_CHIP,
    ),
    "trn1.32xlarge": Preset(
        name="trn1.32xlarge",
        n_devices=16,
        link_bw_per_device=384 * GB,
        torus=(4, 4),
        vcpus=128,
        host_mem_bytes=512 * GIB,
        efa_gbps=800,
        **_TRN1_CHIP,
    ),
    "trn2.48xlarge": Preset(
        name="trn2.48xlarge",
        device_type="trainium2",
        device_version="v4",
        core_version="v3d",
        n_devices=16,
        phys_cores_per_device=8,
        lnc=2,
        chip_bf16_flops=667 * TB,
        chip_fp32_flops=181 * TB,
        tensor_bf16_flops=79 * TB,
        tensor_fp32_flops=20 * TB,
        vector_flops=1.0 * TB,
        scalar_flops=1.2 * TB,
        hbm_bytes=96 * GIB,
        hbm_bw=2.9 * TB,
        sbuf_bytes=28 * 1024**2,
        links_per_device=4,
        link_bw_per_device=1024 * GB,
        torus=(4, 4),
        vcpus=192,
        host_mem_bytes=2048 * GIB,
        efa_gbps=3200,
    ),
}


def get_preset(name: str, lnc: int | None = None) -> Preset:
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    if lnc is not None and lnc != preset.lnc:
        preset = preset.with_lnc(lnc)
    return preset


def torus_links(preset: Preset) -> list[tuple[int, int]]:
    """Directed-free list of (a, b) chip pairs joined by a NeuronLink on a 2D torus with wrap-around.

    A 4x4 torus gives each chip 4 neighbours (neuron-ls --topology); smaller shapes collapse
    duplicate pairs, and a single chip has no links.
    """
    rows, cols = preset.torus
    pairs: set[tuple[int, int]] = set()
    for r in range(rows):
        for c in range(cols):
            a = r * cols + c
            for b in (r * cols + (c + 1) % cols, ((r + 1) % rows) * cols + c):
                if a != b:
                    pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def describe(preset: Preset) -> str:
    p = preset
    return (
        f"{p.name}: {p.n_devices} x {p.device_type} ({p.phys_cores_per_device} NeuronCore-{p.core_version} "
        f"per chip, LNC={p.lnc} -> {p.n_cores} logical cores)\n"
        f"  per chip: {p.chip_bf16_flops / TB:.0f} TFLOPS bf16, {p.chip_fp32_flops / TB:.1f} TFLOPS fp32, "
        f"HBM {p.hbm_bytes / GIB:.0f} GiB @ {p.hbm_bw / GB:.0f} GB/s, SBUF {p.sbuf_bytes / 1024**2:.0f} MiB/core\n"
        f"  per core engines: Tensor {p.tensor_bf16_flops / TB:.0f} TF bf16 / {p.tensor_fp32_flops / TB:.0f} TF fp32, "
        f"Vector {p.vector_flops / TB:.1f} TF, Scalar {p.scalar_flops / TB:.1f} TF, GpSimd 8x512-bit\n"
        f"  NeuronLink: {p.links_per_device} links, {p.link_bw_per_device / GB:.0f} GB/s per chip, "
        f"{p.torus[0]}x{p.torus[1]} 2D torus ({len(torus_links(p))} links)\n"
        f"  host: {p.vcpus} vCPUs, {p.host_mem_bytes / GIB:.0f} GiB; EFA {p.efa_gbps:.0f} Gbps"
    )
