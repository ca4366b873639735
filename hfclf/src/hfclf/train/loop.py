"""The fine-tuning loop: length-grouped batches, mixed precision, warmup, early stopping on
the validation score (macro-F1; multi-label micro-F1) followed by a short cooldown, a time budget,
periodic checkpoints and resume.

A plain PyTorch loop rather than transformers.Trainer: it tokenizes once, pads per batch, and
does nothing per step that the run does not need, which is what makes CPU training fast (see
bench/). Everything the loop needs arrives as arguments; it knows nothing of Hydra or MLflow.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hfclf.infra import progress as bars
from hfclf.infra.compute import Compute, release_memory
from hfclf.train import batching, convergence
from hfclf.train.distributed import Dist, weights_checksum
from hfclf.train.objective import Objective
from hfclf.train.optimizer import LambdaSchedule, make_adamw

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    epochs: int = 3                  # upper bound on passes over the data (train.max_epochs, resolved)
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    early_stopping_patience: int = 1  # validation passes without a better score before stopping (macro-F1; multi-label micro-F1)
    eval_batch_size: int = 256
    evals_per_epoch: int = 1         # validation passes per epoch (the last at the epoch end)
    cooldown: float = 0.0            # when patience runs out: anneal from the best weights over this share of
                                     # the steps that made them (at least one validation interval), keeping
                                     # the annealed weights; 0: stop there, keeping the best pass
    min_delta: float = 0.0           # a score gain of at most this does not reset early stopping's patience ...
    loss_min_delta: float = 0.0      # ... unless validation loss fell by more than this share below its lowest
    patience_window: int = 1         # patience watches the median score of the last this many passes (3: one lucky
                                     # pass cannot set the mark the next ones must beat; 1: each pass alone)
    eval_max_rows: int | None = None # score a seeded sample of at most this many validation rows (None: all)
    stop_at_score: float | None = None  # the first pass that scores at least this ends the run (near-perfect:
                                     # nothing left that validation could measure): after a cooldown of one
                                     # validation interval from its weights, or at once without a cooldown; None: never
    max_length: int = 128
    freeze_embeddings: bool = True
    max_minutes: float = 30.0
    seed: int = 42
    checkpoint_every_minutes: float = 5.0  # resumable state at most this long apart (0: after every step)
    log_every_steps: int = 10


@dataclass
class TrainResult:
    best_epoch: float                # in epochs (0.25: a quarter of the way through the first)
    best_val_score: float            # the best validation `score_name` (early stopping's figure)
    epochs_run: float
    steps: int
    train_seconds: float
    stop_reason: str                 # completed | early_stopping | target_score | time_budget
    history: list[dict] = field(default_factory=list)
    resumed_from_step: int = 0
    examples_per_second: float = 0.0
    score_name: str = "macro_f1"     # macro_f1 (single-label) | micro_f1 (multi-label): train/objective.py
    cooldown: dict | None = None     # early stopping's cooldown: from_epoch, to_epoch, learning rate at its start,
                                     # the best pass before it (epoch, score), which the cooldown replaces, and
                                     # its trigger: patience (ran out) | target (a pass reached stop_at_score)

    def as_dict(self) -> dict:
        return asdict(self)


def make_optimizer(model, settings: TrainSettings, device: torch.device):
    """AdamW (train/optimizer.py: the fused kernel, several times faster per step, where the device has it),
    with weight decay on every matrix but the LayerNorms'."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": settings.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return make_adamw(groups, settings.learning_rate, device)


def _schedule(optimizer, total_steps: int, warmup_ratio: float, steps_per_epoch: int | None = None,
              cooldown: Callable[[], dict | None] = lambda: None):
    """Linear warmup, then linear decay to 0 at the epoch bound; once `cooldown()` returns a phase
    ({start, end, factor}), linear decay from `factor` at step `start` to 0 at step `end` instead."""
    # warmup: a share of the first epoch's steps, so a generous epoch bound does not delay it
    warmup = max(1, int(min(total_steps, steps_per_epoch or total_steps) * warmup_ratio))

    def main_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    def factor(step: int) -> float:
        phase = cooldown()
        if phase is None:
            return main_factor(step)
        return phase["factor"] * max(0.0, (phase["end"] - step) / max(1, phase["end"] - phase["start"]))
    return LambdaSchedule(optimizer, factor), main_factor


def ready_to_train(model, settings: TrainSettings, compute: Compute) -> None:
    """On the device, and the word embeddings frozen when settings.freeze_embeddings."""
    model.to(compute.device)
    if settings.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)


def train_step(forward, optimizer, objective: Objective, ids: torch.Tensor, mask: torch.Tensor,
               targets: torch.Tensor, compute: Compute, step: int = 0) -> torch.Tensor:
    """One optimisation step on one padded batch (forward, loss, backward, clipping, AdamW); returns
    the loss. `forward` is the model or its DistributedDataParallel wrapper (the same parameters).
    The learning-rate schedule is the caller's."""
    with compute.autocast():
        logits = forward(input_ids=ids.to(compute.device), attention_mask=mask.to(compute.device)).logits
    loss = objective.loss(logits.float(), targets.to(compute.device))
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()} at step {step}; "
                                 "lower train.learning_rate or use compute.precision=fp32.")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(forward.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


@torch.inference_mode()
def predict_logits(model, encoded: Sequence[Sequence[int]], pad_id: int, compute: Compute,
                   batch_size: int) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = None
    for index in batching.inference_batches([len(e) for e in encoded], batch_size):
        ids, mask = batching.pad([encoded[i] for i in index], pad_id)
        with compute.autocast():
            logits = model(input_ids=ids.to(compute.device), attention_mask=mask.to(compute.device)).logits
        logits = logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(encoded), logits.shape[1]), dtype=np.float32)
        out[index] = logits
    model.train(was_training)
    return out


def train(model, tokenizer, train_texts: Sequence[str], train_labels: np.ndarray,
          val_texts: Sequence[str], val_labels: np.ndarray, settings: TrainSettings, compute: Compute,
          checkpoint_path: Path | None = None, resume: bool = False,
          on_metrics: Callable[[dict, int], None] | None = None, dist: Dist | None = None,
          augment: Callable[[Sequence[str], int], list[str]] | None = None,
          objective: Objective | None = None, before_checkpoint: Callable[[], None] | None = None) -> TrainResult:
    """Fine-tune `model` in place; on return it holds the weights of the best validation pass.

    `objective` (train/objective.py) says what the targets are (class ids, or 0/1 label rows for a
    multi-label task), the loss and the validation score: macro-F1, multi-label micro-F1.
    Validation (a seeded sample of at most `eval_max_rows` rows) is scored `evals_per_epoch` times
    per epoch; training stops when `early_stopping_patience` passes in a row bring no better
    score (the median of the last `patience_window` passes: one lucky pass does not raise the bar),
    after `epochs` epochs (the bound), or at the time budget. The best weights are kept in memory
    (not copied when the best pass is the last). Easy data ends sooner: the first pass that scores
    at least `stop_at_score` ends the run (no later pass could count as progress).

    Early stopping does not end the run at the learning rate it had reached (with a decay to a
    generous epoch bound, often most of the peak: the weights are a noisy snapshot, and their
    validation score a lucky draw among many passes). With `cooldown` > 0 the run goes back to the
    best weights and decays the learning rate linearly to 0 over `cooldown` x the steps that made
    them (at least one validation interval, within the epoch bound); the weights at its end are the
    result (or wherever the time budget stops it). Validation is still scored at every pass, for the
    curves; neither patience nor a better pass changes the outcome during the cooldown. A pass that
    reaches `stop_at_score` starts a cooldown of one validation interval from its own weights (they
    score near-perfect already: the short anneal only settles a high-learning-rate snapshot).

    Under torchrun / accelerate launch (`dist`), each rank trains on its shard of every epoch's
    batches through DistributedDataParallel; only rank 0 writes checkpoints or shows progress.
    `augment(texts, epoch)` (train.augment.*) perturbs the training texts afresh each epoch; they
    are then re-tokenized per epoch. Without it the texts are tokenized once. `before_checkpoint()`
    runs before each checkpoint is written (the stage: the MLflow run's id beside it).
    """
    started = time.monotonic()
    objective = objective or Objective()
    score_key = f"val_{objective.score_name}"
    on_metrics = on_metrics or (lambda metrics, step: None)
    dist = dist or Dist()
    torch.manual_seed(settings.seed)
    ready_to_train(model, settings, compute)
    pad_id = tokenizer.pad_token_id or 0
    train_enc = batching.tokenize(tokenizer, train_texts, settings.max_length)
    sample = validation_sample(len(val_texts), settings.eval_max_rows, settings.seed)  # scored at every pass
    val_enc = batching.tokenize(tokenizer, [val_texts[i] for i in sample], settings.max_length)
    val_labels = np.asarray(val_labels)[sample]
    lengths = [len(e) for e in train_enc]
    targets = objective.tensor(train_labels)
    if objective.init_head(model, train_labels):   # multi-label; a resumed run's checkpoint replaces it below
        log.info("head bias set to each label's log prior odds on the %d training rows", len(train_labels))
    steps_per_epoch = dist.steps(math.ceil(len(train_enc) / settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": 0.0, "bad_evals": 0,
             "history": [], "best_weights": None, "elapsed": 0.0, "cooldown": None}
    optimizer = make_optimizer(model, settings, compute.device)
    # the learning rate reads the cooldown phase from `state` (a resumed run's, once loaded)
    scheduler, main_factor = _schedule(optimizer, total_steps, settings.warmup_ratio, steps_per_epoch,
                                       cooldown=lambda: state.get("cooldown"))
    # in-epoch step counts after which validation runs (the epoch end is always one)
    eval_points = {round(k * steps_per_epoch / settings.evals_per_epoch)
                   for k in range(1, max(1, settings.evals_per_epoch))} - {0, steps_per_epoch}
    interval = max(1, round(steps_per_epoch / max(1, settings.evals_per_epoch)))   # steps between passes

    def cooldown_ends_soon() -> bool:
        """In the cooldown, less than half a validation interval before its end: a pass here would
        only repeat the final one (cooldown passes draw the curves; they never change the result)."""
        return bool(state.get("cooldown")) and state["cooldown"]["end"] - state["step"] < interval / 2
    resumed_from = 0
    if resume and checkpoint_path and checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, model, optimizer, scheduler)
        state.setdefault("bad_evals", state.pop("bad_epochs", 0))   # a checkpoint of an older version
        state.setdefault("cooldown", None)
        resumed_from = state["step"]
        log.info("resuming from %s at epoch %d, step %d", checkpoint_path, state["epoch"] + 1, state["step"])
    elif resume:
        log.warning("train.resume=true but there is no checkpoint at %s: starting from scratch", checkpoint_path)
    forward = dist.wrap(model)  # the model itself, or its DistributedDataParallel wrapper
    checkpoint_path = checkpoint_path if dist.is_main else None

    budget = settings.max_minutes * 60
    clock = time.monotonic() - state["elapsed"]
    last_checkpoint = time.monotonic()

    def checkpoint() -> None:
        nonlocal last_checkpoint
        if checkpoint_path:
            if before_checkpoint is not None:
                before_checkpoint()
            state["elapsed"] = time.monotonic() - clock
            _save_checkpoint(checkpoint_path, model, optimizer, scheduler, state)
            last_checkpoint = time.monotonic()

    def checkpoint_due() -> bool:
        """`checkpoint_every_minutes` since the last one (or the start): a checkpoint writes the model,
        the optimizer state and the best weights so far (about 0.3-0.7 s for MiniLM on a CPU), so a
        run with many short validation passes does not write one at each; a killed run loses at most
        that many minutes (0: a checkpoint after every step)."""
        return checkpoint_path is not None and \
            time.monotonic() - last_checkpoint >= settings.checkpoint_every_minutes * 60

    def validate(last: bool) -> str | None:
        """Score the validation sample: "target" when it reached `stop_at_score` (its weights become the
        best: the cooldown starts from them, or without one they are the result), "patience" when early
        stopping's patience has run out, else None (always None for the `last` pass: the run ends there
        anyway)."""
        release_memory()  # the freed activations, before validation allocates its own (peak RSS)
        val_logits = predict_logits(model, val_enc, pad_id, compute, settings.eval_batch_size)
        record = {"epoch": round(state["step"] / steps_per_epoch, 3), "step": state["step"],
                  **objective.validation_scores(val_logits, val_labels)}
        record = dist.from_main(record)  # every rank decides early stopping on the same numbers
        state["history"].append(record)
        # MLflow names: val/loss, val/accuracy, val/macro_f1 and train/epoch, at the step reached
        on_metrics({f"val/{k[4:]}": v for k, v in record.items() if k.startswith("val_")}
                   | {"train/epoch": record["epoch"]}, state["step"])
        log.info("epoch %.2f: val %s %.4f, accuracy %.4f, loss %.4f", record["epoch"],
                 objective.score_name.replace("_f1", "-F1"), record[score_key], record["val_accuracy"],
                 record["val_loss"])
        score = record[score_key]
        reached = settings.stop_at_score is not None and score >= settings.stop_at_score and not last \
            and not state.get("cooldown")
        last = last or reached   # the weights in the model are the best: no copy
        if state.get("cooldown"):   # the cooldown's result is its last pass: annealed, not picked among noisy ones
            if last:
                state.update(best_f1=score, best_epoch=record["epoch"], best_weights=None)
        elif score > state["best_f1"]:
            # the last pass's weights are already in the model: no copy (time and a model's worth of RAM)
            state.update(best_f1=score, best_epoch=record["epoch"], best_weights=None if last else
                         copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
        # patience resets on a better macro-F1 or a falling validation loss (convergence.made_progress), the
        # score being the median of the last patience_window passes (the best weights stay the best single pass)
        watched = convergence.windowed_score([r[score_key] for r in state["history"]], settings.patience_window)
        loss_ref = state.get("loss_ref", float("inf"))
        if convergence.made_progress(watched, record["val_loss"], state.get("patience_ref", -1.0), loss_ref,
                                     settings.min_delta, settings.loss_min_delta):
            state.update(patience_ref=max(watched, state.get("patience_ref", -1.0)), bad_evals=0)
        else:
            state["bad_evals"] += 1
        state["loss_ref"] = min(loss_ref, record["val_loss"])
        if reached:
            log.info("validation %s %.4f reached train.stop_at_score=%g: nothing better left to measure",
                     objective.score_name.replace("_f1", "-F1"), score, settings.stop_at_score)
            return "target"
        out_of_patience = not state.get("cooldown") and state["bad_evals"] >= settings.early_stopping_patience
        return "patience" if out_of_patience and not last else None

    def stops(decision: str | None) -> str | None:
        """The stop reason a validation pass's decision leads to (None: go on, in a cooldown if one starts)."""
        if decision and not start_cooldown(decision):
            return "target_score" if decision == "target" else "early_stopping"
        return None

    def start_cooldown(trigger: str) -> bool:
        """Patience ran out (or a pass reached stop_at_score): back to the best weights, then a linear
        decay of the learning rate to 0 (False: no cooldown configured, or no step left within the
        epoch bound - stop now)."""
        if settings.cooldown <= 0 or state.get("cooldown"):
            return False
        best_step = round(state["best_epoch"] * steps_per_epoch)
        wanted = interval if trigger == "target" else convergence.cooldown_length(settings.cooldown, best_step, interval)
        length = min(round(wanted), total_steps - state["step"])
        if length <= 0:
            return False
        if state["best_weights"] is not None:
            model.load_state_dict(state["best_weights"])
        factor = main_factor(state["step"])
        state.update(cooldown={"start": state["step"], "end": state["step"] + length, "factor": factor,
                               "best_before": {"epoch": state["best_epoch"], "score": state["best_f1"]},
                               "trigger": trigger},
                     best_weights=None)   # from here on, the result is the cooldown's last pass
        why = ("a pass reached train.stop_at_score" if trigger == "target" else
               f"no better validation {objective.score_name} for {settings.early_stopping_patience} passes")
        log.info("%s: back to the best weights (epoch %.2f, %.4f), learning rate %.2e -> 0 over %d steps "
                 "(%.2f epochs)", why, state["best_epoch"], state["best_f1"], factor * settings.learning_rate,
                 length, length / steps_per_epoch)
        return True

    stop_reason = "completed"
    model.train()
    # live in a terminal; a line every tracking.progress_every_seconds in logs (hfclf.infra.progress)
    progress = bars.bar(total=total_steps, initial=state["step"], desc="train", unit="step",
                        disable=not dist.is_main)
    running_loss, running_n = 0.0, 0
    while state["epoch"] < settings.epochs and stop_reason == "completed":
        epoch = state["epoch"]
        rng = np.random.default_rng(settings.seed + epoch)
        if augment is not None:  # a fresh, seeded draw of perturbed texts per epoch
            train_enc = batching.tokenize(tokenizer, augment(train_texts, epoch), settings.max_length)
            lengths = [len(e) for e in train_enc]
        batches = dist.shard(batching.training_batches(lengths, settings.batch_size, rng))
        done_in_epoch = state["step"] - epoch * steps_per_epoch
        for index in batches[done_in_epoch:]:
            ids, mask = batching.pad([train_enc[i] for i in index], pad_id)
            loss = train_step(forward, optimizer, objective, ids, mask, targets[index], compute, state["step"])
            scheduler.step()
            state["step"] += 1
            running_loss += loss.item()
            running_n += 1
            progress.update(1)
            in_epoch = state["step"] - epoch * steps_per_epoch
            # the training loss every log_every_steps, and before every validation pass (a run that
            # stops early still has its training curve, aligned with the validation points)
            if state["step"] % settings.log_every_steps == 0 or in_epoch in eval_points or \
                    in_epoch == steps_per_epoch:
                mean = dist.mean(running_loss / running_n)
                progress.set_postfix(loss=f"{mean:.4f}", epoch=epoch + 1, refresh=False)
                on_metrics({"train/loss": mean, "train/learning_rate": scheduler.get_last_lr()[0]}, state["step"])
                running_loss, running_n = 0.0, 0
            if dist.any(time.monotonic() - clock > budget):  # every rank stops at the same step
                stop_reason = "time_budget"
                break
            if state.get("cooldown") and state["step"] >= state["cooldown"]["end"]:   # annealed: its last pass
                validate(last=True)
                stop_reason = "target_score" if state["cooldown"].get("trigger") == "target" else "early_stopping"
                break
            if in_epoch in eval_points and not cooldown_ends_soon():   # a validation pass mid-epoch
                reason = stops(validate(last=False))
                if reason:
                    stop_reason = reason
                    break
            if checkpoint_due():
                checkpoint()
        if stop_reason in ("early_stopping", "target_score"):
            break
        if stop_reason == "time_budget":   # the weights reached so far get their validation pass
            validate(last=True)
            break
        state["epoch"] += 1                # the epoch end
        last = state["epoch"] >= settings.epochs
        if not last and cooldown_ends_soon():
            continue
        reason = stops(validate(last=last))
        if reason:
            stop_reason = reason
    progress.close()
    if stop_reason == "time_budget":
        log.warning("time budget of %.1f minutes reached after %d steps: stopped, keeping the best pass",
                    settings.max_minutes, state["step"])
    if state["best_weights"] is not None:
        model.load_state_dict(state["best_weights"])
    if dist.enabled:
        log.info("rank %d/%d trained %d steps on its shard; weights checksum %.6f", dist.rank, dist.world_size,
                 state["step"] - resumed_from, weights_checksum(model))
    seconds = time.monotonic() - clock
    trained_examples = (state["step"] - resumed_from) * settings.batch_size * dist.world_size
    return TrainResult(best_epoch=state["best_epoch"], best_val_score=state["best_f1"],
                       score_name=objective.score_name,
                       epochs_run=state["history"][-1]["epoch"] if state["history"] else 0.0,
                       steps=state["step"], train_seconds=round(seconds, 2), stop_reason=stop_reason,
                       history=state["history"], resumed_from_step=resumed_from,
                       cooldown=_cooldown_summary(state.get("cooldown"), steps_per_epoch),
                       examples_per_second=round(trained_examples / max(time.monotonic() - started, 1e-9), 1))


def _cooldown_summary(phase: dict | None, steps_per_epoch: int) -> dict | None:
    if not phase:
        return None
    return {"from_epoch": round(phase["start"] / steps_per_epoch, 3), "to_epoch": round(phase["end"] / steps_per_epoch, 3),
            "start_factor": phase["factor"], "best_before": phase["best_before"],
            "trigger": phase.get("trigger", "patience")}


def validation_sample(rows: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the validation rows scored at every pass: all, or a seeded sample of `limit`."""
    if not limit or rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=int(limit), replace=False))


def _save_checkpoint(path: Path, model, optimizer, scheduler, state: dict) -> None:
    """Write atomically: a killed process never leaves a half-written checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state,
                "torch_rng": torch.get_rng_state()}, partial)   # dropout masks: a resumed run continues exactly
    partial.replace(path)
    log.info("checkpoint saved at step %d (%s)", state["step"], path)


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if saved.get("torch_rng") is not None:
        torch.set_rng_state(saved["torch_rng"])
    return saved["state"]
