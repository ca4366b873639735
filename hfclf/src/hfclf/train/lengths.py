"""model.max_length: a number of tokens, or `auto`, chosen by the data and then by the budget.

`auto` is resolved in two steps, each by the stage that knows its part:

1. **The data** (`data_length`, from the token-length profile `prepare` writes): the shortest of
   `CANDIDATES` that keeps 99% of the training texts whole, within the model's positions, and never
   below `FLOOR`. Batches pad only to their longest text, so on short texts a longer limit costs
   nothing, and 128 (the old fixed default) leaves data whose texts fit in it exactly as it was.
   Review and the smoke test use this length.
2. **The budget** (`budget_length`, by the plan): the smoke test times an epoch at every candidate
   from `FLOOR` up to the data's length (`timed_lengths`), because the cost of a token grows with
   the length (attention): scaling one measurement by token counts would be wrong by 2x. The plan
   keeps the longest at which at least `plan.length_min_epochs` epochs fit in
   `compute.max_minutes`: more text per example is worth nothing if training cannot converge on it.
   `train` runs with the plan's length (`for_training`); the model saves it, and evaluation, the
   demo and the published model read it from there.
"""
from __future__ import annotations

import json
from pathlib import Path

from hfclf.infra.settings import whole_or_auto

CANDIDATES = (32, 64, 128, 256, 384, 512, 1024, 2048, 4096)
FLOOR = 128          # auto never goes below: short texts are unaffected by a longer limit
COVERAGE = 99        # auto keeps this percentile of training texts whole (the profile's p99)
UNKNOWN_POSITIONS = 512   # a model whose config does not say: the common BERT-family limit


def profile_tokens(reports: Path) -> dict | None:
    """The token-length profile prepare wrote (reports/data_profile.json: text_tokens), or None."""
    path = Path(reports) / "data_profile.json"
    return json.loads(path.read_text(encoding="utf-8")).get("text_tokens") if path.exists() else None


def fixed(setting) -> int | None:
    """model.max_length as a number of tokens, or None for auto (null too); anything else is a clear error."""
    return whole_or_auto(setting, "model.max_length", 8, " tokens")


def allowed(positions: int | None) -> list[int]:
    """The candidates this model can take (never more than its position embeddings)."""
    limit = positions or UNKNOWN_POSITIONS
    return [c for c in CANDIDATES if c <= limit] or [int(limit)]


def covering(tokens: dict, positions: int | None) -> int:
    """The shortest allowed candidate at or above the profile's p99 (the longest allowed if none is)."""
    fits = allowed(positions)
    return next((c for c in fits if c >= tokens[f"p{COVERAGE}"]), fits[-1])


def data_length(setting, tokens: dict | None) -> int:
    """model.max_length as review and the smoke test use it: the number set, or for auto the data's
    length (`covering`, at least FLOOR). `tokens`: the profile's text_tokens (None: not profiled,
    auto is FLOOR)."""
    number = fixed(setting)
    if number is not None:
        return number
    positions = (tokens or {}).get("model_max_positions")
    floor = min(FLOOR, allowed(positions)[-1])
    return floor if not tokens else max(floor, covering(tokens, positions))


def timed_lengths(setting, tokens: dict | None) -> list[int]:
    """The lengths the smoke test times an epoch at, longest first: for auto every candidate from
    FLOOR up to the data's length (the plan picks among them), else just the one set."""
    longest = data_length(setting, tokens)
    if fixed(setting) is not None:
        return [longest]
    return sorted({longest} | {c for c in CANDIDATES if FLOOR <= c < longest}, reverse=True)


def budget_length(epochs_fitting: dict[int, float], min_epochs: float) -> tuple[int, str]:
    """The plan's choice among the timed lengths: the longest at which `min_epochs` epochs fit in the
    budget (`epochs_fitting`: length -> epochs that fit), else the shortest. Returns it and why."""
    ordered = sorted(epochs_fitting, reverse=True)
    for length in ordered:
        if epochs_fitting[length] >= min_epochs:
            if length == ordered[0]:
                return length, "the data's length"
            return length, (f"the longest at which {min_epochs:g} epochs fit in the budget "
                            f"(plan.length_min_epochs; at {ordered[0]}: {epochs_fitting[ordered[0]]:g})")
    return ordered[-1], (f"the shortest timed: even there fewer than {min_epochs:g} epochs fit in the budget "
                         "(plan.length_min_epochs)")


def for_training(setting, planned: dict | None, tokens: dict | None) -> int:
    """model.max_length as train runs it: the number set, or for auto the plan's choice; without a
    plan (`hfclf train` run by hand after prepare), the data's length, unchecked against the budget."""
    number = fixed(setting)
    if number is not None:
        return number
    chosen = (planned or {}).get("model", {}).get("max_length")
    return int(chosen) if chosen is not None else data_length(setting, tokens)
