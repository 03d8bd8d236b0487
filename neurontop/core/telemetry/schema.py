"""Typed view of a neuron-monitor report (and the `neuron_top` extension), decoded with validation.

Field names are neuron-monitor's own (shared/reference/neuron-tools-and-trainium.md §2). Every field
has a default, because real captures omit groups (old tools have no `flops`, no device type); a
value of the wrong type is an error that names its path. The extension's `truth` object is not
declared, so the monitor never reads it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Bounds where data enters: every integer fits int64 with room for sums (a memory value >= 2^63 is an
# error naming its field, not an overflow later), every number is far from float overflow, and the
# shape is bounded so that one report cannot make the monitor allocate without limit.
MAX_INT = 2**63 - 1  # int64: cumulative counters (FLOPs of a day) reach 1e18
MAX_BYTES = 2**56  # memory sizes: 64 PiB, and sums of a few hundred still fit int64
MAX_NUM = 1e30
MAX_DEVICES = 256
MAX_CORES_PER_DEVICE = 64
MAX_CORES = 4096  # core keys are decimal ASCII digits below this
MAX_PERIOD_S = 86400.0

Int = Annotated[int, msgspec.Meta(ge=-MAX_INT - 1, le=MAX_INT)]
Bytes = Annotated[int, msgspec.Meta(ge=-MAX_BYTES, le=MAX_BYTES)]
Num = Annotated[float, msgspec.Meta(ge=-MAX_NUM, le=MAX_NUM)] | Int
Period = Annotated[float, msgspec.Meta(ge=0, le=MAX_PERIOD_S)] | Annotated[int, msgspec.Meta(ge=0, le=int(MAX_PERIOD_S))]


class S(msgspec.Struct, frozen=True):
    """Base: frozen, so instances can serve as defaults."""


class CoreCounter(S, frozen=True):
    # None when missing: the decoder refuses such a report, never shows the core at 0 %
    neuroncore_utilization: Num | None = None
    flops: Num | None = None
    effective_flops: Num | None = None  # seen in some real captures instead of `flops`


class NeuronCoreCounters(S, frozen=True):
    period: Period = 0.0
    neuroncores_in_use: dict[str, CoreCounter] = {}
    error: str = ""


class CoreMemory(S, frozen=True):
    constants: Bytes = 0
    model_code: Bytes = 0
    model_shared_scratchpad: Bytes = 0
    runtime_memory: Bytes = 0
    tensors: Bytes = 0


class HostMemory(S, frozen=True):
    application_memory: Bytes = 0
    constants: Bytes = 0
    dma_buffers: Bytes = 0
    tensors: Bytes = 0


class UsageBreakdown(S, frozen=True):
    host: HostMemory = HostMemory()
    neuroncore_memory_usage: dict[str, CoreMemory] = {}


class RuntimeUsedBytes(S, frozen=True):
    host: Bytes = 0
    neuron_device: Bytes = 0
    usage_breakdown: UsageBreakdown = UsageBreakdown()


class MemoryUsed(S, frozen=True):
    period: Period = 0.0
    neuron_runtime_used_bytes: RuntimeUsedBytes = RuntimeUsedBytes()
    error: str = ""


class UserSystem(S, frozen=True):
    user: Num = 0.0
    system: Num = 0.0


class RuntimeVcpu(S, frozen=True):
    period: Period = 0.0
    vcpu_usage: UserSystem = UserSystem()
    error: str = ""


class Latency(S, frozen=True):
    p0: Num = 0.0
    p1: Num = 0.0
    p25: Num = 0.0
    p50: Num = 0.0
    p75: Num = 0.0
    p99: Num = 0.0
    p100: Num = 0.0


class LatencyStats(S, frozen=True):
    total_latency: Latency | None = None
    device_latency: Latency | None = None


class ExecutionStats(S, frozen=True):
    period: Period = 0.0
    execution_summary: dict[str, Int] = {}
    error_summary: dict[str, Int] = {}
    latency_stats: LatencyStats = LatencyStats()
    error: str = ""


class RuntimeReport(S, frozen=True):
    neuroncore_counters: NeuronCoreCounters | None = None
    memory_used: MemoryUsed | None = None
    neuron_runtime_vcpu_usage: RuntimeVcpu | None = None
    execution_stats: ExecutionStats | None = None


class Runtime(S, frozen=True):
    pid: Int = 0
    neuron_runtime_tag: str = ""
    error: str = ""
    report: RuntimeReport = RuntimeReport()


class CpuUsage(S, frozen=True):
    user: Num = 0.0
    nice: Num = 0.0
    system: Num = 0.0
    idle: Num = 100.0
    io_wait: Num = 0.0
    irq: Num = 0.0
    soft_irq: Num = 0.0


class VcpuUsage(S, frozen=True):
    period: Period = 0.0
    average_usage: CpuUsage | None = None
    usage_data: dict[str, CpuUsage] = {}
    context_switch_count: Int = 0
    error: str = ""


class MemoryInfo(S, frozen=True):
    period: Period = 0.0
    memory_total_bytes: Bytes = 0
    memory_used_bytes: Bytes = 0
    swap_total_bytes: Bytes = 0
    swap_used_bytes: Bytes = 0
    error: str = ""


class HwDevice(S, frozen=True):
    neuron_device_index: Int = 0
    mem_ecc_corrected: Int = 0
    mem_ecc_uncorrected: Int = 0
    sram_ecc_corrected: Int = 0
    sram_ecc_uncorrected: Int = 0


class HwCounters(S, frozen=True):
    period: Period = 0.0
    neuron_devices: list[HwDevice] = []
    error: str = ""


class SystemData(S, frozen=True):
    vcpu_usage: VcpuUsage | None = None
    memory_info: MemoryInfo | None = None
    neuron_hw_counters: HwCounters | None = None


class InstanceInfo(S, frozen=True):
    instance_name: str = ""
    instance_type: str = ""
    instance_id: str = ""
    instance_availability_zone: str = ""
    instance_region: str = ""
    subnet_id: str = ""


class HardwareInfo(S, frozen=True):
    neuron_device_type: str = ""
    neuroncore_version: str = ""
    neuron_device_count: Annotated[int, msgspec.Meta(ge=0, le=MAX_DEVICES)] = 0
    neuron_device_memory_size: Bytes = 0
    neuroncore_per_device_count: Annotated[int, msgspec.Meta(ge=0, le=MAX_CORES_PER_DEVICE)] = 0
    logical_neuroncore_config: Int = 1


# -- the neuron_top extension (docs/protocol.md) ----------------------------------------------------
class ExtEngines(S, frozen=True):
    tensor: list[float] = []
    vector: list[float] = []
    scalar: list[float] = []
    gpsimd: list[float] = []
    dma: list[float] = []


class ExtCores(S, frozen=True):
    busy_ns: list[Int] = []
    flops: list[Int] = []
    hbm_read_bytes: list[Int] = []
    hbm_write_bytes: list[Int] = []
    engines: ExtEngines = ExtEngines()


class ExtHbm(S, frozen=True):
    bandwidth_bytes_per_s: Num = 0.0
    capacity_bytes: Bytes = 0


class ExtLinks(S, frozen=True):
    pairs: list[tuple[Int, Int]] = []
    bandwidth_bytes_per_s: Num = 0.0
    bytes: list[Int] = []


class ExtCollective(S, frozen=True):
    name: str
    op: str
    bytes: Int = 0
    count: Int = 0
    calls_per_step: Int = 0
    time_s: Num = 0.0
    exposed_s: Num = 0.0
    algbw_bytes_per_s: Num = 0.0
    busbw_bytes_per_s: Num = 0.0


class ExtEfa(S, frozen=True):
    bytes: Int = 0
    bandwidth_bytes_per_s: Num = 0.0


class StepTimes(S, frozen=True):
    p50: Num = 0.0
    p90: Num = 0.0
    p99: Num = 0.0


class ExtTraining(S, frozen=True):
    workload: str = ""
    dtype: str = ""
    step: Int = 0
    loss: Num | None = None
    loss_source: str | None = None
    tokens_per_s: Num = 0.0
    samples_per_s: Num = 0.0
    mfu: Num = 0.0
    step_time_s: StepTimes = StepTimes()
    global_batch: Int = 0
    micro_batch: Int = 0
    seq: Int = 0


class ExtInput(S, frozen=True):
    workers: Int = 0
    queue_depth: Num = 0.0
    queue_capacity: Int = 0
    wait_s: Num = 0.0
    wait_frac: Num = 0.0


class Extension(S, frozen=True):
    version: Int = 1
    seq: Int = 0
    time_s: Num = 0.0
    timestamp: Num | None = None
    period_s: Period = 0.0
    cores: ExtCores | None = None
    hbm: ExtHbm | None = None
    links: ExtLinks | None = None
    collectives: list[ExtCollective] = []
    efa: ExtEfa | None = None
    training: ExtTraining | None = None
    input: ExtInput | None = None
    events: list[dict] = []


class Report(S, frozen=True):
    neuron_runtime_data: list[Runtime] = []
    system_data: SystemData | None = None
    instance_info: InstanceInfo | None = None
    neuron_hardware_info: HardwareInfo | None = None
    neuron_top: Extension | None = None


report_decoder = msgspec.json.Decoder(Report)
