"""Where and how trm runs: device, compute precision, torch.compile, threads, process group, CPU allocator.

The one place that looks at the machine. Training, evaluation, solving, benchmarks and ablations ask
it instead of deciding for themselves:

- :func:`resolve_device`: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` to a ``torch.device``
  (under torchrun ``auto``/``cuda`` mean the local rank's GPU);
- :func:`resolve_precision`: ``model.forward_dtype`` (``auto`` | ``bfloat16`` | ``float32``) to a
  :class:`Precision` with the reason for the choice. ``auto`` takes bf16 only where it is really
  faster: on CUDA where the GPU supports it; on the CPU (and MPS) by a short calibration, a matrix
  product of the model's typical shape timed in both dtypes (tens of milliseconds, once per process).
  CPUs without native bf16 (AVX2 only: most laptops) run bf16 products tens of times slower than fp32;
  CPUs with AMX or AVX512-BF16 run them several times faster. :func:`precision_rule` is the rule
  itself, a pure function of the measurements;
- :func:`init_distributed`, :func:`world`: the torchrun process group (NCCL for CUDA tensors, gloo for
  CPU tensors);
- :func:`set_threads`, :func:`tune_cpu_allocator`: CPU threads and glibc's allocator thresholds;
- :func:`setup`: all of it for one entry point, returning a :class:`Runtime` that prints itself.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.distributed as dist

from trm.errors import ConfigError

DTYPE_NAMES = ("auto", "bfloat16", "float32")
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}

# bf16 is chosen on a CPU only when its matrix products run at least this much faster than fp32's:
# the rest of a step (norms, softmax, the float64 loss) gains nothing from bf16 on a CPU.
BF16_MIN_SPEEDUP = 1.3


# ----------------------------------------------------------------------------------------------
# Device

def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: this process's GPU (``LOCAL_RANK``) if CUDA is available, else the CPU. Under torchrun a
    bare ``cuda`` also means the local rank's GPU. A CPU device gets the allocator tuning."""
    if isinstance(name, torch.device):
        name = str(name)
    local = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not (name in ("cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} asked for, but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device mps asked for, but MPS is not available")
    device = torch.device("cuda", local) if name == "cuda" else torch.device(name)
    if device.type == "cpu":
        tune_cpu_allocator()
    return device


def describe_device(device: torch.device) -> str:
    """One line: what the device is (GPU name, or CPU model, vector unit and threads)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return (f"cpu ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, "
                f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})")
    return str(device)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


# ----------------------------------------------------------------------------------------------
# Precision

@dataclass(frozen=True)
class Calibration:
    """Seconds of one [m, k] x [k, n] matrix product in each dtype (best of a few), on one device."""

    shape: tuple[int, int, int]
    float32_s: float
    bfloat16_s: float

    @property
    def bf16_speedup(self) -> float:
        """How many times faster bf16 ran than fp32 (< 1: slower)."""
        return self.float32_s / self.bfloat16_s


@dataclass(frozen=True)
class Precision:
    """The compute dtype of the forward pass (weights stay fp32) and why it was chosen."""

    dtype: Literal["bfloat16", "float32"]
    reason: str
    requested: str = "auto"
    emulated_bf16: bool = False     # bf16 forced on a device where it runs slower than fp32

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    def __str__(self) -> str:
        return f"{self.dtype} ({self.reason})"


def _ratio(speedup: float) -> str:
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.0f}x slower"


def precision_rule(device_type: str, requested: str, *, cuda_bf16: bool = False,
                   calibration: Calibration | None = None) -> Precision:
    """The choice, from facts already gathered (no timing here, so it can be tested).

    An explicit ``bfloat16`` or ``float32`` is obeyed; forcing bf16 where the calibration measured it
    slower than fp32 is flagged (``emulated_bf16``). ``auto``: CUDA takes bf16 when the GPU supports it;
    any other device takes bf16 only when its measured matmul speed-up reaches ``BF16_MIN_SPEEDUP``.
    """
    if requested not in DTYPE_NAMES:
        raise ConfigError(f"model.forward_dtype={requested!r} is not one of {', '.join(DTYPE_NAMES)}")
    where = "this GPU" if device_type == "cuda" else f"this {device_type.upper()}"
    if requested != "auto":
        slow = (requested == "bfloat16" and device_type != "cuda" and calibration is not None
                and calibration.bf16_speedup < 1)
        why = "asked for" + (f"; bf16 measured {_ratio(calibration.bf16_speedup)} than fp32 on {where}"
                             if slow and calibration else "")
        dtype = cast('Literal["bfloat16", "float32"]', requested)   # checked against DTYPE_NAMES above
        return Precision(dtype, why, requested, emulated_bf16=slow)
    if device_type == "cuda":
        return (Precision("bfloat16", "auto: the GPU supports bf16") if cuda_bf16
                else Precision("float32", "auto: the GPU has no bf16 support"))
    if calibration is None:
        return Precision("float32", "auto: bf16 not measured")
    s = calibration.bf16_speedup
    if s >= BF16_MIN_SPEEDUP:
        return Precision("bfloat16", f"auto: bf16 measured {_ratio(s)} than fp32 on {where}")
    return Precision("float32", f"auto: bf16 measured {_ratio(s)} than fp32 on {where}")


_CALIBRATIONS: dict[tuple[str, tuple[int, int, int]], Calibration] = {}


def calibrate(device: torch.device, shape: tuple[int, int, int] = (256, 256, 512),
              budget_s: float = 0.03) -> Calibration:
    """Time an [m, k] x [k, n] product in fp32 and bf16 on ``device`` (cached per process and shape).

    The two dtypes take turns (so both see the same machine load) until about ``budget_s`` seconds are
    spent and each has at least two calls; the best call of each counts. A dtype that is very slow
    (bf16 without native support) stops after its two calls.
    """
    key = (str(device), shape)
    if key in _CALIBRATIONS:
        return _CALIBRATIONS[key]
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(m, k, generator=gen).to(device), torch.randn(k, n, generator=gen).to(device)
    operands = {name: (a32.to(dt), b32.to(dt)) for name, dt in TORCH_DTYPES.items()}
    best = dict.fromkeys(operands, float("inf"))
    calls = dict.fromkeys(operands, 0)
    spent = 0.0
    while spent < 20 * budget_s:
        for name, (a, b) in operands.items():
            if calls[name] >= 2 and best[name] > budget_s / 4:
                continue
            synchronize(device)
            t0 = time.perf_counter()
            a @ b
            synchronize(device)
            dt_s = time.perf_counter() - t0
            spent += dt_s
            best[name] = min(best[name], dt_s)
            calls[name] += 1
        if spent > budget_s and min(calls.values()) >= 2:
            break
    cal = Calibration(shape, best["float32"], best["bfloat16"])
    _CALIBRATIONS[key] = cal
    return cal


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA, MPS); nothing on the CPU. For timing."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def typical_shape(hidden_size: int, seq_len: int = 81, batch: int = 4) -> tuple[int, int, int]:
    """The model's typical matrix product: [batch x positions, D] x [D, SwiGLU width], D at least 128
    (smaller products time noise, not arithmetic) and capped so that a slow bf16 call stays in the
    tens of milliseconds (at most 0.3 GFLOP)."""
    from trm.model.layers import swiglu_inner
    rows = min(max(batch * seq_len, 64), 256)
    return rows, min(max(hidden_size, 128), 512), min(swiglu_inner(hidden_size, 4.0), 1024)


_WARNED: set[str] = set()


def resolve_trained_precision(trained: str, requested: str, device: torch.device | str, *,
                              hidden_size: int = 512, seq_len: int = 81) -> Precision:
    """The precision to evaluate or solve with, for a model trained in ``trained``.

    ``requested="trained"`` (the default of ``trm eval`` / ``trm solve`` / :func:`trm.load`) keeps
    the training precision, so that evaluation reproduces the run's own figures, except bf16 on a
    device where the calibration measures it slower than fp32 (a CPU without native bf16): then fp32,
    and the reason says so. ``auto``, ``bfloat16`` and ``float32`` are resolved as in
    :func:`resolve_precision`.
    """
    if requested != "trained":
        return resolve_precision(requested, device, hidden_size=hidden_size, seq_len=seq_len)
    device = torch.device(device)
    if trained not in ("bfloat16", "float32"):
        return resolve_precision("auto", device, hidden_size=hidden_size, seq_len=seq_len)
    if trained == "float32":
        return Precision("float32", "as trained", "trained")
    if device.type == "cuda":
        return (Precision("bfloat16", "as trained", "trained") if torch.cuda.is_bf16_supported()
                else Precision("float32", "trained in bf16, which this GPU lacks", "trained"))
    cal = calibrate(device, typical_shape(hidden_size, seq_len))
    if cal.bf16_speedup < 1:
        return Precision("float32", f"trained in bf16, measured {_ratio(cal.bf16_speedup)} than fp32 on "
                                    f"this {device.type.upper()}", "trained")
    return Precision("bfloat16", "as trained", "trained")



def resolve_precision(requested: str, device: torch.device | str = "cpu", *, hidden_size: int = 512,
                      seq_len: int = 81) -> Precision:
    """``model.forward_dtype`` to the dtype this device runs fastest (``auto``) or the one asked for.
    Forcing bf16 on a device that emulates it prints one warning with the measured factor."""
    device = torch.device(device)
    if requested not in DTYPE_NAMES:
        raise ConfigError(f"model.forward_dtype={requested!r} is not one of {', '.join(DTYPE_NAMES)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    needs_timing = device.type != "cuda" and (requested == "auto" or requested == "bfloat16")
    cal = calibrate(device, typical_shape(hidden_size, seq_len)) if needs_timing else None
    p = precision_rule(device.type, requested, cuda_bf16=cuda_bf16, calibration=cal)
    if p.emulated_bf16 and cal is not None and str(device) not in _WARNED:
        _WARNED.add(str(device))
        warnings.warn(f"bf16 forced on {device}, where it runs {_ratio(cal.bf16_speedup)} than fp32 "
                      "(no native bf16); model.forward_dtype=auto would pick float32", stacklevel=2)
    return p


# ----------------------------------------------------------------------------------------------
# Threads, allocator, process group

def set_threads(threads: int = 0) -> int:
    """Use ``threads`` intra-op CPU threads (0: leave torch's choice, one per core or OMP_NUM_THREADS)."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


_ALLOCATOR_TUNED: bool | None = None


def tune_cpu_allocator() -> bool:
    """Let glibc keep large freed buffers for reuse instead of returning them to the kernel.

    A CPU training step allocates and frees tensors of tens of MB hundreds of times. glibc serves those
    above its mmap threshold (at most 32 MB by default) with fresh pages from the kernel every time,
    and the page faults cost 15-20% of a Sudoku step at batch 64. Raising the mmap and trim thresholds
    makes freed buffers reusable (the process keeps its peak memory). Linux/glibc only; idempotent.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
                _ALLOCATOR_TUNED = bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
                                        and libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))
            except (OSError, AttributeError):
                pass
    return _ALLOCATOR_TUNED


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun (or any launcher that sets RANK / WORLD_SIZE /
    MASTER_ADDR / MASTER_PORT; multi-node through torchrun's rendezvous).

    Collectives on CUDA tensors go through NCCL and those on CPU tensors through gloo ("cpu:gloo,
    cuda:nccl"), so ``train.device=cpu`` also works on a GPU machine; gloo alone without CUDA.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available() and dist.is_nccl_available():
            if local < torch.cuda.device_count():
                torch.cuda.set_device(local)
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")
    return world()


# ----------------------------------------------------------------------------------------------
# All of it

@dataclass(frozen=True)
class Runtime:
    """What an entry point runs on: device, precision, compile, threads and the process group."""

    device: torch.device
    precision: Precision
    compile: bool = False
    threads: int = 1
    rank: int = 0
    world_size: int = 1

    def describe(self) -> str:
        """The run header's lines: device and precision, with the reason for the precision."""
        procs = f", {self.world_size} processes" if self.world_size > 1 else ""
        comp = ", torch.compile" if self.compile else ""
        return f"device: {describe_device(self.device)}{procs}{comp}\nprecision: {self.precision}"


def setup(device: str | torch.device = "auto", forward_dtype: str = "auto", *, compile: bool = False,
          threads: int = 0, hidden_size: int = 512, seq_len: int = 81, distributed: bool = False) -> Runtime:
    """Resolve everything for one entry point (joining the torchrun process group if ``distributed``).

    Under torchrun every rank calibrates on its own; the precision of rank 0 is broadcast so that all
    ranks compute in the same dtype.
    """
    rank, world_size = init_distributed() if distributed else world()
    dev = resolve_device(device)
    n_threads = set_threads(threads)
    prec = resolve_precision(forward_dtype, dev, hidden_size=hidden_size, seq_len=seq_len)
    if world_size > 1 and forward_dtype == "auto":
        choice = [prec]
        dist.broadcast_object_list(choice, src=0)
        prec = choice[0]
    if compile and dev.type == "cpu" and not _compile_available():
        raise ConfigError("train.compile=true needs a C++ compiler for the CPU backend (none found)")
    return Runtime(dev, prec, compile, n_threads, rank, world_size)


def _compile_available() -> bool:
    import shutil
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
