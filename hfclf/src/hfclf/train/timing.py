"""What a training step and a validation pass cost on this device, measured on the data itself.

The smoke test trains on a tiny class-balanced subset (its checks need examples seen again), but
that subset is a poor clock: a few dozen texts make a handful of batches, so length grouping cannot
keep them one length (long, varied texts pad heavily), and a few seconds of steps are at the mercy
of whatever else the machine is doing. The plan's estimate needs what an epoch of the real training
split costs, so `training_step_seconds` times the batches that split will really be cut into
(`batching.training_batches`, as `loop.train` cuts them) - a sample stratified by batch size, so
short and long batches count as often as an epoch has them - and `validation_pass_seconds` times a
pass over the validation rows the loop scores.

The training clock runs in rounds (`timed_rounds`): the same batches again until at least
`min_seconds` have been timed or `max_rounds` rounds have run, and takes the median round. One
round of short texts is two to four seconds, and on a shared machine a slow spell of that length
once made the plan expect 60% more time than the loop took; a spell that slows one round of three
no longer moves the clock. (Validation passes are about a tenth of an epoch's estimate: timed once.)
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence

import numpy as np

from hfclf.infra.compute import Compute
from hfclf.train import batching, loop
from hfclf.train.objective import Objective

MAX_ROWS = 8192   # texts tokenized to cut an epoch's batches: enough for its shape, cheap on a big set


def strata(sizes: Sequence[int], count: int) -> list[int]:
    """Indices of `count` items spread evenly over the sorted `sizes` (the middle of each of `count`
    equal strata): a small sample whose mean estimates the mean of them all."""
    order = np.argsort(np.asarray(sizes), kind="stable")
    count = max(1, min(count, len(order)))
    return [int(order[int((k + 0.5) * len(order) / count)]) for k in range(count)]


def timed_rounds(one_round: Callable[[], float], min_seconds: float = 0.0, max_rounds: int = 1) -> list[float]:
    """The seconds of each call of `one_round` (it returns the seconds it timed): called until at least
    `min_seconds` have been timed in all or `max_rounds` calls were made, and at least once."""
    rounds = [one_round()]
    while sum(rounds) < min_seconds and len(rounds) < max(1, max_rounds):
        rounds.append(one_round())
    return rounds


def training_step_seconds(model, tokenizer, texts: Sequence[str], labels: np.ndarray, settings: loop.TrainSettings,
                          compute: Compute, objective: Objective | None = None, steps: int = 12,
                          min_seconds: float = 0.0, max_rounds: int = 1) -> dict:
    """Mean seconds per optimisation step over `steps` of the batches an epoch of `texts` is cut into,
    after one untimed warm-up step (allocation, the optimizer's state): the median of rounds over the
    same batches (`timed_rounds`). Trains `model` as it goes: pass a throwaway model (the smoke
    test's). Returns the step time, each round's, the steps per epoch of the whole split, and the
    padded tokens of the timed batches against the epoch's mean."""
    objective = objective or Objective()
    rows = loop.validation_sample(len(texts), MAX_ROWS, settings.seed)   # a seeded sample of at most MAX_ROWS
    encoded = batching.tokenize(tokenizer, [texts[i] for i in rows], settings.max_length)
    targets = objective.tensor(np.asarray(labels)[rows])
    batches = batching.training_batches([len(e) for e in encoded], settings.batch_size, np.random.default_rng(settings.seed))
    tokens = [len(index) * max(len(encoded[i]) for i in index) for index in batches]   # padded positions
    picked = strata(tokens, steps)

    loop.ready_to_train(model, settings, compute)
    model.train()
    optimizer = loop.make_optimizer(model, settings, compute.device)
    pad_id = tokenizer.pad_token_id or 0

    def step(index) -> float:
        ids, mask = batching.pad([encoded[i] for i in index], pad_id)
        started = time.perf_counter()
        loop.train_step(model, optimizer, objective, ids, mask, targets[index], compute)
        return time.perf_counter() - started

    step(batches[picked[len(picked) // 2]])                    # warm-up, untimed
    rounds = timed_rounds(lambda: sum(step(batches[i]) for i in picked), min_seconds, max_rounds)
    per_step = [seconds / len(picked) for seconds in rounds]
    return {"step_seconds": float(statistics.median(per_step)), "steps_timed": len(picked),
            "rounds": [round(seconds, 4) for seconds in per_step], "seconds_timed": round(sum(rounds), 2),
            "steps_per_epoch": math.ceil(len(texts) / settings.batch_size),
            "padded_tokens_per_step": round(float(np.mean([tokens[i] for i in picked])), 1),
            "epoch_padded_tokens_per_step": round(float(np.mean(tokens)), 1)}


def validation_pass_seconds(model, tokenizer, texts: Sequence[str], settings: loop.TrainSettings, compute: Compute,
                            max_rows: int = 256) -> dict:
    """Seconds per validation pass: `loop.predict_logits` on up to `max_rows` of the rows the loop
    scores (train.eval_max_rows), after a warm-up batch, scaled to all of them."""
    sample = loop.validation_sample(len(texts), settings.eval_max_rows, settings.seed)
    timed = sample[loop.validation_sample(len(sample), max_rows, settings.seed)]
    encoded = batching.tokenize(tokenizer, [texts[i] for i in timed], settings.max_length)
    pad_id = tokenizer.pad_token_id or 0
    loop.predict_logits(model, encoded[:8], pad_id, compute, settings.eval_batch_size)   # warm-up
    started = time.perf_counter()
    loop.predict_logits(model, encoded, pad_id, compute, settings.eval_batch_size)
    seconds = time.perf_counter() - started
    return {"pass_seconds": seconds * len(sample) / max(1, len(timed)), "rows": len(sample), "rows_timed": len(timed)}
