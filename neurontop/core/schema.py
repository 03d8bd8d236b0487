"""Typed view of a neuron-monitor report (and the `neuron_top` extension), decoded with validation.

Field names are neuron-monitor's own (shared/reference/neuron-tools-and-trainium.md §2). Every field
has a default, because real captures omit groups (old tools have no `flops`, no device type); a
value of the wrong type is an error that names its path. The extension's `truth` object is not
declared, so the monitor never reads it.
"""

from __future__ import annotations

import msgspec

Num = float | int


class S(msgspec.Struct, frozen=True):
    """Base: frozen, so instances can serve as defaults."""


class CoreCounter(S):
    neuroncore_utilization: Num = 0.0
    flops: Num | None = None
    effective_flops: Num | None = None  # seen in some real captures instead of `flops`


class NeuronCoreCounters(S):
    period: Num = 0.0
    neuroncores_in_use: dict[str, CoreCounter] = {}
    error: str = ""


class CoreMemory(S):
    constants: int = 0
    model_code: int = 0
    model_shared_scratchpad: int = 0
    runtime_memory: int = 0
    tensors: int = 0


class HostMemory(S):
    application_memory: int = 0
    constants: int = 0
    dma_buffers: int = 0
    tensors: int = 0


class UsageBreakdown(S):
    host: HostMemory = HostMemory()
    neuroncore_memory_usage: dict[str, CoreMemory] = {}


class RuntimeUsedBytes(S):
    host: int = 0
    neuron_device: int = 0
    usage_breakdown: UsageBreakdown = UsageBreakdown()


class MemoryUsed(S):
    period: Num = 0.0
    neuron_runtime_used_bytes: RuntimeUsedBytes = RuntimeUsedBytes()
    error: str = ""


class UserSystem(S):
    user: Num = 0.0
    system: Num = 0.0


class RuntimeVcpu(S):
    period: Num = 0.0
    vcpu_usage: UserSystem = UserSystem()
    error: str = ""


class Latency(S):
    p0: Num = 0.0
    p1: Num = 0.0
    p25: Num = 0.0
    p50: Num = 0.0
    p75: Num = 0.0
    p99: Num = 0.0
    p100: Num = 0.0


class LatencyStats(S):
    total_latency: Latency | None = None
    device_latency: Latency | None = None


class ExecutionStats(S):
    period: Num = 0.0
    execution_summary: dict[str, int] = {}
    error_summary: dict[str, int] = {}
    latency_stats: LatencyStats = LatencyStats()
    error: str = ""


class RuntimeReport(S):
    neuroncore_counters: NeuronCoreCounters | None = None
    memory_used: MemoryUsed | None = None
    neuron_runtime_vcpu_usage: RuntimeVcpu | None = None
    execution_stats: ExecutionStats | None = None


class Runtime(S):
    pid: int = 0
    neuron_runtime_tag: str = ""
    error: str = ""
    report: RuntimeReport = RuntimeReport()


class CpuUsage(S):
    user: Num = 0.0
    nice: Num = 0.0
    system: Num = 0.0
    idle: Num = 100.0
    io_wait: Num = 0.0
    irq: Num = 0.0
    soft_irq: Num = 0.0


class VcpuUsage(S):
    period: Num = 0.0
    average_usage: CpuUsage | None = None
    usage_data: dict[str, CpuUsage] = {}
    context_switch_count: int = 0
    error: str = ""


class MemoryInfo(S):
    period: Num = 0.0
    memory_total_bytes: int = 0
    memory_used_bytes: int = 0
    swap_total_bytes: int = 0
    swap_used_bytes: int = 0
    error: str = ""


class SystemData(S):
    vcpu_usage: VcpuUsage | None = None
    memory_info: MemoryInfo | None = None


class InstanceInfo(S):
    instance_type: str = ""
    instance_id: str = ""


class HardwareInfo(S):
    neuron_device_type: str = ""
    neuroncore_version: str = ""
    neuron_device_count: int = 0
    neuron_device_memory_size: int = 0
    neuroncore_per_device_count: int = 0
    logical_neuroncore_config: int = 1


# -- the neuron_top extension (docs/protocol.md) ----------------------------------------------------
class ExtEngines(S):
    tensor: list[float] = []
    vector: list[float] = []
    scalar: list[float] = []
    gpsimd: list[float] = []
    dma: list[float] = []


class ExtCores(S):
    busy_ns: list[int] = []
    flops: list[int] = []
    hbm_read_bytes: list[int] = []
    hbm_write_bytes: list[int] = []
    engines: ExtEngines = ExtEngines()


class ExtHbm(S):
    bandwidth_bytes_per_s: Num = 0.0
    capacity_bytes: int = 0


class ExtLinks(S):
    pairs: list[tuple[int, int]] = []
    bandwidth_bytes_per_s: Num = 0.0
    bytes: list[int] = []


class ExtCollective(S):
    name: str
    op: str
    bytes: int = 0
    count: int = 0
    calls_per_step: int = 0
    time_s: Num = 0.0
    exposed_s: Num = 0.0
    algbw_bytes_per_s: Num = 0.0
    busbw_bytes_per_s: Num = 0.0


class ExtEfa(S):
    bytes: int = 0
    bandwidth_bytes_per_s: Num = 0.0


class StepTimes(S):
    p50: Num = 0.0
    p90: Num = 0.0
    p99: Num = 0.0


class ExtTraining(S):
    workload: str = ""
    dtype: str = ""
    step: int = 0
    loss: Num | None = None
    loss_source: str | None = None
    tokens_per_s: Num = 0.0
    samples_per_s: Num = 0.0
    mfu: Num = 0.0
    step_time_s: StepTimes = StepTimes()
    global_batch: int = 0
    micro_batch: int = 0
    seq: int = 0


class ExtInput(S):
    workers: int = 0
    queue_depth: Num = 0.0
    queue_capacity: int = 0
    wait_s: Num = 0.0
    wait_frac: Num = 0.0


class Extension(S):
    version: int = 1
    seq: int = 0
    time_s: Num = 0.0
    timestamp: Num | None = None
    period_s: Num = 0.0
    cores: ExtCores | None = None
    hbm: ExtHbm | None = None
    links: ExtLinks | None = None
    collectives: list[ExtCollective] = []
    efa: ExtEfa | None = None
    training: ExtTraining | None = None
    input: ExtInput | None = None
    events: list[dict] = []


class Report(S):
    neuron_runtime_data: list[Runtime] = []
    system_data: SystemData | None = None
    instance_info: InstanceInfo | None = None
    neuron_hardware_info: HardwareInfo | None = None
    neuron_top: Extension | None = None


report_decoder = msgspec.json.Decoder(Report)
