"""Hyperparameter sweeps (`make sweep`): Hydra --multirun drives the train stage, a sweeper (Optuna
by default, conf/hparams_search/) picks the values, a launcher (joblib locally, submitit or Ray on
clusters) runs the trials. This module owns what Hydra does not:

- `SweepTracker`, a Hydra callback: one MLflow parent run per sweep, every trial's run nested
  under it; at the end the best trial's values go to `sweeps/best_params.yaml` and a summary table.
- `trial_tags()`, which the train stage puts on its run to nest it.
- `promote()` (`hfclf promote [promote.file=...]`, `make promote`): the best values written into
  conf/ (infra/config_edit.py keeps the comments), so the next `dvc repro` trains the winner.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from hfclf.infra import files
from hfclf.infra.cli import stage
from hfclf.infra.config_edit import render, set_in_file
from hfclf.infra.errors import UserError
from hfclf.infra.render import md_table

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep_run.json"      # in the sweep folder: the parent run the trials nest under
# the metric the train stage logs and returns: validation macro-F1, or micro-F1 for a multi-label task
OBJECTIVES = ("val/best_macro_f1", "val/best_micro_f1")


def objective_of(trials) -> str:
    """The objective the trials logged (the task's: train/objective.py)."""
    return next((name for name in OBJECTIVES if any(name in t.data.metrics for t in trials)), OBJECTIVES[0])
BEST_FILE = Path("sweeps/best_params.yaml")


def trial_tags() -> dict[str, str]:
    """MLflow tags that nest a train run under its sweep's parent run; empty outside a sweep."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return {}
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    info = Path(hydra_cfg.sweep.dir) / SWEEP_FILE
    if not info.exists():  # a multirun without conf/hparams_search (e.g. a plain grid): no parent run
        return {}
    return {"mlflow.parentRunId": json.loads(info.read_text(encoding="utf-8"))["run_id"],
            "sweep_trial": str(hydra_cfg.job.num), "sweep_overrides": " ".join(hydra_cfg.overrides.task)[:5000]}


def searched_keys(config: DictConfig) -> list[str]:
    """The config keys a sweep varies: the sweeper's search space plus sweeps given on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = list((OmegaConf.select(config, "hydra.sweeper.params") or {}).keys())
    for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    return keys


try:
    from hydra.experimental.callback import Callback
except ImportError:  # hydra < 1.1: sweeps are unavailable, the rest of the package is not affected
    Callback = object


class SweepTracker(Callback):
    """Hydra callback (conf/hparams_search/*.yaml registers it) that ties a sweep together in MLflow."""

    def __init__(self, best_file: str = str(BEST_FILE), keep_models: bool = False) -> None:
        self.best_file = Path(best_file)
        self.keep_models = keep_models

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from hfclf.infra import tracking

        uri = tracking.configure(config)  # an unreachable server stops the sweep before its first trial
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client = MlflowClient()
        experiment = client.get_experiment_by_name(config.tracking.experiment)
        keys = searched_keys(config)
        labels = Path(config.paths.processed) / "labels.json"
        fingerprint = json.loads(labels.read_text(encoding="utf-8")).get("fingerprint") if labels.exists() else None
        name = f"sweep · {tracking.model_short_name(config.model.name)} · {sweep_dir.name}"
        run = client.create_run(experiment.experiment_id, run_name=name, tags={
            **tracking.run_tags("sweep", fingerprint, config.model.name), "sweep_dir": str(sweep_dir),
            "sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_")),
            "launcher": str(OmegaConf.select(config, "hydra.launcher._target_"))})
        space = OmegaConf.to_container(OmegaConf.select(config, "hydra.sweeper.params") or {})
        for key in keys:
            client.log_param(run.info.run_id, f"space.{key}", str(space.get(key, "command line"))[:500])
        for key in ("n_trials", "n_jobs", "direction"):
            if OmegaConf.select(config, f"hydra.sweeper.{key}") is not None:
                client.log_param(run.info.run_id, f"sweeper.{key}", str(OmegaConf.select(config, f"hydra.sweeper.{key}")))
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({"run_id": run.info.run_id, "tracking_uri": uri,
                                                        "experiment_id": experiment.experiment_id,
                                                        "keys": keys}), encoding="utf-8")
        log.info("sweep %s: MLflow parent run %s; trials nest under it", sweep_dir, run.info.run_id)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """In the trial's process: drop its weights (the MLflow run keeps its scores and curves)."""
        model_dir = Path(config.paths.model_dir).resolve()
        if not self.keep_models and model_dir.is_relative_to(Path(config.hydra.sweep.dir).resolve()):
            shutil.rmtree(model_dir, ignore_errors=True)  # never the pipeline's own models/model

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from hfclf.infra import tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        info = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        tracking.configure(config)
        client = MlflowClient()
        parent = info["run_id"]
        trials = client.search_runs([info["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'",
                                    max_results=10000)
        metric = objective_of(trials)
        scored = sorted((t for t in trials if metric in t.data.metrics),
                        key=lambda t: t.data.metrics[metric], reverse=True)
        if not scored:
            client.set_terminated(parent, status="FAILED")
            log.error("sweep %s: no trial finished; see the trials' logs above", sweep_dir)
            return
        best = scored[0]
        values = {key: parse_value(best.data.params[key]) for key in info["keys"] if key in best.data.params}
        text = best_params_text(values, best.data.metrics[metric], sweep_dir, len(scored), len(trials),
                                parent, best.info.run_id, metric)
        for path in (sweep_dir / "best_params.yaml", self.best_file):
            files.write_text(path, text)
        summary = sweep_dir / "summary.md"
        files.write_text(summary, summary_markdown(scored, info["keys"], sweep_dir, metric))
        client.log_metric(parent, metric, best.data.metrics[metric])
        client.log_metric(parent, "sweep/trials_finished", len(scored))
        client.set_tag(parent, "best_run_id", best.info.run_id)
        for key, value in values.items():
            client.log_param(parent, f"best.{key}", str(value))
        client.log_artifact(parent, str(sweep_dir / "best_params.yaml"))
        client.log_artifact(parent, str(summary))
        client.set_terminated(parent)
        log.info("sweep %s: best %s %.4f with %s -> %s (promote: make promote)", sweep_dir, metric,
                 best.data.metrics[metric], values, self.best_file)


def parse_value(text: str) -> Any:
    """A param as MLflow stored it (a string) back to the value the config had."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    return text


def best_params_text(values: dict, score: float, sweep_dir: Path, finished: int, total: int,
                     parent: str, best_run: str, metric: str = OBJECTIVES[0]) -> str:
    lines = [f"# Best trial of sweep {sweep_dir} ({finished} of {total} trials finished):",
             f"# {metric} {score:.4f}. MLflow: sweep run {parent}, trial run {best_run}.",
             "# Keys are Hydra overrides (`hfclf train key=value` tries one).",
             "# `make promote` writes them into conf/ (file named on each line) for `dvc repro`.", ""]
    for key, value in values.items():
        path, _ = conf_location(Path("conf"), key)
        lines.append(f"{key}: {render(value)}   # {path.as_posix() if path else 'no conf file: set it by hand'}")
    return "\n".join(lines) + "\n"


def summary_markdown(scored: list, keys: list[str], sweep_dir: Path, metric: str = OBJECTIVES[0]) -> str:
    rows = [(t.data.tags.get("sweep_trial", "?"), f"{t.data.metrics[metric]:.4f}",
             *(t.data.params.get(k, "") for k in keys), t.info.run_id) for t in scored]
    return "\n".join([f"# Sweep {sweep_dir}", "", f"{len(scored)} finished trials, best first "
                      f"(objective: {metric}).", "",
                      md_table(["trial", metric, *keys, "MLflow run"], rows), ""])


# --- promote: best values into conf/ -------------------------------------------------------------

def conf_location(conf: Path, key: str) -> tuple[Path | None, list[str]]:
    """Where `key` (e.g. train.learning_rate, model.max_length) is set: the file and the key path in it."""
    head, _, rest = key.partition(".")
    if not rest:
        return None, []
    if (conf / f"{head}.yaml").is_file():       # a stage's own section: conf/train.yaml -> train: {...}
        return conf / f"{head}.yaml", [head, *rest.split(".")]
    if (conf / head / "default.yaml").is_file():  # a config group: conf/model/default.yaml -> {...}
        return conf / head / "default.yaml", rest.split(".")
    return None, []


def promote(best_file: Path = BEST_FILE, conf: Path = Path("conf")) -> dict[str, Path]:
    """Write the values of a best-params file into the conf/ files that own them; return key -> file."""
    if not best_file.exists():
        raise UserError(f"'{best_file}' does not exist: run `make sweep` first (it writes the best trial's values there).")
    values = yaml.safe_load(best_file.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise UserError(f"'{best_file}' should hold `key: value` lines (e.g. train.learning_rate: 3.0e-4).")
    plan = {}
    for key in values:
        path, keys = conf_location(conf, key)
        if path is None:
            raise UserError(f"no file under {conf}/ sets '{key}' (looked for {conf}/{key.split('.')[0]}.yaml and "
                            f"{conf}/{key.split('.')[0]}/default.yaml); set it by hand.")
        plan[key] = (path, keys)
    for key, (path, keys) in plan.items():
        set_in_file(path, keys, values[key])
    return {key: path for key, (path, _) in plan.items()}


@stage("promote")
def main(cfg: DictConfig) -> None:
    """`hfclf promote [promote.file=sweeps/best_params.yaml]` (`make promote [BEST=file]`)."""
    changed = promote(Path(cfg.promote.file))
    for key, path in changed.items():
        print(f"{key} -> {path}")
    print("Now `make train` (dvc repro) trains the promoted configuration; commit conf/ and dvc.lock.")
