"""The DVC contract: what each pipeline stage runs, reads and writes - one table (STAGES), the
single source dvc.yaml is derived from.

This module is the contract itself and nothing else: the Entry/Stage records, the stage table, its
path constants and dvc.yaml's HEADER. Rendering the table to dvc.yaml, checking a project's dvc.yaml
against it and the `hfclf contract` command live in hfclf.contract; the gate files' writer in
hfclf.preflight.gates; resolving the user's own functions in hfclf.infra.user_code.

The rules the table follows:

- **Code.** A stage's entry point and everything it imports come from the pinned library, so every
  stage lists `pyproject.toml: tool.hfclf.version` as a param (DVC reads nested TOML keys) and
  refuses to run under another installed version (hfclf.infra.cli). The user's own code is a dep
  of exactly the stages that run it: src/<package>/data.py of `prepare`, src/<package>/model.py of
  `smoke` and `train`.
- **Params.** Exactly the keys a stage's code reads, by file. Left out on purpose, because they
  change where things are recorded, not what a stage computes: tracking.uri / tracking.experiment
  (the MLflow store), tracking.progress_every_seconds (how often progress lines are logged), paths.* (fixed: dvc.yaml names the same paths) and, for `train`,
  plan.require_approval (a gate on starting, read from conf/plan.yaml when train starts).
- **Gates.** Stages are ordered by deterministic files, never by reports that hold timings:
  `smoke` writes reports/gates/smoke.json (passed + the checks), `plan` reports/gates/plan.json
  (the settings train must run with, their digest, approval state). `train` depends on those two
  only, so re-running the smoke test (new throughput) leaves a trained model up to date.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hfclf.preflight.gates import PLAN_GATE, SMOKE_GATE

PACKAGE = "{package}"            # stands for the project's package (src/<package>/) in the table
VERSION_PARAM = ("pyproject.toml", ("tool.hfclf.version",))
USER_DATA_CODE = f"src/{PACKAGE}/data.py"
USER_MODEL_CODE = f"src/{PACKAGE}/model.py"

MODEL, DATA, COMPUTE = "conf/model/default.yaml", "conf/data/default.yaml", "conf/compute/default.yaml"
NOT_CACHED = {"cache": False}


@dataclass(frozen=True)
class Entry:
    """One dep / out / metric / plot: its path, DVC options and an optional end-of-line comment."""
    path: str
    options: dict = field(default_factory=dict)
    comment: str = ""


def _p(path: str, comment: str = "", **options) -> Entry:
    return Entry(path, dict(options), comment)


def _report(path: str, comment: str = "", **options) -> Entry:
    """A small text output: kept in git, not in the DVC cache."""
    return Entry(path, {"cache": False, **options}, comment)


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[tuple[str, tuple[str, ...]], ...]      # (file, keys); the version param is added to all
    deps: tuple[Entry, ...] = ()
    outs: tuple[Entry, ...] = ()
    metrics: tuple[Entry, ...] = ()
    plots: tuple[Entry, ...] = ()
    about: tuple[str, ...] = ()                          # comment lines above the stage
    param_comments: dict = field(default_factory=dict)   # file -> end-of-line comment

    @property
    def cmd(self) -> str:
        return f"hfclf {self.name}"

    def all_params(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return (VERSION_PARAM, *self.params)


STAGES: tuple[Stage, ...] = (
    Stage("prepare",
          params=(("conf/prepare.yaml", ("prepare",)),
                  (DATA, ("source", "revision", "subset", "text_column", "label_column", "task", "label_format",
                          "label_delimiter", "label_columns", "out_of_scope", "loader", "clean")),
                  (MODEL, ("name", "max_length")),
                  (COMPUTE, ("seed",))),
          deps=(_p("data/raw"), _p(USER_DATA_CODE, "your loader / cleaner (data.loader, data.clean)")),
          outs=(_p("data/processed"), _report("reports/data_profile.json"), _report("reports/data_profile.md")),
          plots=(_report("reports/figures/class_counts.png"), _report("reports/figures/text_lengths.png")),
          param_comments={MODEL: "the tokenizer of the token-length profile"}),
    Stage("review",
          params=(("conf/review.yaml", ("review",)),
                  (MODEL, ("name", "max_length")),
                  (COMPUTE, ("seed",))),
          deps=(_p("data/processed"), _p("reports/data_profile.json")),
          outs=(_report("reports/review.json"), _report("reports/review.md")),
          about=("Pre-flight: review the splits, smoke-test the real model, plan the run - before training.",)),
    Stage("smoke",
          params=(("conf/smoke.yaml", ("smoke",)),
                  ("conf/train.yaml", ("train.batch_size", "train.learning_rate", "train.weight_decay",
                                       "train.warmup_ratio", "train.eval_batch_size")),
                  (MODEL, ("name", "max_length", "freeze_embeddings", "builder")),
                  (COMPUTE, ("device", "precision", "threads", "seed"))),
          deps=(_p("data/processed"), _p("reports/data_profile.json", "token lengths: model.max_length=auto"),
                _p(USER_MODEL_CODE, "your model builder (model.builder)")),
          outs=(_report("reports/smoke.json", "checks, losses, measured throughput (plan reads it)"),
                _report(SMOKE_GATE, "passed + which checks: no timings (train's gate)")),
          param_comments={"conf/train.yaml": "only what changes a few steps; epochs etc. are the plan's business"}),
    Stage("plan",
          params=(("conf/plan.yaml", ("plan",)),
                  ("conf/train.yaml", ("train.max_epochs", "train.batch_size", "train.learning_rate",
                                       "train.warmup_ratio", "train.weight_decay", "train.early_stopping_patience",
                                       "train.evals_per_epoch", "train.eval_max_rows", "train.min_delta",
                                       "train.loss_min_delta", "train.cooldown", "train.stop_at_score",
                                       "train.patience_window")),
                  (MODEL, ("name", "max_length", "freeze_embeddings")),
                  (COMPUTE, ("device", "precision", "max_minutes"))),
          deps=(_p("data/processed"), _p("reports/data_profile.json"), _p("reports/review.json"),
                _p("reports/smoke.json")),
          outs=(_report("reports/training_plan.json"), _report("reports/training_plan.md"),
                _report(PLAN_GATE, "settings train must use + approval state: no estimates (train's gate)"))),
    Stage("train",
          params=(("conf/train.yaml", ("train",)),
                  (MODEL, ("name", "max_length", "freeze_embeddings", "builder")),
                  (COMPUTE, ("device", "precision", "threads", "max_minutes", "seed")),
                  ("conf/tracking/default.yaml", ("log_every_steps",))),
          deps=(_p("data/processed"), _p(USER_MODEL_CODE),
                _p(SMOKE_GATE, "train runs only after a passing smoke test ..."),
                _p(PLAN_GATE, "... and the plan (plan.require_approval in conf/plan.yaml: see README)")),
          outs=(_p("models/model"), _report("reports/training.json"), _report("reports/training.md")),
          plots=(_report("reports/figures/training_curves.png"),)),
    Stage("evaluate",
          params=(("conf/evaluate.yaml", ("evaluate",)),
                  (MODEL, ("name",)),
                  (COMPUTE, ("device", "precision", "threads", "seed"))),
          deps=(_p("data/processed"), _p("models/model")),
          metrics=(_report("reports/metrics.json"),),
          outs=(_report("reports/per_class.json"), _report("reports/evaluation.md"),
                _p("reports/predictions.parquet",
                   "every class probability per test row (binary: DVC-cached, not in git)")),
          plots=(_report("reports/predictions.csv", template="confusion", x="predicted", y="actual"),
                 _report("reports/figures/confusion_matrix.png"),
                 _report("reports/figures/confusion_matrix_normalized.png")),
          param_comments={MODEL: "the frozen-embeddings baseline's model when the trained one does not name it"}),
    Stage("analyze",
          params=(("conf/analyze.yaml", ("analyze",)),
                  (DATA, ("text_column", "label_column", "task", "label_format", "label_delimiter", "label_columns")),
                  (COMPUTE, ("device", "precision", "threads", "seed"))),
          deps=(_p("data/processed"), _p("models/model"), _p("reports/predictions.parquet"),
                _p("reports/metrics.json"), _p("data/out_of_scope"), _p("data/challenge")),
          metrics=(_report("reports/analysis_metrics.json"),),
          outs=(_report("reports/failure_analysis.md"), _report("reports/failure_analysis.json"),
                _report("reports/improvements.md")),
          plots=tuple(_report(f"reports/figures/{name}.png") for name in (
              "confidence_histogram", "reliability_diagram", "slices", "robustness", "out_of_scope")),
          about=("Failure analysis: calibration, hard examples, slices, robustness, out-of-scope, challenge set;",
                 "improvements.md suggests config switches. It writes only its own outputs.")),
    Stage("register",
          params=(("conf/register.yaml", ("register",)),),
          deps=(_p("models/model"), _p("reports/metrics.json")),
          outs=(_report("reports/registry.json"),),
          about=("The trained model into the MLflow model registry (a pyfunc model over modeling.Predictor);",
                 "the same weights and code reuse their version.")),
    Stage("card",
          params=(("conf/card.yaml", ("card",)),
                  ("conf/hub_repo/default.yaml", ("repo_id",)),
                  (DATA, ("source", "text_column", "label_column"))),
          deps=tuple(_p(path) for path in (
              "models/model", "reports/metrics.json", "reports/per_class.json", "reports/predictions.csv",
              "reports/training.json", "reports/data_profile.json", "reports/registry.json",
              "reports/failure_analysis.md", "reports/figures/confusion_matrix_normalized.png")),
          outs=(_p("dist/model", "DVC-cached (not in git): `make pull` restores it, so a fresh clone need not re-run card"),),
          about=("The model card and dist/model/, exactly the folder `make publish` uploads.",)),
)

HEADER = """\
# The pipeline, derived from the hfclf library's contract (hfclf.pipeline): `hfclf contract` checks
# this file against it, `hfclf contract --write` rewrites it (stages of your own may follow these).
# Each stage runs `hfclf <stage>` and lists as params exactly the config keys its code reads, plus
# the pinned library version (pyproject.toml [tool.hfclf] version): a new version re-runs everything.
# Your own code is a dep only of the stages that run it:
#   src/{package}/data.py -> prepare;  src/{package}/model.py -> smoke, train.
# Stages meet through deterministic gate files (reports/gates/), never through timing reports.
# `dvc repro` (or `make all`) runs what is out of date; nothing else.
"""
