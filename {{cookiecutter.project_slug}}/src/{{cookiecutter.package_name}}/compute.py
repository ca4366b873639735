"""Device, precision and thread selection: decided once, logged, never silently downgraded."""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

log = logging.getLogger(__name__)

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
        return {"device": str(self.device), "precision": self.precision, "threads": self.threads}


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
