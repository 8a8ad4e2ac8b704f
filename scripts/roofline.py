"""The roofline scripts/gpu_check.py measures against: the time a device's peaks allow an op.

For an op that does F floating-point operations and moves B bytes between the
GPU's memory and its SMs, the device cannot finish sooner than

    t_compute = F / peak FLOP/s      t_memory = B / peak bytes/s      t_roof = max(t_compute, t_memory)

(Williams, Waterman and Patterson, "Roofline", CACM 2009). The op is compute-bound
when t_compute >= t_memory (arithmetic intensity F/B above the device's ridge
point peak FLOP/s / peak bytes/s) and memory-bound otherwise. measured / t_roof
>= 1 always; t_roof / measured is the fraction of the roofline reached.

Counting (float32 = 4 bytes, int64 = 8 bytes; gpu_check.py's cases):
    F  GEMM-shaped work as 2 x multiply-adds (conv: 2*N*F*H*W*C*K*K forward, twice that
       backward; linear: 2*N*D*O, backward 4*N*D*O; LSTM/RNN: 2*T*N*(D+H)*G*H with G = 4
       or 1 gates, backward twice that) plus the elementwise work counted per element
       (softmax cross-entropy 5 per logit; clipping 3 per gradient element; SGD 5,
       Adagrad 7, RMSprop 8, Adam 14 per parameter; max pooling 3 compares per output;
       LSTM 20 and RNN 4 per hidden unit and step forward, twice that backward).
    B  compulsory traffic: every array the op reads once plus every array it writes
       once (a forward's cache included, e.g. the LSTM's hs, cs and gates). Re-reads
       that caches absorb (w_hh at every step stays in L2) are not counted, so t_memory
       is a lower bound.

The peaks are FP32 without tensor cores (numbanets computes in float32 on the
CUDA cores; torch runs with TF32 off): SMs x FP32 lanes per SM x 2 x the SM clock,
and the memory bandwidth 2 (double data rate) x the memory clock x the bus width
in bytes, both from numba's device attributes on a real GPU. With no GPU (or
under the simulator) --device-model h200 takes NVIDIA's published H200 SXM
figures: 67 TFLOP/s FP32, 4.8 TB/s HBM3e.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# FP32 lanes per SM by compute capability (CUDA C Programming Guide, arithmetic instructions table)
FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
              (10, 0): 128, (12, 0): 128}


@dataclass(frozen=True)
class Peaks:
    """A device's FP32 peak (FLOP/s) and memory bandwidth (bytes/s), and where they came from."""

    name: str
    flops: float
    bandwidth: float
    source: str

    @property
    def ridge(self) -> float:
        """FLOPs per byte where the roofline bends: above it an op is compute-bound."""
        return self.flops / self.bandwidth


MODELS = {
    # NVIDIA H200 SXM datasheet: 67 TFLOPS FP32, 4.8 TB/s (132 SMs x 128 lanes x 2 x 1.98 GHz = 66.9 TFLOP/s)
    "h200": Peaks("NVIDIA H200 SXM (published)", 67e12, 4.8e12, "NVIDIA H200 datasheet"),
    # NVIDIA H100 SXM datasheet: 67 TFLOPS FP32, 3.35 TB/s
    "h100": Peaks("NVIDIA H100 SXM (published)", 67e12, 3.35e12, "NVIDIA H100 datasheet"),
}


def peaks_from_attributes(name: str, cc: tuple[int, int], sms: int, clock_khz: float, mem_clock_khz: float,
                          bus_bits: int) -> Peaks:
    """Peaks from a device's attributes (numba: MULTIPROCESSOR_COUNT, CLOCK_RATE, MEMORY_CLOCK_RATE in kHz,
    GLOBAL_MEMORY_BUS_WIDTH in bits)."""
    lanes = FP32_LANES.get(tuple(cc), 128)
    flops = sms * lanes * 2.0 * clock_khz * 1e3
    bandwidth = 2.0 * mem_clock_khz * 1e3 * bus_bits / 8.0
    return Peaks(name, flops, bandwidth, f"device attributes: {sms} SMs x {lanes} FP32 lanes x 2 x "
                 f"{clock_khz / 1e6:.3f} GHz; 2 x {mem_clock_khz / 1e6:.3f} GHz x {bus_bits} bits")


def device_peaks() -> Peaks | None:
    """Peaks of the current CUDA device, None without a real one (or under the simulator)."""
    from numba import config, cuda

    if getattr(config, "ENABLE_CUDASIM", False) or not cuda.is_available():
        return None
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return peaks_from_attributes(name, dev.compute_capability, dev.MULTIPROCESSOR_COUNT, dev.CLOCK_RATE,
                                 dev.MEMORY_CLOCK_RATE, dev.GLOBAL_MEMORY_BUS_WIDTH)


def resolve(model: str) -> Peaks:
    """'auto': the device's own peaks, else the H200's; a model name: its published peaks."""
    if model == "auto":
        return device_peaks() or MODELS["h200"]
    if model not in MODELS:
        raise ValueError(f"unknown --device-model {model!r}; choose auto or one of {', '.join(MODELS)}")
    return MODELS[model]


@dataclass(frozen=True)
class Roof:
    compute_ms: float
    memory_ms: float

    @property
    def ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_ms >= self.memory_ms else "memory"


def roof(flops: float, nbytes: float, peaks: Peaks) -> Roof:
    """The roofline time of an op of `flops` FLOPs moving `nbytes` bytes."""
    return Roof(1e3 * flops / peaks.flops, 1e3 * nbytes / peaks.bandwidth)


def fraction(roof_ms: float, measured_ms: float) -> float:
    """Fraction of the roofline reached: roof time / measured time (nan without a measurement)."""
    return roof_ms / measured_ms if measured_ms and measured_ms > 0 and math.isfinite(measured_ms) else math.nan


def predict_table(cases, peaks: Peaks) -> str:
    """The roofline predictions of gpu_check's cases (name, shape, total_flops, nbytes) as a markdown table."""
    lines = [(f"Peaks: {peaks.name}: {peaks.flops / 1e12:.1f} TFLOP/s FP32, {peaks.bandwidth / 1e12:.2f} TB/s "
              f"(ridge {peaks.ridge:.1f} FLOP/byte; {peaks.source})."), "",
             "| case | shape | GFLOP | MB moved | FLOP/byte | compute ms | memory ms | roofline ms | bound |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in cases:
        r = roof(c.total_flops, c.nbytes, peaks)
        lines.append(f"| `{c.name}` | {c.shape} | {c.total_flops / 1e9:.3f} | {c.nbytes / 1e6:.2f} | "
                     f"{c.total_flops / c.nbytes:.1f} | {r.compute_ms:.4f} | {r.memory_ms:.4f} | {r.ms:.4f} | "
                     f"{r.bound} |")
    return "\n".join(lines)
