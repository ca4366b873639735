"""When training stops: at convergence of validation macro-F1, within an epoch bound.

`train.max_epochs: auto` resolves here from the data size and the time budget: the whole epochs
that fit in compute.max_minutes at the smoke test's measured speed (the plan's estimate,
preflight/plan.py), at least 2 and at most 10 - or, on a small set, at most the epochs that make
train.min_steps optimisation steps. Convergence usually stops sooner; the bound is where the
learning rate's linear decay ends, so it must leave room for the data to converge (a bound from
the row count alone - 30,000 examples - stopped 10k rows of 54 classes at 4 epochs with validation
still rising, below the frozen-embedding baseline). What a fine-tune needs is updates, not passes:
10 epochs of 1,064 rows (54 classes) are 670 steps, and the run ended at that bound with validation
still rising. The bound sets how fast the learning rate decays: with a bound of 23 epochs (1,541
steps) it is still at two thirds of its peak at step 500, where the 10-epoch schedule is down to a
quarter; patience ended those runs at 9.6-12.4 epochs and they scored +1.5 to +9.0 macro-F1 points
(three seeds). A longer schedule is no gain where the data converge within the bound: 2,400 rows of
52 debtags stopped at 6.8-9 epochs of 10 (1,500 steps), and a bound of 14 (2,100 steps) scored
0.4-2.2 points less. Hence train.min_steps 1,500 (conf/train.yaml). The plan records the bound it
resolved in its gate (reports/gates/plan.json), so a new bound re-runs train. The loop's clock
enforces the budget.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from hfclf.infra.settings import whole_number, whole_or_auto

AUTO_MIN_EPOCHS = 2        # auto: the epochs that fit in the budget, but at least this many (the budget stops it) ...
AUTO_MAX_EPOCHS = 10       # ... and at most this many, or auto_max_epochs' more on a small set (convergence ends sooner)


def min_steps(value) -> int:
    """train.min_steps, checked: a whole number of optimisation steps, at least 0 (missing: 0, the
    bound from epochs alone, as before the setting existed)."""
    return whole_number(value, "train.min_steps", "optimisation steps", 0,
                        f"0: at most {AUTO_MAX_EPOCHS} epochs whatever the data size")


def auto_max_epochs(steps_per_epoch: int, least_steps: int = 0) -> int:
    """The most epochs `auto` may plan: AUTO_MAX_EPOCHS, or as many as make `least_steps` (train.min_steps)
    optimisation steps of `steps_per_epoch` where that takes more (a small set: 67 steps per epoch, 1,500
    steps -> 23 epochs)."""
    return max(AUTO_MAX_EPOCHS, math.ceil(least_steps / max(1, steps_per_epoch)))


def max_epochs(value, epochs_in_budget: float, cap: int = AUTO_MAX_EPOCHS) -> int:
    """`train.max_epochs`: an int, or "auto" = the whole epochs that fit in the time budget
    (`epochs_in_budget`: the plan's estimate), at least AUTO_MIN_EPOCHS and at most `cap`
    (auto_max_epochs: 10, or more on a small set)."""
    epochs = whole_or_auto(value, "train.max_epochs", 1)
    if epochs is None:
        return int(min(cap, max(AUTO_MIN_EPOCHS, math.floor(epochs_in_budget))))
    return epochs


def epochs_in_budget(seconds_per_epoch: float, max_minutes: float, overhead_seconds: float) -> float:
    """How many epochs of `seconds_per_epoch` (validation passes included) fit in compute.max_minutes
    after the fixed start-up and saving cost."""
    return max(0.0, (max_minutes * 60 - overhead_seconds) / max(seconds_per_epoch, 1e-9))


def eval_rows(validation_rows: int, limit) -> int:
    """Rows scored at each validation pass (train.eval_max_rows: a seeded sample; null = all)."""
    return validation_rows if not limit else min(validation_rows, int(limit))


def first_stop_epochs(evals_per_epoch: int, patience: int, bound: int, cooldown: float = 0.0) -> float:
    """The earliest point, in epochs, at which early stopping can end a run: the first validation
    pass is the best, `patience` passes after it bring nothing better, then the cooldown (loop.train:
    `cooldown` x the steps to the best pass, at least one validation interval). A pass that reaches
    train.stop_at_score ends it sooner (easy data: target_stop_epochs; the plan says so apart)."""
    interval = 1 / max(1, evals_per_epoch)
    anneal = cooldown_length(cooldown, interval, interval) if cooldown > 0 else 0.0
    return min(float(bound), (1 + patience) * interval + anneal)


def target_stop_epochs(evals_per_epoch: int, bound: int, cooldown: float = 0.0) -> float:
    """The earliest point, in epochs, at which a pass that reaches train.stop_at_score can end a run:
    the first pass, then (with a cooldown) one validation interval's cooldown (loop.train)."""
    interval = 1 / max(1, evals_per_epoch)
    return min(float(bound), interval * (2 if cooldown > 0 else 1))


def cooldown_length(share: float, trained: float, interval: float) -> float:
    """How long the cooldown after early stopping lasts (loop.train, train.cooldown): `share` of what
    trained the weights it starts from, at least one validation interval (steps or epochs alike)."""
    return max(interval, share * trained)


def patience_window(value) -> int:
    """train.patience_window, checked: a whole number of validation passes, at least 1 (missing: 1)."""
    return whole_number(value, "train.patience_window", "validation passes", 1,
                        "1: each pass alone, 3: the median of the last three")


def windowed_score(scores: Sequence[float], window: int) -> float:
    """What early stopping's patience watches after the last of `scores` (validation passes in order): the
    median of the last `window` (fewer at the start; 1: the last pass alone). On many classes and a few
    hundred validation rows one pass can score points above its neighbours by luck; a mark set by it
    makes the following passes look like no progress and starts the cooldown while the run still
    improves (Debian 10k: +3.5 points at one pass, the cooldown began 4 passes later, validation was
    still rising at the end). A median of 3 moves only when two passes agree."""
    recent = list(scores)[-max(1, int(window)):]
    return float(statistics.median(recent))


def rise_into_best(history: Sequence[dict], best_epoch: float, key: str) -> float | None:
    """How much validation `key` rose over the epoch that ended at the best pass: its score minus the
    best of the passes at least an epoch before it (None without such passes). A run that ran out of
    epochs with this above 0 had not converged (analyze/improvements.py says so)."""
    at = [h[key] for h in history if key in h and abs(h["epoch"] - best_epoch) < 1e-6]
    before = [h[key] for h in history if key in h and h["epoch"] <= best_epoch - 1 + 1e-6]
    return float(at[-1] - max(before)) if at and before else None


def made_progress(score: float, loss: float, score_ref: float, loss_ref: float, min_delta: float,
                  loss_min_delta: float) -> bool:
    """Whether a validation pass resets patience: macro-F1 more than `min_delta` above the score that
    last reset it (a sampled score wobbles by a row or two), or a loss more than `loss_min_delta`
    (relative) below the lowest so far - on many classes and few rows the loss still falls steadily
    while macro-F1 moves in steps (loss_min_delta 0: any lower loss)."""
    return score > score_ref + min_delta or loss < loss_ref * (1 - loss_min_delta)


def describe(evals_per_epoch: int, patience: int, rows: int, bound: int, min_delta: float = 0.0,
             loss_min_delta: float = 0.0, score: str = "macro-F1", cooldown: float = 0.0,
             stop_at_score: float | None = None, window: int = 1) -> str:
    every = "at every epoch end" if evals_per_epoch <= 1 else f"{evals_per_epoch} times per epoch"
    better = f"a score better by more than {min_delta:g}" if min_delta else "a better score"
    if window > 1:
        better += f" (the median of the last {window} passes: one lucky pass does not raise the bar)"
    better += (f" or a validation loss more than {loss_min_delta:.0%} below its lowest" if loss_min_delta > 0
               else " or a lower validation loss")
    then = (f"training goes back to the best weights and decays the learning rate to 0 over {cooldown:.0%} of the "
            "steps that made them (at least one validation interval), keeping the weights it ends with" if cooldown > 0
            else "training stops, keeping the best weights")
    settle = "after a cooldown of one validation interval from that pass" if cooldown > 0 else "there, keeping its weights"
    target = (f"; when a pass scores {stop_at_score:g} or more (nothing better left to measure), training ends {settle}"
              if stop_at_score is not None else "")
    return (f"validation {score} scored {every} on {rows} rows; after {patience} pass(es) without {better}, "
            f"{then}{target}; at most {bound} epoch(s), or until the time budget")
