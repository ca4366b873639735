"""When training stops: at convergence of validation macro-F1, within an epoch bound.

`train.max_epochs: auto` resolves here from the data size alone (deterministic, so DVC and a
re-run agree): enough passes for small sets to converge, few for large ones. The time budget
(compute.max_minutes) is enforced by the loop's clock; the plan (preflight/plan.py) states which
of the two bounds will bite, from the smoke test's measured throughput.
"""
from __future__ import annotations

import math

from hfclf.infra.settings import whole_or_auto

AUTO_EXAMPLES = 30_000     # auto: about this many training examples seen at most ...
AUTO_MIN_EPOCHS = 2        # ... but at least this many passes (large sets)
AUTO_MAX_EPOCHS = 10       # ... and at most this many (small sets: early stopping ends sooner)


def max_epochs(value, train_rows: int) -> int:
    """`train.max_epochs`: an int, or "auto" = ceil(AUTO_EXAMPLES / rows) within [2, 10]."""
    epochs = whole_or_auto(value, "train.max_epochs", 1)
    if epochs is None:
        return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_EXAMPLES / max(1, train_rows)))))
    return epochs


def eval_rows(validation_rows: int, limit) -> int:
    """Rows scored at each validation pass (train.eval_max_rows: a seeded sample; null = all)."""
    return validation_rows if not limit else min(validation_rows, int(limit))


def first_stop_epochs(evals_per_epoch: int, patience: int, bound: int, cooldown: float = 0.0) -> float:
    """The earliest point, in epochs, at which early stopping can end a run: the first validation
    pass is the best, `patience` passes after it bring nothing better, then the cooldown (loop.train:
    `cooldown` x the steps to the best pass, at least one validation interval)."""
    interval = 1 / max(1, evals_per_epoch)
    anneal = cooldown_length(cooldown, interval, interval) if cooldown > 0 else 0.0
    return min(float(bound), (1 + patience) * interval + anneal)


def cooldown_length(share: float, trained: float, interval: float) -> float:
    """How long the cooldown after early stopping lasts (loop.train, train.cooldown): `share` of what
    trained the weights it starts from, at least one validation interval (steps or epochs alike)."""
    return max(interval, share * trained)


def made_progress(score: float, loss: float, score_ref: float, loss_ref: float, min_delta: float,
                  loss_min_delta: float) -> bool:
    """Whether a validation pass resets patience: macro-F1 more than `min_delta` above the score that
    last reset it (a sampled score wobbles by a row or two), or a loss more than `loss_min_delta`
    (relative) below the lowest so far - on many classes and few rows the loss still falls steadily
    while macro-F1 moves in steps (loss_min_delta 0: any lower loss)."""
    return score > score_ref + min_delta or loss < loss_ref * (1 - loss_min_delta)


def describe(evals_per_epoch: int, patience: int, rows: int, bound: int, min_delta: float = 0.0,
             loss_min_delta: float = 0.0, score: str = "macro-F1", cooldown: float = 0.0) -> str:
    every = "at every epoch end" if evals_per_epoch <= 1 else f"{evals_per_epoch} times per epoch"
    better = f"a score better by more than {min_delta:g}" if min_delta else "a better score"
    better += (f" or a validation loss more than {loss_min_delta:.0%} below its lowest" if loss_min_delta > 0
               else " or a lower validation loss")
    then = (f"training goes back to the best weights and decays the learning rate to 0 over {cooldown:.0%} of the "
            "steps that made them (at least one validation interval), keeping the weights it ends with" if cooldown > 0
            else "training stops, keeping the best weights")
    return (f"validation {score} scored {every} on {rows} rows; after {patience} pass(es) without {better}, "
            f"{then}; at most {bound} epoch(s), or until the time budget")
