"""How PyTorch's OpenMP threads wait between operations, decided before torch loads (hfclf/__init__).

A CPU training step runs hundreds of short parallel regions. Between them the idle thread either
spins (burns its core, catches the next region at once) or sleeps (a futex wake-up each time):

- spinning long (PyTorch's default, GNU OpenMP's 300,000 spins, a few ms) is fastest on an idle CPU
  and slow on a shared one: the spinning thread starves the thread it waits for (one busy process
  beside a run on 2 cores: 2.3x passive's step time; at load ~9, 8.7x);
- never spinning (`OMP_WAIT_POLICY=PASSIVE`) is safe under load, but on an idle 2-core CPU a MiniLM
  bf16 training step (batch 16) took 136 ms against 85 ms spinning long;
- a brief spin (`GOMP_SPINCOUNT=1000`, about 10 us) keeps most of the idle speed (94 ms) and, should
  the CPU turn busy later, costs about 1.25x against passive (177 vs 141 ms beside one busy process).
  Figures: `make bench-openmp` in the template (bench/openmp_wait.py), 2026-12-06, AMD EPYC, 2 cores.

So: a brief spin when the CPU is idle now - some task waited for a CPU in under 5% of the last
10 s, by the kernel's pressure stall information (`/proc/pressure/cpu`, "some avg10") - else
passive. Where that file is missing (not Linux, or an old kernel) passive, as before. A value the
user set (`OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`) wins; values this module set are decided afresh in a
child process (`HFCLF_OPENMP_WAIT` marks them). Once torch is loaded its OpenMP runtime has read
them: a process that imported torch before hfclf keeps what it had. GOMP_SPINCOUNT is GNU OpenMP's
(the libgomp in PyTorch's Linux wheels); other OpenMP runtimes ignore it and wait passively.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import MutableMapping

PRESSURE = Path("/proc/pressure/cpu")
IDLE_PRESSURE = 5.0      # "some avg10" below this (% of the last 10 s with a task waiting for a CPU): idle
BRIEF_SPIN = 1000        # GNU OpenMP spins before a waiting thread sleeps (about 10 us)
MARK = "HFCLF_OPENMP_WAIT"


def cpu_pressure(path: Path = PRESSURE) -> float | None:
    """The share of the last 10 s in which some runnable task waited for a CPU, in %; None if unknown."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("some "):
                return float(dict(f.split("=", 1) for f in line.split()[1:])["avg10"])
    except (OSError, ValueError, KeyError):
        return None
    return None


def choose(environ: MutableMapping[str, str], pressure: float | None) -> str:
    """Set OMP_WAIT_POLICY (and GOMP_SPINCOUNT where the CPU is idle) in `environ` unless the user set
    them; returns what was decided, for the logs."""
    if MARK not in environ and ("OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ):
        return (f"as set: OMP_WAIT_POLICY={environ.get('OMP_WAIT_POLICY', '(unset)')}, "
                f"GOMP_SPINCOUNT={environ.get('GOMP_SPINCOUNT', '(unset)')}")
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if pressure is not None and pressure < IDLE_PRESSURE:
        environ["GOMP_SPINCOUNT"] = str(BRIEF_SPIN)
        decision = (f"brief spin (GOMP_SPINCOUNT={BRIEF_SPIN}): the CPU is idle "
                    f"(pressure {pressure:.1f}% of the last 10 s)")
    else:
        environ.pop("GOMP_SPINCOUNT", None)
        decision = "passive: " + ("CPU pressure unknown" if pressure is None else
                                  f"the CPU is busy (pressure {pressure:.1f}% of the last 10 s)")
    environ[MARK] = decision
    return decision


def threads_sleep(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether a waiting thread sleeps at once, so that every parallel region of a forward pass pays a
    futex wake-up per extra thread: a spin count of 0, or OMP_WAIT_POLICY=PASSIVE without a spin count.
    False where threads spin first (a brief spin, OMP_WAIT_POLICY=ACTIVE, or OpenMP's default)."""
    spin = environ.get("GOMP_SPINCOUNT", "").strip()
    if spin:
        return spin == "0"
    return environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def summary(decision: str) -> str:
    """A decision without its reason: "brief spin (GOMP_SPINCOUNT=1000)", "passive", "as set", "unchanged"."""
    return decision.split(":", 1)[0]


def configure() -> str:
    """Decide for this process (before torch is imported); returns the decision."""
    if "torch" in sys.modules:   # too late: its OpenMP runtime read the environment when it loaded
        policy, spin = (os.environ.get(k, "(unset)") for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
        return f"unchanged: torch was imported before hfclf (OMP_WAIT_POLICY={policy}, GOMP_SPINCOUNT={spin})"
    return choose(os.environ, cpu_pressure())
