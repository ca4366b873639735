"""The smoke test: the real model and the real code path on a tiny class-balanced subset, before
any real compute is spent.

Checks, in order, each failing fast with its name: the loss is finite, the loss decreases,
evaluation gives finite scores, the model saves and reloads, predictions are identical after the
reload, and the label mapping survives the round trip. Then it times training steps on the
batches the whole training split will be cut into, and a validation pass (train/timing.py), which
the plan turns into a time estimate - so a broken setup fails in seconds, not after an hour. With
model.max_length=auto the checks run at the data's length and the clock runs at every length the
plan may choose (train/lengths.py: from 128 up to the data's), since a token's cost grows with length.

Outputs of the `smoke` stage: reports/smoke.json (checks, losses, parameters, train/inference examples per second,
`by_length` for each length timed; the plan reads it) and reports/gates/smoke.json (passed + the checks, no timings: train's gate).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from hfclf.data import dataset, multilabel
from hfclf.infra import compute
from hfclf.infra.cli import stage
from hfclf.infra.compute import Compute
from hfclf.infra.errors import UserError
from hfclf.infra.render import write_json
from hfclf.infra.settings import from_section, whole_or_auto
from hfclf.preflight.gates import write_gate
from hfclf.train import lengths, loop, modeling, objective, timing
from hfclf.train.stage import settings_from

log = logging.getLogger(__name__)


@dataclass
class SmokeSettings:
    examples_per_class: int = 8
    eval_examples_per_class: int = 2
    steps: Any = "auto"   # a number, or "auto": `passes` passes over the subset (planned_steps)
    passes: int = 3
    min_loss_drop: float = 0.02
    max_seconds: float = 120.0
    prediction_tolerance: float = 1e-4
    timing_steps: int = 12            # training steps timed on the training split's own batches (the plan's clock)
    timing_validation_rows: int = 256  # validation rows timed for the cost of a validation pass
    timing_min_seconds: float = 10.0  # the timed steps again until this long is timed (their median round) ...
    timing_max_rounds: int = 5        # ... or this many rounds


class SmokeFailure(UserError):
    """A smoke check failed; the message names the check and what to try."""

    def __init__(self, check: str, detail: str):
        super().__init__(f"smoke check '{check}' failed: {detail}")
        self.check = check


def balanced_subset(frame: pd.DataFrame, per_class: int, seed: int, multi_label: bool = False) -> pd.DataFrame:
    """Up to `per_class` rows of every label, shuffled. Multi-label: up to `per_class` rows carrying
    each label (a row picked for one label counts for all of its labels)."""
    if not multi_label:
        picked = [group.sample(min(per_class, len(group)), random_state=seed) for _, group in frame.groupby("label")]
        return pd.concat(picked).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    shuffled = frame.sample(frac=1.0, random_state=seed)
    counts: dict[str, int] = {}
    keep = []
    for position, value in enumerate(shuffled["label"]):
        labels = multilabel.decode(value)
        if any(counts.get(label, 0) < per_class for label in labels):
            keep.append(position)
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
    return shuffled.iloc[keep].reset_index(drop=True)


def planned_steps(steps, rows: int, batch_size: int, passes: int) -> int:
    """`smoke.steps`: a number, or auto = `passes` passes over the `rows` of the subset (at least 9):
    the loss must fall on examples seen again, and 9 steps of batch 16 do not even show every example
    once when there are 50 classes."""
    count = whole_or_auto(steps, "smoke.steps", 3, " (the loss check compares thirds)")
    return max(9, math.ceil(passes * rows / max(1, batch_size))) if count is None else count


def loss_decreases(losses: list[float], min_drop: float) -> tuple[bool, float, float]:
    """Mean of the last third of the step losses at least `min_drop` (relative) below the first third's."""
    third = max(1, len(losses) // 3)
    first, last = float(np.mean(losses[:third])), float(np.mean(losses[-third:]))
    return last <= first * (1 - min_drop), first, last


def same_predictions(before: np.ndarray, after: np.ndarray, tolerance: float) -> tuple[bool, float]:
    """Same shape, the same decisions (top class; multi-label: every label's side of 0.5) and
    probabilities within `tolerance`."""
    difference = float(np.abs(before - after).max()) if before.size else 0.0
    return before.shape == after.shape and bool((before.argmax(1) == after.argmax(1)).all()) \
        and bool(((before >= 0.5) == (after >= 0.5)).all()) and difference <= tolerance, difference


def label_mapping_problems(labels: list[str], loaded: modeling.Predictor) -> list[str]:
    """What differs between the training labels and the reloaded model's id2label / label2id."""
    problems = []
    if loaded.labels != labels:
        problems.append(f"id2label is {loaded.labels}, expected {labels}")
    label2id = {str(k): int(v) for k, v in (loaded.model.config.label2id or {}).items()}
    if label2id != {label: i for i, label in enumerate(labels)}:
        problems.append(f"label2id is {label2id}")
    problem_type = getattr(loaded.model.config, "problem_type", None)
    if loaded.multi_label and problem_type != "multi_label_classification":   # pipeline() would use softmax
        problems.append(f"a multi-label model saved with problem_type {problem_type!r}")
    return problems


def run(model_name: str, labels: list[str], train_df: pd.DataFrame, val_df: pd.DataFrame,
        settings: loop.TrainSettings, smoke: SmokeSettings, hw: Compute, builder: str | None = None,
        task: str = multilabel.SINGLE, timed_lengths: list[int] | None = None) -> dict:
    """Run every check at `settings.max_length`; then time an epoch at each of `timed_lengths`
    (lengths.timed_lengths: model.max_length=auto's candidates; default: settings.max_length only).
    Return the report (raise SmokeFailure at the first failed check)."""
    started = time.monotonic()
    goal = objective.for_task(task)
    train_sub = balanced_subset(train_df, smoke.examples_per_class, settings.seed, goal.multi_label)
    val_sub = balanced_subset(val_df, smoke.eval_examples_per_class, settings.seed, goal.multi_label)
    checks: list[dict] = []

    def passed(name: str, detail: str) -> None:
        checks.append({"check": name, "passed": True, "detail": detail})
        log.info("smoke check '%s' passed: %s", name, detail)

    tokenizer, model, origin = modeling.load_for_training(model_name, labels, settings.seed, builder, task)
    passed("model loads", f"{model_name} from {origin}")
    batch_size = min(settings.batch_size, len(train_sub))
    steps_per_epoch = math.ceil(len(train_sub) / batch_size)
    steps = planned_steps(smoke.steps, len(train_sub), batch_size, smoke.passes)
    run_settings = dataclasses.replace(
        settings, batch_size=batch_size, epochs=max(1, math.ceil(steps / steps_per_epoch)),
        early_stopping_patience=10**6, max_minutes=smoke.max_seconds / 60, log_every_steps=1,
        evals_per_epoch=1, eval_max_rows=None, stop_at_score=None)   # one pass per epoch over the whole tiny
                                                                     # validation subset, every planned step
    logged: list[dict] = []
    try:
        result = loop.train(
            model, tokenizer, train_sub["text"].tolist(), goal.targets(train_sub["label"], labels),
            val_sub["text"].tolist(), goal.targets(val_sub["label"], labels), run_settings, hw,
            on_metrics=lambda metrics, step: logged.append(metrics), objective=goal)
    except FloatingPointError as err:
        raise SmokeFailure("loss is finite", f"{err}") from None
    losses = [m["train/loss"] for m in logged if "train/loss" in m]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise SmokeFailure("loss is finite", f"step losses {losses}; lower train.learning_rate or use "
                                             "compute.precision=fp32.")
    passed("loss is finite", f"{len(losses)} steps, all finite")
    ok, first, last = loss_decreases(losses, smoke.min_loss_drop)
    if not ok:
        raise SmokeFailure("loss decreases", f"mean loss went from {first:.4f} (first third of {len(losses)} steps) "
                                             f"to {last:.4f} (last third) on {len(train_sub)} repeated examples, "
                                             f"less than the {smoke.min_loss_drop:.0%} drop required. "
                                             "Check train.learning_rate (too low or too high) and that labels match texts."
                                             + (" Multi-label: the head starts at the label priors, so the loss "
                                                "falls only by learning from the texts; on a small or hard set "
                                                "give it more steps (smoke.steps)." if goal.multi_label else ""))
    passed("loss decreases", f"{first:.4f} → {last:.4f}")

    live = modeling.Predictor(model, tokenizer, settings.max_length, hw, meta={"task": task})
    val_texts = val_sub["text"].tolist()
    probs = live.predict_proba(val_texts, settings.eval_batch_size)
    if not np.isfinite(probs).all() or probs.shape != (len(val_texts), len(labels)):
        raise SmokeFailure("evaluation runs", f"probabilities of shape {probs.shape} with non-finite values")
    truth = goal.targets(val_sub["label"], labels)
    accuracy = float((goal.decide(probs) == truth).reshape(len(val_texts), -1).all(1).mean())
    passed("evaluation runs", f"{len(val_texts)} validation rows, accuracy {accuracy:.2f} (tiny subset: not a score)")

    with tempfile.TemporaryDirectory(prefix="smoke-model-") as folder:
        modeling.save(model, tokenizer, Path(folder), {"max_length": settings.max_length, "abstain_threshold": None,
                                                       "labels": labels, "smoke": True, "task": task})
        try:
            loaded = modeling.Predictor.from_dir(folder, hw, native=False)   # as transformers reads it
        except Exception as err:  # anything here means the saved folder is unusable
            raise SmokeFailure("save and reload", f"{type(err).__name__}: {err}") from None
        passed("save and reload", "weights, tokenizer and classifier.json")
        after = loaded.predict_proba(val_texts, settings.eval_batch_size)
        same, difference = same_predictions(probs, after, smoke.prediction_tolerance)
        if not same:
            raise SmokeFailure("identical predictions after reload",
                               f"largest probability difference {difference:.2e} (tolerance "
                               f"{smoke.prediction_tolerance:g}) or a different predicted class.")
        passed("identical predictions after reload", f"max difference {difference:.1e}")
        problems = label_mapping_problems(labels, loaded)
        predicted = loaded.predict(val_texts[:len(labels)])
        decoded = [label for p in predicted for label in (p.labels if goal.multi_label else [p.label])]
        if problems or any(label not in labels for label in decoded):
            raise SmokeFailure("label mapping round-trip", "; ".join(problems) or f"decoded labels {decoded}")
        passed("label mapping round-trip", f"{len(labels)} labels")

    # the plan's clock, on the real data: a validation pass, then steps on the training split's batches
    # (they train the smoke test's throwaway model further), at each length the plan may choose
    clocks = {length: clock(model, tokenizer, train_df, val_df, labels, dataclasses.replace(settings, max_length=length),
                            smoke, hw, goal)
              for length in (timed_lengths or [settings.max_length])}
    first = clocks[next(iter(clocks))]   # the data's length (model.max_length=auto) or the one set
    steps_timed, validation = first["steps"], first["validation"]

    return {
        "passed": True, "checks": checks, "model": model_name, "model_origin": origin,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "subset": {"train_rows": len(train_sub), "validation_rows": len(val_sub), "classes": len(labels)},
        "steps": result.steps, "batch_size": batch_size, "losses": [round(x, 5) for x in losses],
        "max_length": settings.max_length,
        "train_examples_per_second": first["train_examples_per_second"],
        "inference_examples_per_second": first["inference_examples_per_second"],
        "by_length": {str(length): {k: c[k] for k in ("train_examples_per_second", "inference_examples_per_second",
                                                      "epoch_training_seconds")} for length, c in clocks.items()},
        "timing": {"training": {k: round(v, 4) if isinstance(v, float) else v for k, v in steps_timed.items()},
                   "validation": {k: round(v, 3) if isinstance(v, float) else v for k, v in validation.items()},
                   "epoch_training_seconds": first["epoch_training_seconds"]},
        "mean_tokens_per_text": round(float(np.mean([len(x) for x in tokenizer(
            train_sub["text"].tolist(), truncation=True, max_length=settings.max_length)["input_ids"]])), 1),
        "seconds": round(time.monotonic() - started, 1), **hw.describe(), "warnings": hw.warnings,
    }


def clock(model, tokenizer, train_df: pd.DataFrame, val_df: pd.DataFrame, labels: list[str],
          settings: loop.TrainSettings, smoke: SmokeSettings, hw: Compute, goal: objective.Objective) -> dict:
    """What a validation pass and an epoch of training cost at `settings.max_length` (train/timing.py)."""
    validation = timing.validation_pass_seconds(model, tokenizer, val_df["text"].tolist(), settings, hw,
                                                smoke.timing_validation_rows)
    steps = timing.training_step_seconds(model, tokenizer, train_df["text"].tolist(),
                                         goal.targets(train_df["label"], labels), settings, hw, goal, smoke.timing_steps,
                                         smoke.timing_min_seconds, smoke.timing_max_rounds)
    epoch_seconds = steps["step_seconds"] * steps["steps_per_epoch"]
    log.info("timed at max_length %d: an epoch of training about %.0f s (the median of %d rounds of %d steps, "
             "%s s per step), a validation pass %.1f s", settings.max_length, epoch_seconds, len(steps["rounds"]),
             steps["steps_timed"], " / ".join(f"{r:.3f}" for r in steps["rounds"]), validation["pass_seconds"])
    return {"steps": steps, "validation": validation, "epoch_training_seconds": round(epoch_seconds, 1),
            "train_examples_per_second": round(len(train_df) / max(epoch_seconds, 1e-9), 1),
            "inference_examples_per_second": round(validation["rows"] / max(validation["pass_seconds"], 1e-9), 1)}


def gate(report: dict) -> dict:
    """What train waits for (reports/gates/smoke.json): that the smoke test passed, and which checks
    it ran - no losses, timings or throughput, so a re-run that passes again writes the same bytes
    and leaves a trained model up to date."""
    return {"passed": bool(report["passed"]), "checks": [c["check"] for c in report["checks"] if c["passed"]]}


@stage("smoke")
def main(cfg: DictConfig) -> None:
    processed, reports = Path(cfg.paths.processed), Path(cfg.paths.reports)
    label_info = dataset.read_labels(processed)
    labels = label_info["labels"]
    train_df, val_df = dataset.read_split(processed, "train"), dataset.read_split(processed, "validation")
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    compute.seed_everything(cfg.compute.seed)
    settings = from_section(SmokeSettings, cfg.smoke, "smoke")
    tokens = lengths.profile_tokens(reports)
    timed = lengths.timed_lengths(cfg.model.max_length, tokens)   # auto: the data's length first, then shorter
    if len(timed) > 1:
        log.info("model.max_length=auto: the data's length is %d (99%% of training texts have at most %g tokens; "
                 "the model takes %s); timing an epoch at %s so the plan can keep the longest the budget allows",
                 timed[0], tokens["p99"], tokens.get("model_max_positions") or "an unknown number",
                 ", ".join(map(str, timed)))
    gate_path = reports / "gates" / "smoke.json"   # gates.SMOKE_GATE
    for stale in (reports / "smoke.json", gate_path):   # a failed smoke test leaves no stale pass behind
        stale.unlink(missing_ok=True)
    report = run(cfg.model.name, labels, train_df, val_df, settings_from(cfg, 1, timed[0]), settings, hw,
                 cfg.model.get("builder"), label_info.get("task", multilabel.SINGLE), timed)
    write_json(reports / "smoke.json", report)
    write_gate(gate_path, gate(report))
    log.info("smoke test passed in %.1f s on %s (%s, OpenMP wait: %s): %.0f train / %.0f inference examples per "
             "second (an epoch of training about %.0f s, timed on %d of its batches)", report["seconds"],
             report["device"], report["precision"], report["openmp_wait"], report["train_examples_per_second"],
             report["inference_examples_per_second"], report["timing"]["epoch_training_seconds"],
             report["timing"]["training"]["steps_timed"])
