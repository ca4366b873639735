"""train: fine-tune the base model and record the run in MLflow.

Outputs: models/model/ (weights, tokenizer, label mapping, classifier.json, mlflow_run.json),
reports/training.{json,md}, reports/figures/training_curves.png.

Start-up is kept short (issue #14): this module imports nothing heavy; `main` first starts the
MLflow side process (infra/run_logger.py), which imports MLflow and opens the run on another core
while this process imports PyTorch, loads the model and trains, and it gets every MLflow call from
then on down a pipe. The stage waits for it only before the first checkpoint (which records the
run's id) and once at the end, so the run is complete when the process exits. The splits are read
without pandas (data/processed.py).
The calibration and threshold tuning after training reuse the logits of the loop's best validation
pass (`ValidationLogits`) instead of predicting the validation split again.
"""
import json
import logging
import os
import platform
from pathlib import Path

from omegaconf import DictConfig

import hfclf
from hfclf.infra.cli import stage

log = logging.getLogger(__name__)


def settings_from(cfg: DictConfig, epochs: int, max_length: int):
    """The loop's TrainSettings, for `epochs` epochs at most (train: plan.epoch_bound; the smoke
    test's few steps: 1) at `max_length` tokens (model.max_length resolved: by the plan for train,
    by the token profile for the smoke test)."""
    from hfclf.train import convergence, loop

    t = cfg.train
    return loop.TrainSettings(
        epochs=epochs, batch_size=t.batch_size, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        warmup_ratio=t.warmup_ratio, early_stopping_patience=t.early_stopping_patience,
        cooldown=t.get("cooldown", 0.0) or 0.0,
        evals_per_epoch=t.get("evals_per_epoch", 1), eval_max_rows=t.get("eval_max_rows"),
        min_delta=t.get("min_delta", 0.0), loss_min_delta=t.get("loss_min_delta", 0.0),
        patience_window=convergence.patience_window(t.get("patience_window")),
        stop_at_score=t.get("stop_at_score"), eval_batch_size=t.eval_batch_size, max_length=max_length,
        freeze_embeddings=cfg.model.freeze_embeddings, max_minutes=cfg.compute.max_minutes,
        seed=cfg.compute.seed, checkpoint_every_minutes=t.checkpoint_every_minutes,
        log_every_steps=cfg.tracking.log_every_steps)


def _main_rank() -> bool:
    """Rank 0 of a torchrun / accelerate launch job, or a single process (distributed.from_env,
    read without importing PyTorch)."""
    return int(os.environ.get("RANK", 0)) == 0


@stage("train")
def main(cfg: DictConfig) -> float:
    """Returns the best validation macro-F1 (multi-label: micro-F1): what Hydra sweepers (make sweep) maximise."""
    from hfclf.infra.run_logger import RunLogger

    # rank 0 logs: its MLflow process starts now, so MLflow's imports overlap PyTorch's
    mlflow_run = RunLogger() if _main_rank() else None
    try:
        return _train(cfg, mlflow_run)
    except BaseException as err:   # the run ends FAILED (KILLED on Ctrl-C), as `with mlflow.start_run()` did
        if mlflow_run is not None:
            mlflow_run.close("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise


def _train(cfg: DictConfig, mlflow_run) -> float:
    from hfclf.data import processed as splits_on_disk
    from hfclf.infra import tracking
    from hfclf.preflight import plan
    from hfclf.train import convergence, sweeps

    processed, model_dir = Path(cfg.paths.processed), Path(cfg.paths.model_dir)
    reports = Path(cfg.paths.reports)
    label_info = splits_on_disk.read_labels(processed)
    labels = label_info["labels"]
    train_rows, val_rows = (splits_on_disk.read_columns(processed, name) for name in ("train", "validation"))
    planned = plan.load_plan(reports)
    # plan.require_approval=true: refuse to start without an approval of this exact plan (preflight/plan.py)
    preflight = plan.check_before_training(reports, Path("conf"), plan.plan_settings(cfg, label_info["fingerprint"]),
                                           planned, enforce=not plan.in_multirun())
    if preflight["matches_config"] is False:
        log.warning("this run's settings differ from reports/training_plan.md; `make plan` re-plans")
    # train.max_epochs=auto: the whole epochs that fit in compute.max_minutes at the smoke test's speed
    epochs = plan.epoch_bound(cfg.train.max_epochs, planned, cfg.compute.max_minutes,
                              convergence.min_steps(cfg.train.get("min_steps")))
    max_length = plan.max_length(cfg.model.max_length, planned, reports)   # auto: the plan's, by the data and the budget
    checkpoint = Path(cfg.train.checkpoint_dir) / "last.pt"
    run_file = checkpoint.parent / tracking.RUN_FILE
    resume_id = (json.loads(run_file.read_text())["run_id"]
                 if cfg.train.resume and checkpoint.exists() and run_file.exists() else None)
    params = tracking.flat_params(cfg, ("data", "model", "train", "compute", "prepare"))
    trial = sweeps.trial_tags()   # a sweep trial: nested under the sweep's run
    # `train · all-MiniLM-L6-v2 · <dvc exp name or git short sha>[ · trial N]`: runs told apart in the run list
    name = tracking.run_name("train", cfg.model.name, params) + (f" · trial {trial['sweep_trial']}" if trial else "")
    tags = tracking.run_tags("train", label_info["fingerprint"], cfg.model.name)
    uri = tracking.check(cfg) if mlflow_run is not None else None   # answered already: cli.preflight checked it
    if uri is not None:
        mlflow_run.use_store(uri, cfg.tracking.experiment)

    # PyTorch and transformers: imported only now, while the MLflow process imports MLflow
    from hfclf.infra import compute
    from hfclf.infra.render import write_json
    from hfclf.train import augment, calibration, distributed, loop, modeling, objective

    task = objective.for_task(label_info.get("task"))   # prepare recorded it (data.task)
    ddp = distributed.from_env()  # under torchrun / accelerate launch: this process's rank; rank 0 logs and writes
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    ddp.init(hw, cfg.compute.threads)
    compute.seed_everything(cfg.compute.seed)
    tokenizer, model, origin = modeling.load_for_training(cfg.model.name, labels, cfg.compute.seed,
                                                          cfg.model.get("builder"), task.task)
    settings = settings_from(cfg, epochs, max_length)

    splits = (train_rows["text"], task.targets(train_rows["label"], labels),
              val_rows["text"], task.targets(val_rows["label"], labels))
    augmenter = augment.augmenter_from(cfg.train.get("augment"), cfg.compute.seed)  # train.augment.*: off by default
    if mlflow_run is None:  # the other ranks train their shard of the batches, then leave
        return loop.train(model, tokenizer, *splits, settings, hw, checkpoint_path=checkpoint,
                          resume=cfg.train.resume, dist=ddp, augment=augmenter, objective=task).best_val_score

    mlflow_run.open(resume_id, None if resume_id else name, trial)
    if not resume_id:
        mlflow_run.log_params(params)
        mlflow_run.log_datasets(processed, ["train", "validation"], label_info["fingerprint"], label_info.get("source"))
    # epoch_bound: what train.max_epochs resolved to (auto: from the budget), for comparing runs
    mlflow_run.set_tags(tags | {"device": str(hw.device), "precision": hw.precision, "base_model_origin": origin,
                                "epoch_bound": settings.epochs, "max_length": settings.max_length}
                        | ({"device_fallback": " ".join(hw.warnings)} if hw.warnings else {}))

    losses: list[tuple[int, float]] = []
    announced = False

    def announce_run(wait: bool) -> None:
        """The run's id beside the checkpoints, once the MLflow process has opened the run: training
        does not wait for it (the store's start-up, seconds for a fresh database), but the first
        checkpoint does, so a resumed run continues the same MLflow run. A run that could not be
        opened stops training here, at the first metrics after the side process said so (UserError)."""
        nonlocal announced
        if not announced and (run_id := mlflow_run.run_id() if wait else mlflow_run.opened_run()):
            tracking.save_run_id(checkpoint.parent, run_id, uri)
            announced = True

    def on_metrics(metrics: dict, step: int) -> None:
        if "train/loss" in metrics:
            losses.append((step, metrics["train/loss"]))
        mlflow_run.log_metrics(metrics, step=step)
        announce_run(wait=False)

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    announce_run(wait=False)
    log.info("training on %s (%s, %d threads; OpenMP wait: %s): %d train / %d validation rows, %d labels (%s)",
             hw.device, hw.precision, hw.threads, hfclf.OPENMP_WAIT, len(splits[0]), len(splits[2]), len(labels),
             task.task)
    passes = ValidationLogits(task)

    def attempt(device: compute.Compute, resume: bool) -> loop.TrainResult:
        nonlocal tokenizer, model
        passes.clear()
        if device is not hw:  # after a GPU out-of-memory: a fresh copy of the model for the CPU
            tokenizer, model, _ = modeling.load_for_training(cfg.model.name, labels, cfg.compute.seed,
                                                             cfg.model.get("builder"), task.task)
        return loop.train(model, tokenizer, *splits, settings, device, checkpoint_path=checkpoint,
                          resume=resume, on_metrics=on_metrics, dist=ddp, augment=augmenter, objective=passes,
                          before_checkpoint=lambda: announce_run(wait=True))

    def on_fallback(message: str, cpu: compute.Compute) -> None:
        mlflow_run.set_tags({"device_fallback": message, "device": str(cpu.device), "precision": cpu.precision})

    if ddp.enabled:  # a multi-process run cannot move one rank to the CPU
        result = attempt(hw, cfg.train.resume)
    else:
        result, hw = compute.run_with_cpu_fallback(attempt, hw, cfg.train.resume, checkpoint, on_fallback)
    run_id = mlflow_run.run_id()   # opened long before the loop ended (or it says why not: nothing is saved)
    figures = Path(cfg.paths.figures)   # drawn (and logged) by the MLflow process while this one saves the model
    mlflow_run.draw("hfclf.infra.render:plot_curves", figures / "training_curves.png", result.history, losses,
                    result.cooldown)
    compute.release_memory()  # the optimizer and activations are gone: lower the peak of what follows

    meta = {"base_model": cfg.model.name, "max_length": settings.max_length, "labels": labels,
            "abstain_threshold": None, "data_fingerprint": label_info["fingerprint"],
            "trained_with": hw.describe(), "stop_reason": result.stop_reason,
            "augment": dict(cfg.train.get("augment") or {})}
    meta |= {"task": task.task, "max_epochs": settings.epochs, "epochs_run": result.epochs_run,
             f"best_val_{result.score_name}": result.best_val_score, "best_epoch": result.best_epoch,
             # what the last epoch before the best pass added (analyze: a run that ran out of epochs still rising)
             "rise_into_best": convergence.rise_into_best(result.history, result.best_epoch,
                                                          f"val_{result.score_name}")}
    predictor = modeling.Predictor(model, tokenizer, settings.max_length, hw, meta={"task": task.task})
    calibrate = cfg.train.get("calibrate", False)                               # train.calibrate
    target = (cfg.train.get("abstain") or {}).get("target_precision")           # train.abstain.target_precision
    val_logits = None
    if task.multi_label or calibrate or target:   # the trained model's validation logits, computed at most once
        val_logits = passes.best(result, len(splits[2]), loop.validation_sample(
            len(splits[2]), settings.eval_max_rows, settings.seed))
        if val_logits is None:   # the loop scored a sample of validation, or its best pass came before a resume
            val_logits = predictor.predict_logits(splits[2], settings.eval_batch_size)
    if task.multi_label:   # per-label thresholds instead of a temperature and an abstain threshold
        meta |= tune_thresholds(task.probabilities(val_logits), splits[3], cfg)
    elif calibrate:   # temperature scaling fitted on validation
        fitted = calibration.fit_temperature_to(val_logits, splits[3])
        predictor.temperature = fitted["temperature"]   # the abstain threshold below sees calibrated confidences
        meta |= {"temperature": fitted["temperature"], "calibration": fitted}
        log.info("temperature %.3f: validation ECE %.4f -> %.4f, NLL %.4f -> %.4f", fitted["temperature"],
                 fitted["ece_before"], fitted["ece_after"], fitted["nll_before"], fitted["nll_after"])
    if target and not task.multi_label:  # a threshold chosen on validation, on the (calibrated) confidences
        choice = calibration.abstain_threshold_from(task.probabilities(val_logits, predictor.temperature),
                                                    splits[3], target)
        meta |= {"abstain_threshold": choice.threshold, "abstain": choice.as_dict()}
        log.info("abstain threshold %s: validation precision %.4f at coverage %.4f (target %s)",
                 choice.threshold, choice.precision, choice.coverage, target)
    modeling.save(model, tokenizer, model_dir, meta)
    tracking.save_run_id(model_dir, run_id, uri)
    checkpoint.unlink(missing_ok=True)  # finished: the next run starts fresh

    summary = {"run_id": run_id, **result.as_dict(), f"best_val_{result.score_name}": result.best_val_score,
               "task": task.task, **hw.describe(), "processes": ddp.world_size,
               "warnings": hw.warnings, "python": platform.python_version(),
               "max_epochs": settings.epochs, "stop_at_score": settings.stop_at_score, "max_length": settings.max_length,
               "calibration": meta.get("calibration"),
               "parameters": sum(p.numel() for p in model.parameters()),
               "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    write_json(reports / "training.json", summary)
    (reports / "training.md").write_text(training_markdown(summary), encoding="utf-8")
    # scalars: logged once (step 0); only train/* and val/* per step draw curves
    mlflow_run.log_metrics({f"val/best_{result.score_name}": result.best_val_score,
                            "train/seconds": result.train_seconds,
                            "train/examples_per_second": result.examples_per_second})
    mlflow_run.set_tags({"stop_reason": result.stop_reason})
    mlflow_run.log_artifacts([reports / "training.md", reports / "training.json", reports / "data_profile.md"])
    log_preflight(mlflow_run, reports, figures, preflight, planned)
    mlflow_run.close()   # waits until every call above is applied and the figure is drawn
    log.info("saved model to %s (best at epoch %.2f, validation %s %.4f, %s, %.1f s)", model_dir,
             result.best_epoch, result.score_name, result.best_val_score, result.stop_reason, result.train_seconds)
    return result.best_val_score


class ValidationLogits:
    """The task's Objective for the training loop, keeping the logits of every validation pass it
    scores. The loop ends with the weights of its best pass, so that pass's logits are the trained
    model's on the validation rows: calibration and threshold tuning need no second prediction pass
    when the loop scored all of validation (not a sample). Everything else is the Objective's."""

    def __init__(self, objective) -> None:
        self.objective = objective
        self.passes: list = []

    def __getattr__(self, name: str):
        if name == "objective":   # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.objective, name)

    def clear(self) -> None:
        self.passes = []

    def validation_scores(self, logits, targets) -> dict:
        scores = self.objective.validation_scores(logits, targets)
        self.passes.append(logits)
        return scores

    def best(self, result, rows: int, sample) -> "object | None":
        """The best pass's logits, when the loop scored all `rows` validation rows in their order
        (`sample` is loop.validation_sample's) and that pass is one of this attempt's; else None."""
        if not self.passes or len(sample) != rows:   # a sample without replacement, sorted: all rows iff as many
            return None
        recent = result.history[-len(self.passes):]   # a resumed run's history starts with earlier passes
        for record, logits in zip(reversed(recent), reversed(self.passes)):
            if record["epoch"] == result.best_epoch and record[f"val_{result.score_name}"] == result.best_val_score:
                return logits if len(logits) == rows else None
        return None


def log_preflight(mlflow_run, reports: Path, figures: Path, preflight: dict, planned: dict | None) -> None:
    """The pre-flight reports (profile, review, smoke, plan, approval) into the model's MLflow run
    (`planned`: the plan train read when it started)."""
    from hfclf.preflight import plan

    mlflow_run.log_artifacts([reports / name for name in (
        "data_profile.json", "review.md", "review.json", "smoke.json", plan.PLAN_MD, plan.PLAN_JSON,
        plan.APPROVAL)])
    mlflow_run.log_artifacts([figures / "class_counts.png", figures / "text_lengths.png"], "figures")
    mlflow_run.set_tags({f"plan_{key}": str(value) for key, value in preflight.items()})
    if planned:
        mlflow_run.log_metrics({"plan/estimated_minutes": planned["estimate"]["total_minutes"]})
        mlflow_run.set_tags({"review_verdict": planned["data"]["review_verdict"]})


def tune_thresholds(probs, targets, cfg) -> dict:
    """Multi-label: each label's decision threshold, tuned on validation (`probs`: the trained
    model's); classifier.json's entries."""
    from hfclf.evaluate import multilabel_metrics

    for key, value in (("train.calibrate", cfg.train.get("calibrate")),
                       ("train.abstain.target_precision", (cfg.train.get("abstain") or {}).get("target_precision"))):
        if value:
            log.info("%s=%s does not apply to a multi-label model: per-label thresholds decide instead", key, value)
    tuned = multilabel_metrics.tune_thresholds(probs, targets)
    log.info("per-label thresholds tuned on %d validation rows: micro-F1 %.4f at 0.5 -> %.4f tuned",
             len(probs), tuned["micro_f1_default"], tuned["micro_f1_tuned"])
    return {"thresholds": [float(t) for t in tuned["thresholds"]], "threshold_tuning": tuned}


def training_markdown(s: dict) -> str:
    from hfclf.infra.render import md_table

    score = s.get("score_name", "macro_f1")
    named = {"macro_f1": "macro-F1", "micro_f1": "micro-F1"}[score]
    stop = {"completed": "ran to the epoch bound (train.max_epochs)",
            "early_stopping": f"stopped at convergence: validation {named} stopped improving",
            "target_score": f"stopped once validation {named} reached {s.get('stop_at_score')} (train.stop_at_score): "
                            "no later pass could count as better",
            "time_budget": "**stopped at the time budget** (compute.max_minutes)"}[s["stop_reason"]]
    cause = ("a pass reached train.stop_at_score" if (s.get("cooldown") or {}).get("trigger") == "target"
             else "patience ran out")
    columns = ["val_macro_f1"] + (["val_micro_f1"] if score == "micro_f1" else [])
    rows = [(h["epoch"], h["step"], h["val_loss"], h["val_accuracy"], *(h[c] for c in columns)) for h in s["history"]]
    warnings = "\n".join(f"- ⚠️ {w}" for w in s["warnings"]) or "- none"
    return "\n".join([
        "# Training", "",
        f"- device: `{s['device']}` · precision: `{s['precision']}` · threads: {s['threads']}",
        f"- time: {s['train_seconds']:.1f} s · throughput: {s['examples_per_second']:.0f} examples/s",
        f"- steps: {s['steps']} · epochs run: {s['epochs_run']} · {stop}",
        f"- best epoch: {s['best_epoch']} (validation {named} {s['best_val_score']:.4f}); epoch bound "
        f"{s.get('max_epochs', '?')}" + (f" · texts cut at {s['max_length']} tokens (model.max_length)"
                                          if s.get("max_length") else ""),
        *([f"- cooldown (train.cooldown): {cause} at epoch {c['from_epoch']}; back to the best weights "
           f"(epoch {c['best_before']['epoch']}, validation {named} {c['best_before']['score']:.4f}), learning rate "
           f"{c['start_factor']:.0%} of its peak → 0 by epoch {c['to_epoch']}; the result is where it ends"]
          if (c := s.get("cooldown")) else []),
        *([f"- calibration: temperature {c['temperature']:.3f}, validation ECE {c['ece_before']:.4f} → "
           f"{c['ece_after']:.4f}"] if (c := s.get("calibration")) else []),
        f"- parameters: {s['parameters']:,} ({s['trainable_parameters']:,} trainable)",
        f"- MLflow run: `{s['run_id']}`", "",
        "![training curves](figures/training_curves.png)", "",
        md_table(["epoch", "step", "val loss", "val accuracy" if score == "macro_f1" else "val exact-set accuracy",
                  "val macro-F1", *(["val micro-F1 (best single threshold)"] if score == "micro_f1" else [])], rows), "",
        "## Warnings", "", warnings, ""])
