"""Device, precision and thread selection: decided once, logged, never silently downgraded."""
from __future__ import annotations

import gc
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

import hfclf
from hfclf.infra import openmp
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class Compute:
    device: torch.device
    precision: str                  # bf16 | fp16 | fp32
    threads: int
    warnings: list[str] = field(default_factory=list)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        """A context that runs the forward pass in the chosen precision (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def describe(self) -> dict:
        return {"device": str(self.device), "precision": self.precision, "threads": self.threads,
                "openmp_wait": openmp_wait()}


def openmp_wait() -> str:
    """How this process's OpenMP threads wait between operations (infra/openmp.py, decided on import)."""
    return openmp.summary(hfclf.OPENMP_WAIT)


def cpu_has_native_bf16() -> bool:
    """True where the CPU runs bf16 matrix maths natively (AVX512-BF16 or AMX); else bf16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return torch.backends.mps.is_available()  # Apple silicon: fine on MPS, not via this path
    return "avx512_bf16" in flags or "amx_bf16" in flags


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def select(device: str = "auto", precision: str = "auto", threads: str | int = "auto") -> Compute:
    """Pick device, precision and threads; a requested GPU that is missing falls back to CPU with a warning."""
    if device not in DEVICES:
        raise UserError(f"compute.device must be one of {', '.join(DEVICES)}, not '{device}'.")
    if precision not in PRECISIONS:
        raise UserError(f"compute.precision must be one of {', '.join(PRECISIONS)}, not '{precision}'.")
    warnings = []
    if device == "auto":
        chosen = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        warnings.append("compute.device=cuda was requested but no CUDA GPU is visible: falling back to CPU.")
        chosen = "cpu"
    elif device == "mps" and not torch.backends.mps.is_available():
        warnings.append("compute.device=mps was requested but MPS is not available: falling back to CPU.")
        chosen = "cpu"
    else:
        chosen = device
    dev = torch.device(chosen)
    prec = _precision(dev, precision, warnings)
    n_threads = available_cpus() if threads in ("auto", None) else int(threads)
    torch.set_num_threads(max(1, n_threads))
    for warning in warnings:
        log.warning(warning)
    return Compute(dev, prec, n_threads, warnings)


def _precision(dev: torch.device, requested: str, warnings: list[str]) -> str:
    if dev.type == "cuda":
        native_bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if native_bf16 else "fp16"
        if requested == "bf16" and not native_bf16:
            warnings.append("bf16 is not supported on this GPU: using fp16.")
            return "fp16"
        return requested
    if dev.type == "mps":
        return "fp32" if requested == "auto" else requested
    if requested == "fp16":
        warnings.append("fp16 autocast is slow on CPU: using fp32.")
        return "fp32"
    if requested == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return requested


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def release_memory() -> None:
    """Give freed heap back to the OS. glibc keeps it: after training that is ~250 MB of activations
    and optimizer state, which would otherwise add to the peak of what follows (saving, MLflow).

    Tensors are freed when their last reference goes; the collector is only for reference cycles
    among fresh objects, so only the young generations are collected: a full collection walks every
    object of PyTorch and transformers (~0.4 s on a 2-core CPU, at every validation pass) and, measured
    after MiniLM training, freed nothing more."""
    gc.collect(1)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        pass


def is_out_of_memory(err: BaseException) -> bool:
    """A GPU (CUDA or MPS) out-of-memory error, whichever way this PyTorch build raises it."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(err, oom_type) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def run_with_cpu_fallback(attempt: Callable[[Compute, bool], T], hw: Compute, resume: bool,
                          checkpoint: Path | None, on_fallback: Callable[[str, Compute], None]) -> tuple[T, Compute]:
    """Run `attempt(hw, resume)`; if the GPU runs out of memory, warn, tell `on_fallback` (MLflow tag)
    and run `attempt` again on the CPU - resuming from a checkpoint the GPU attempt wrote, if any.

    Never silent: the warning is logged, added to the returned Compute's warnings and passed on.
    """
    started = time.time()
    try:
        return attempt(hw, resume), hw
    except Exception as err:
        if hw.device.type == "cpu" or not is_out_of_memory(err):
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    gc.collect()  # outside the except block: the failed attempt's tensors can be freed now
    if hw.device.type == "cuda":
        torch.cuda.empty_cache()
    resume_now = resume or bool(checkpoint and checkpoint.exists() and checkpoint.stat().st_mtime >= started)
    message = (f"{hw.device.type.upper()} ran out of memory during training ({reason}): falling back to the CPU, "
               + ("resuming from the last checkpoint" if resume_now else "starting over")
               + ". This is much slower; to stay on the GPU lower train.batch_size or model.max_length.")
    log.warning(message)
    cpu = select("cpu", "auto", hw.threads)
    cpu.warnings = [*hw.warnings, message]
    on_fallback(message, cpu)
    return attempt(cpu, resume_now), cpu
