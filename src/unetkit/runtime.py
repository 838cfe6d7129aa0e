"""Device, precision, threads, seeds and distributed set-up: decided once, at the edge."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from unetkit.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16 (what autocast runs in)
    channels_last: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """The precision context for forward passes; a no-op in fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def describe(self) -> str:
        text = f"device {self.device}, precision {self.precision}"
        text += ", channels_last" if self.channels_last else ""
        if self.device.type == "cpu":
            text += f", {torch.get_num_threads()} threads"
        if self.distributed:
            text += f", rank {self.rank}/{self.world_size}"
        return text


def _cpu_has(*names: str) -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(f in flags for f in names)


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX-BF16 or AVX512-BF16, where bf16 autocast beats fp32."""
    return _cpu_has("amx_bf16", "avx512_bf16")


def cpu_has_vnni() -> bool:
    """True on CPUs with an int8 dot product (VNNI, AMX-INT8); without one, onnxruntime's uint8 x int8
    kernels sum pairs in int16 and can saturate, which 7-bit weights (reduce_range) avoid."""
    return _cpu_has("avx512_vnni", "avx_vnni", "amx_int8")


def choose_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for but CUDA is not available here; use --device cpu or auto")
    return device


def choose_precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if requested == "fp16" and device.type == "cpu":
        raise ConfigError("precision: fp16 is for CUDA; on a CPU use --precision bf16, fp32 or auto")
    return requested


def setup(
    device: str = "auto", precision: str = "auto", channels_last: bool = True, deterministic: bool = False
) -> Runtime:
    """Pick device and precision, and join the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = choose_device(device)
    if world_size > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if deterministic:
        # = use_deterministic_algorithms(True, warn_only=True) without importing inductor (2.8 s) to set its
        # flag; a compiled run sets that flag itself (distributed.wrap_for_training)
        torch.set_deterministic_debug_mode("warn")
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = False
    elif dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Runtime(dev, choose_precision(precision, dev), channels_last, rank, world_size, local_rank)


def process_age() -> float:
    """Seconds since this process started (Linux's /proc; 0 where unknown). A command's time budget
    counts from there: the interpreter and torch take seconds to start, which a 40 s budget feels."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: start time in ticks
    except (OSError, ValueError, IndexError):
        return 0.0


def step_seed(seed: int, epoch: int, step: int) -> int:
    """A seed for one step that depends only on its position, so resumed runs replay exactly."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63 - 1)


# GNU OpenMP (PyTorch's Linux wheels) only: its pause frees the calling thread's team alone; LLVM's and
# Intel's pause the whole runtime, which is not safe while another thread runs a parallel region.
OPENMP_LIBRARIES = ("libgomp",)


def release_openmp_threads() -> bool:
    """Let the calling thread's idle OpenMP workers go (OpenMP 5's omp_pause_resource_all, soft).

    Why: a server loads its model on one thread and runs it on another, and the OpenMP runtime gives
    each thread its own team. Once the teams hold more threads than there are cores, libgomp stops
    spinning between parallel regions and sleeps, so every small op pays a wake-up: on 2 cores a bf16
    click model ran ~2x slower behind HTTP than called directly. The team comes back if this thread
    runs parallel work again. False where no OpenMP runtime is found (then nothing changes)."""
    pause = _omp_pause()
    return pause is not None and pause(1) == 0  # 1 = omp_pause_soft


@functools.cache
def _omp_pause():
    """omp_pause_resource_all of the OpenMP runtime loaded in this process (torch's), or None."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps if any(name in line for name in OPENMP_LIBRARIES)}
    for path in sorted(paths):
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        return pause
    return None
