"""train: fine-tune the base model and record the run in MLflow.

Outputs: models/model/ (weights, tokenizer, label mapping, classifier.json, mlflow_run.json),
reports/training.{json,md}, reports/figures/training_curves.png.
"""
import json
import logging
import platform
from pathlib import Path

from omegaconf import DictConfig

from hfclf.train import calibration, convergence, distributed, modeling, augment, sweeps, loop, objective
from hfclf.infra import compute, tracking
from hfclf.data import dataset
from hfclf.preflight import plan
from hfclf.infra.cli import stage
from hfclf.infra.render import md_table, plot_curves, write_json

log = logging.getLogger(__name__)


def settings_from(cfg: DictConfig, train_rows: int | None = None) -> loop.TrainSettings:
    """`train_rows` resolves train.max_epochs=auto (convergence.max_epochs); without it, auto is 1."""
    t = cfg.train
    epochs = convergence.max_epochs(t.max_epochs, train_rows) if train_rows is not None or \
        str(t.max_epochs) != "auto" else 1
    return loop.TrainSettings(
        epochs=epochs, batch_size=t.batch_size, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        warmup_ratio=t.warmup_ratio, early_stopping_patience=t.early_stopping_patience,
        evals_per_epoch=t.get("evals_per_epoch", 1), eval_max_rows=t.get("eval_max_rows"),
        min_delta=t.get("min_delta", 0.0), loss_min_delta=t.get("loss_min_delta", 0.0),
        eval_batch_size=t.eval_batch_size, max_length=cfg.model.max_length,
        freeze_embeddings=cfg.model.freeze_embeddings, max_minutes=cfg.compute.max_minutes,
        seed=cfg.compute.seed, checkpoint_every_minutes=t.checkpoint_every_minutes,
        log_every_steps=cfg.tracking.log_every_steps)


@stage("train")
def main(cfg: DictConfig) -> float:
    """Returns the best validation macro-F1 (multi-label: micro-F1): what Hydra sweepers (make sweep) maximise."""
    import mlflow

    processed, model_dir = Path(cfg.paths.processed), Path(cfg.paths.model_dir)
    reports = Path(cfg.paths.reports)
    label_info = dataset.read_labels(processed)
    labels = label_info["labels"]
    task = objective.for_task(label_info.get("task"))   # prepare recorded it (data.task)
    train_df, val_df = dataset.read_split(processed, "train"), dataset.read_split(processed, "validation")
    # plan.require_approval=true: refuse to start without an approval of this exact plan (preflight/plan.py)
    preflight = plan.check_before_training(reports, Path("conf"), plan.plan_settings(cfg, label_info["fingerprint"]),
                                               enforce=not plan.in_multirun())
    if preflight["matches_config"] is False:
        log.warning("this run's settings differ from reports/training_plan.md; `make plan` re-plans")
    ddp = distributed.from_env()  # under torchrun / accelerate launch: this process's rank; rank 0 logs and writes
    uri = tracking.configure(cfg) if ddp.is_main else None  # an unreachable tracking server fails here, before any compute
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    ddp.init(hw, cfg.compute.threads)
    compute.seed_everything(cfg.compute.seed)
    tokenizer, model, origin = modeling.load_for_training(cfg.model.name, labels, cfg.compute.seed,
                                                          cfg.model.get("builder"), task.task)
    settings = settings_from(cfg, len(train_df))
    checkpoint = Path(cfg.train.checkpoint_dir) / "last.pt"
    run_file = checkpoint.parent / tracking.RUN_FILE
    resume_id = (json.loads(run_file.read_text())["run_id"]
                 if cfg.train.resume and checkpoint.exists() and run_file.exists() else None)

    splits = (train_df["text"].tolist(), task.targets(train_df["label"], labels),
              val_df["text"].tolist(), task.targets(val_df["label"], labels))
    augmenter = augment.augmenter_from(cfg.train.get("augment"), cfg.compute.seed)  # train.augment.*: off by default
    if not ddp.is_main:  # the other ranks train their shard of the batches, then leave
        return loop.train(model, tokenizer, *splits, settings, hw, checkpoint_path=checkpoint,
                          resume=cfg.train.resume, dist=ddp, augment=augmenter, objective=task).best_val_score

    losses: list[tuple[int, float]] = []

    def on_metrics(metrics: dict, step: int) -> None:
        if "train/loss" in metrics:
            losses.append((step, metrics["train/loss"]))
        mlflow.log_metrics(metrics, step=step, synchronous=False)

    params = tracking.flat_params(cfg, ("data", "model", "train", "compute", "prepare"))
    trial = sweeps.trial_tags()   # a sweep trial: nested under the sweep's run
    # `train · all-MiniLM-L6-v2 · <dvc exp name or git short sha>[ · trial N]`: runs told apart in the run list
    name = tracking.run_name("train", cfg.model.name, params) + (f" · trial {trial['sweep_trial']}" if trial else "")
    with mlflow.start_run(run_id=resume_id, run_name=None if resume_id else name, tags=trial) as run:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tracking.save_run_id(checkpoint.parent, run.info.run_id, uri)
        if not resume_id:
            mlflow.log_params(params)
            tracking.log_datasets({"train": train_df, "validation": val_df}, label_info["fingerprint"],
                                  label_info.get("source"))
        mlflow.set_tags(tracking.run_tags("train", label_info["fingerprint"], cfg.model.name)
                        | {"device": str(hw.device), "precision": hw.precision, "base_model_origin": origin}
                        | ({"device_fallback": " ".join(hw.warnings)} if hw.warnings else {}))
        log.info("training on %s (%s, %d threads): %d train / %d validation rows, %d labels (%s)",
                 hw.device, hw.precision, hw.threads, len(train_df), len(val_df), len(labels), task.task)
        def attempt(device: compute.Compute, resume: bool) -> loop.TrainResult:
            nonlocal tokenizer, model
            if device is not hw:  # after a GPU out-of-memory: a fresh copy of the model for the CPU
                tokenizer, model, _ = modeling.load_for_training(cfg.model.name, labels, cfg.compute.seed,
                                                                 cfg.model.get("builder"), task.task)
            return loop.train(model, tokenizer, *splits, settings, device, checkpoint_path=checkpoint,
                              resume=resume, on_metrics=on_metrics, dist=ddp, augment=augmenter, objective=task)

        def on_fallback(message: str, cpu: compute.Compute) -> None:
            mlflow.set_tags({"device_fallback": message, "device": str(cpu.device), "precision": cpu.precision})

        if ddp.enabled:  # a multi-process run cannot move one rank to the CPU
            result = attempt(hw, cfg.train.resume)
        else:
            result, hw = compute.run_with_cpu_fallback(attempt, hw, cfg.train.resume, checkpoint, on_fallback)
        mlflow.flush_async_logging()
        compute.release_memory()  # the optimizer and activations are gone: lower the peak of what follows

        meta = {"base_model": cfg.model.name, "max_length": settings.max_length, "labels": labels,
                "abstain_threshold": None, "data_fingerprint": label_info["fingerprint"],
                "trained_with": hw.describe(), "stop_reason": result.stop_reason,
                "augment": dict(cfg.train.get("augment") or {})}
        meta |= {"task": task.task, "max_epochs": settings.epochs, "epochs_run": result.epochs_run,
                 f"best_val_{result.score_name}": result.best_val_score}
        predictor = modeling.Predictor(model, tokenizer, settings.max_length, hw, meta={"task": task.task})
        if task.multi_label:   # per-label thresholds instead of a temperature and an abstain threshold
            meta |= tune_thresholds(predictor, splits[2], splits[3], settings.eval_batch_size, cfg)
        elif cfg.train.get("calibrate", False):   # train.calibrate: temperature scaling fitted on validation
            fitted = calibration.fit_temperature_on(predictor, splits[2], splits[3], settings.eval_batch_size)
            predictor.temperature = fitted["temperature"]   # the abstain threshold below sees calibrated confidences
            meta |= {"temperature": fitted["temperature"], "calibration": fitted}
            log.info("temperature %.3f: validation ECE %.4f -> %.4f, NLL %.4f -> %.4f", fitted["temperature"],
                     fitted["ece_before"], fitted["ece_after"], fitted["nll_before"], fitted["nll_after"])
        target = (cfg.train.get("abstain") or {}).get("target_precision")
        if target and not task.multi_label:  # train.abstain.target_precision: a threshold chosen on validation
            choice = calibration.fit_abstain_threshold(predictor,
                                                       splits[2], splits[3], target, settings.eval_batch_size)
            meta |= {"abstain_threshold": choice.threshold, "abstain": choice.as_dict()}
            log.info("abstain threshold %s: validation precision %.4f at coverage %.4f (target %s)",
                     choice.threshold, choice.precision, choice.coverage, target)
        modeling.save(model, tokenizer, model_dir, meta)
        tracking.save_run_id(model_dir, run.info.run_id, uri)
        checkpoint.unlink(missing_ok=True)  # finished: the next run starts fresh

        summary = {"run_id": run.info.run_id, **result.as_dict(), f"best_val_{result.score_name}": result.best_val_score,
                   "task": task.task, **hw.describe(), "processes": ddp.world_size,
                   "warnings": hw.warnings, "python": platform.python_version(),
                   "max_epochs": settings.epochs, "calibration": meta.get("calibration"),
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        write_json(reports / "training.json", summary)
        figure = plot_curves(result.history, losses, Path(cfg.paths.figures) / "training_curves.png")
        (reports / "training.md").write_text(training_markdown(summary), encoding="utf-8")
        # scalars: logged once (step 0); only train/* and val/* per step draw curves
        mlflow.log_metrics({f"val/best_{result.score_name}": result.best_val_score, "train/seconds": result.train_seconds,
                            "train/examples_per_second": result.examples_per_second})
        mlflow.set_tag("stop_reason", result.stop_reason)
        mlflow.log_figure(figure, "figures/training_curves.png")
        tracking.log_report_files([reports / "training.md", reports / "training.json",
                                   reports / "data_profile.md"])
        log_preflight(reports, Path(cfg.paths.figures), preflight)
    log.info("saved model to %s (best at epoch %.2f, validation %s %.4f, %s, %.1f s)", model_dir,
             result.best_epoch, result.score_name, result.best_val_score, result.stop_reason, result.train_seconds)
    return result.best_val_score


def log_preflight(reports: Path, figures: Path, preflight: dict) -> None:
    """The pre-flight reports (profile, review, smoke, plan, approval) into the model's MLflow run."""
    import mlflow

    tracking.log_report_files([reports / name for name in (
        "data_profile.json", "review.md", "review.json", "smoke.json", plan.PLAN_MD, plan.PLAN_JSON,
        plan.APPROVAL)])
    tracking.log_report_files([figures / "class_counts.png", figures / "text_lengths.png"], "figures")
    mlflow.set_tags({f"plan_{key}": str(value) for key, value in preflight.items()})
    planned = plan.load_plan(reports)
    if planned:
        mlflow.log_metric("plan/estimated_minutes", planned["estimate"]["total_minutes"])
        mlflow.set_tag("review_verdict", planned["data"]["review_verdict"])


def tune_thresholds(predictor: modeling.Predictor, texts: list[str], targets, batch_size: int, cfg) -> dict:
    """Multi-label: each label's decision threshold, tuned on validation; classifier.json's entries."""
    from hfclf.evaluate import multilabel_metrics

    for key, value in (("train.calibrate", cfg.train.get("calibrate")),
                       ("train.abstain.target_precision", (cfg.train.get("abstain") or {}).get("target_precision"))):
        if value:
            log.info("%s=%s does not apply to a multi-label model: per-label thresholds decide instead", key, value)
    tuned = multilabel_metrics.tune_thresholds(predictor.predict_proba(texts, batch_size), targets)
    log.info("per-label thresholds tuned on %d validation rows: micro-F1 %.4f at 0.5 -> %.4f tuned",
             len(texts), tuned["micro_f1_default"], tuned["micro_f1_tuned"])
    return {"thresholds": [float(t) for t in tuned["thresholds"]], "threshold_tuning": tuned}


def training_markdown(s: dict) -> str:
    score = s.get("score_name", "macro_f1")
    named = {"macro_f1": "macro-F1", "micro_f1": "micro-F1"}[score]
    stop = {"completed": "ran to the epoch bound (train.max_epochs)",
            "early_stopping": f"stopped at convergence: validation {named} stopped improving",
            "time_budget": "**stopped at the time budget** (compute.max_minutes)"}[s["stop_reason"]]
    columns = ["val_macro_f1"] + (["val_micro_f1"] if score == "micro_f1" else [])
    rows = [(h["epoch"], h["step"], h["val_loss"], h["val_accuracy"], *(h[c] for c in columns)) for h in s["history"]]
    warnings = "\n".join(f"- ⚠️ {w}" for w in s["warnings"]) or "- none"
    return "\n".join([
        "# Training", "",
        f"- device: `{s['device']}` · precision: `{s['precision']}` · threads: {s['threads']}",
        f"- time: {s['train_seconds']:.1f} s · throughput: {s['examples_per_second']:.0f} examples/s",
        f"- steps: {s['steps']} · epochs run: {s['epochs_run']} · {stop}",
        f"- best epoch: {s['best_epoch']} (validation {named} {s['best_val_score']:.4f}); epoch bound "
        f"{s.get('max_epochs', '?')}",
        *([f"- calibration: temperature {c['temperature']:.3f}, validation ECE {c['ece_before']:.4f} → "
           f"{c['ece_after']:.4f}"] if (c := s.get("calibration")) else []),
        f"- parameters: {s['parameters']:,} ({s['trainable_parameters']:,} trainable)",
        f"- MLflow run: `{s['run_id']}`", "",
        "![training curves](figures/training_curves.png)", "",
        md_table(["epoch", "step", "val loss", "val accuracy" if score == "macro_f1" else "val exact-set accuracy",
                  "val macro-F1", *(["val micro-F1 (best single threshold)"] if score == "micro_f1" else [])], rows), "",
        "## Warnings", "", warnings, ""])
