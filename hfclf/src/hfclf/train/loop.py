"""The fine-tuning loop: length-grouped batches, mixed precision, warmup, early stopping on
validation macro-F1, a time budget, periodic checkpoints and resume.

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
from torch.nn import functional as F

from hfclf.train import batching
from hfclf.infra.compute import Compute, release_memory
from hfclf.train.distributed import Dist, weights_checksum
from hfclf.evaluate.metrics import macro_f1

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    early_stopping_patience: int = 1
    eval_batch_size: int = 256
    max_length: int = 128
    freeze_embeddings: bool = True
    max_minutes: float = 30.0
    seed: int = 42
    checkpoint_every_minutes: float = 5.0
    log_every_steps: int = 10


@dataclass
class TrainResult:
    best_epoch: int
    best_val_macro_f1: float
    epochs_run: float
    steps: int
    train_seconds: float
    stop_reason: str                 # completed | early_stopping | time_budget
    history: list[dict] = field(default_factory=list)
    resumed_from_step: int = 0
    examples_per_second: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _optimizer(model, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": settings.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is several times faster per step; not every build/device has it
        return torch.optim.AdamW(groups, lr=settings.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=settings.learning_rate, foreach=device.type != "cpu")


def _schedule(optimizer, total_steps: int, warmup_ratio: float):
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
          augment: Callable[[Sequence[str], int], list[str]] | None = None) -> TrainResult:
    """Fine-tune `model` in place; on return it holds the weights of the best validation epoch.

    Under torchrun / accelerate launch (`dist`), each rank trains on its shard of every epoch's
    batches through DistributedDataParallel; only rank 0 writes checkpoints or shows progress.
    `augment(texts, epoch)` (train.augment.*) perturbs the training texts afresh each epoch; they
    are then re-tokenized per epoch. Without it the texts are tokenized once.
    """
    from tqdm.auto import tqdm

    started = time.monotonic()
    on_metrics = on_metrics or (lambda metrics, step: None)
    dist = dist or Dist()
    torch.manual_seed(settings.seed)
    model.to(compute.device)
    if settings.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    pad_id = tokenizer.pad_token_id or 0
    train_enc = batching.tokenize(tokenizer, train_texts, settings.max_length)
    val_enc = batching.tokenize(tokenizer, val_texts, settings.max_length)
    lengths = [len(e) for e in train_enc]
    targets = torch.tensor(np.asarray(train_labels), dtype=torch.long)
    steps_per_epoch = dist.steps(math.ceil(len(train_enc) / settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    optimizer = _optimizer(model, settings, compute.device)
    scheduler = _schedule(optimizer, total_steps, settings.warmup_ratio)

    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": 0, "bad_epochs": 0,
             "history": [], "best_weights": None, "elapsed": 0.0}
    resumed_from = 0
    if resume and checkpoint_path and checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, model, optimizer, scheduler)
        resumed_from = state["step"]
        log.info("resuming from %s at epoch %d, step %d", checkpoint_path, state["epoch"] + 1, state["step"])
    elif resume:
        log.warning("train.resume=true but there is no checkpoint at %s: starting from scratch", checkpoint_path)
    forward = dist.wrap(model)  # the model itself, or its DistributedDataParallel wrapper
    checkpoint_path = checkpoint_path if dist.is_main else None

    budget = settings.max_minutes * 60
    clock = time.monotonic() - state["elapsed"]
    last_checkpoint = time.monotonic()
    stop_reason = "completed"
    model.train()
    progress = tqdm(total=total_steps, initial=state["step"], desc="train", unit="step", dynamic_ncols=True,
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
            with compute.autocast():
                logits = forward(input_ids=ids.to(compute.device), attention_mask=mask.to(compute.device)).logits
            loss = F.cross_entropy(logits.float(), targets[index].to(compute.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {state['step']}; "
                                         "lower train.learning_rate or use compute.precision=fp32.")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            running_loss += loss.item()
            running_n += 1
            progress.update(1)
            if state["step"] % settings.log_every_steps == 0:
                mean = dist.mean(running_loss / running_n)
                progress.set_postfix(loss=f"{mean:.4f}", epoch=epoch + 1)
                on_metrics({"train_loss": mean, "learning_rate": scheduler.get_last_lr()[0]}, state["step"])
                running_loss, running_n = 0.0, 0
            if dist.any(time.monotonic() - clock > budget):  # every rank stops at the same step
                stop_reason = "time_budget"
                break
            if checkpoint_path and time.monotonic() - last_checkpoint > settings.checkpoint_every_minutes * 60:
                state["elapsed"] = time.monotonic() - clock
                _save_checkpoint(checkpoint_path, model, optimizer, scheduler, state)
                last_checkpoint = time.monotonic()
        epoch_fraction = (state["step"] - epoch * steps_per_epoch) / steps_per_epoch
        release_memory()  # the epoch's freed activations, before validation allocates its own (peak RSS)
        val_logits = predict_logits(model, val_enc, pad_id, compute, settings.eval_batch_size)
        val_pred = val_logits.argmax(1)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.tensor(np.asarray(val_labels))).item())
        record = {"epoch": round(epoch + epoch_fraction, 3), "step": state["step"], "val_loss": val_loss,
                  "val_accuracy": float((val_pred == np.asarray(val_labels)).mean()),
                  "val_macro_f1": macro_f1(val_labels, val_pred, len(val_logits[0]))}
        record = dist.from_main(record)  # every rank decides early stopping on the same numbers
        state["history"].append(record)
        on_metrics({k: v for k, v in record.items() if k.startswith("val_")} | {"epoch": record["epoch"]},
                   state["step"])
        log.info("epoch %.2f: val macro-F1 %.4f, accuracy %.4f, loss %.4f", record["epoch"],
                 record["val_macro_f1"], record["val_accuracy"], val_loss)
        if record["val_macro_f1"] > state["best_f1"]:
            last = stop_reason != "completed" or epoch + 1 >= settings.epochs
            # the last epoch's weights are already in the model: no copy (time and a model's worth of RAM)
            state.update(best_f1=record["val_macro_f1"], best_epoch=epoch + 1, bad_epochs=0,
                         best_weights=None if last else
                         copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
        else:
            state["bad_epochs"] += 1
        state["epoch"] += 1
        if stop_reason == "completed" and state["epoch"] < settings.epochs:
            if state["bad_epochs"] >= settings.early_stopping_patience:
                stop_reason = "early_stopping"
            elif checkpoint_path:
                state["elapsed"] = time.monotonic() - clock
                _save_checkpoint(checkpoint_path, model, optimizer, scheduler, state)
                last_checkpoint = time.monotonic()
    progress.close()
    if stop_reason == "time_budget":
        log.warning("time budget of %.1f minutes reached after %d steps: stopped, keeping the best epoch",
                    settings.max_minutes, state["step"])
    if state["best_weights"] is not None:
        model.load_state_dict(state["best_weights"])
    if dist.enabled:
        log.info("rank %d/%d trained %d steps on its shard; weights checksum %.6f", dist.rank, dist.world_size,
                 state["step"] - resumed_from, weights_checksum(model))
    seconds = time.monotonic() - clock
    trained_examples = (state["step"] - resumed_from) * settings.batch_size * dist.world_size
    return TrainResult(best_epoch=state["best_epoch"], best_val_macro_f1=state["best_f1"],
                       epochs_run=state["history"][-1]["epoch"] if state["history"] else 0.0,
                       steps=state["step"], train_seconds=round(seconds, 2), stop_reason=stop_reason,
                       history=state["history"], resumed_from_step=resumed_from,
                       examples_per_second=round(trained_examples / max(time.monotonic() - started, 1e-9), 1))


def _save_checkpoint(path: Path, model, optimizer, scheduler, state: dict) -> None:
    """Write atomically: a killed process never leaves a half-written checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state}, partial)
    partial.replace(path)
    log.info("checkpoint saved at step %d (%s)", state["step"], path)


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return saved["state"]
