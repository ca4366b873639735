"""The gate files: how pre-flight stages hand train a go-ahead that DVC can compare byte for byte.

`smoke` writes reports/gates/smoke.json (passed + which checks) and `plan` reports/gates/plan.json
(the settings train must use, their digest, approval state); `train` depends on these two only.
This module owns their paths (SMOKE_GATE, PLAN_GATE, read by the stage table in hfclf.pipeline),
the settings digest (gate_digest) and the writer (write_gate): sorted keys, no timestamps, so equal
content means equal bytes and a re-run that decides the same leaves downstream stages up to date.
Standard library only, so the stage table can import it without pulling in a stage.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SMOKE_GATE = "reports/gates/smoke.json"
PLAN_GATE = "reports/gates/plan.json"


def gate_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def write_gate(path: Path, content: dict) -> None:
    """A gate file: sorted keys, no timestamps, so equal content means equal bytes (and DVC sees no change)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
