"""The DVC contract: what each pipeline stage runs, reads and writes - one table, and dvc.yaml rendered from it.

`hfclf contract` checks the project's dvc.yaml against the table (exit 2 naming each stage and key
that differs); `hfclf contract --write` rewrites it. The template's dvc.yaml is this rendering.

The rules the table follows:

- **Code.** A stage's entry point and everything it imports come from the pinned library, so every
  stage lists `pyproject.toml: tool.hfclf.version` as a param (DVC reads nested TOML keys) and
  refuses to run under another installed version (hfclf.infra.cli). The user's own code is a dep
  of exactly the stages that run it: src/<package>/data.py of `prepare`, src/<package>/model.py of
  `smoke` and `train`.
- **Params.** Exactly the keys a stage's code reads, by file. Left out on purpose, because they
  change where things are recorded, not what a stage computes: tracking.uri / tracking.experiment
  (the MLflow store), paths.* (fixed: dvc.yaml names the same paths) and, for `train`,
  plan.require_approval (a gate on starting, read from conf/plan.yaml when train starts).
- **Gates.** Stages are ordered by deterministic files, never by reports that hold timings:
  `smoke` writes reports/gates/smoke.json (passed + the checks), `plan` reports/gates/plan.json
  (the settings train must run with, their digest, approval state). `train` depends on those two
  only, so re-running the smoke test (new throughput) leaves a trained model up to date.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "{package}"            # stands for the project's package (src/<package>/) in the table
VERSION_PARAM = ("pyproject.toml", ("tool.hfclf.version",))
USER_DATA_CODE = f"src/{PACKAGE}/data.py"
USER_MODEL_CODE = f"src/{PACKAGE}/model.py"
SMOKE_GATE = "reports/gates/smoke.json"
PLAN_GATE = "reports/gates/plan.json"

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
                  (DATA, ("source", "revision", "subset", "text_column", "label_column", "out_of_scope",
                          "loader", "clean")),
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
          deps=(_p("data/processed"), _p(USER_MODEL_CODE, "your model builder (model.builder)")),
          outs=(_report("reports/smoke.json", "checks, losses, measured throughput (plan reads it)"),
                _report(SMOKE_GATE, "passed + which checks: no timings (train's gate)")),
          param_comments={"conf/train.yaml": "only what changes a few steps; epochs etc. are the plan's business"}),
    Stage("plan",
          params=(("conf/plan.yaml", ("plan",)),
                  ("conf/train.yaml", ("train.epochs", "train.batch_size", "train.learning_rate",
                                       "train.warmup_ratio", "train.weight_decay", "train.early_stopping_patience")),
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
                  (DATA, ("text_column", "label_column")),
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


# --------------------------------------------------------------------------- rendering

def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _line(text: str, comment: str = "") -> str:
    """An item with its end-of-line comment: not column-aligned, so the file reads the same whatever
    the package name is (the template renders the name later, with Jinja)."""
    return f"{text}   # {comment}" if comment else text


def _render_stage(stage: Stage, package: str) -> list[str]:
    lines = [f"  # {line}" for line in stage.about]
    lines += [f"  {stage.name}:", f"    cmd: {stage.cmd}"]
    if stage.deps:
        lines.append("    deps:")
        lines += [_line(f"      - {d.path.format(package=package)}", d.comment) for d in stage.deps]
    lines.append("    params:")
    for file, keys in stage.all_params():
        lines.append(_line(f"      - {file}:", stage.param_comments.get(file, "")))
        lines += [f"          - {key}" for key in keys]
    for section in ("outs", "metrics", "plots"):
        items = getattr(stage, section)
        if not items:
            continue
        lines.append(f"    {section}:")
        for item in items:
            path = item.path.format(package=package)
            if not item.options:
                lines.append(_line(f"      - {path}", item.comment))
                continue
            lines.append(_line(f"      - {path}:", item.comment))
            lines += [f"          {key}: {_scalar(value)}" for key, value in item.options.items()]
    return lines


def render(package: str) -> str:
    """dvc.yaml for a project whose own code is src/<package>/ (the template passes its Jinja placeholder)."""
    blocks = ["\n".join(_render_stage(stage, package)) for stage in STAGES]
    return HEADER.format(package=package) + "stages:\n" + "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------- checking

def expected(package: str) -> dict[str, dict]:
    """The contract as DVC would read it: stage -> normalised fields."""
    import yaml

    return {name: normalise(spec) for name, spec in yaml.safe_load(render(package))["stages"].items()}


def normalise(spec: dict) -> dict:
    """A dvc.yaml stage in a comparable form: order-free lists, options as dicts."""
    def entries(items) -> dict[str, dict]:
        out = {}
        for item in items or []:
            if isinstance(item, dict):
                for path, options in item.items():
                    out[str(path)] = dict(options or {})
            else:
                out[str(item)] = {}
        return out

    params: dict[str, set] = {}
    for item in spec.get("params") or []:
        if isinstance(item, dict):
            for file, keys in item.items():
                params.setdefault(str(file), set()).update(keys or ["<whole file>"])
        else:
            params.setdefault("params.yaml", set()).add(str(item))
    return {"cmd": spec.get("cmd"), "deps": set(map(str, spec.get("deps") or [])), "params": params,
            "outs": entries(spec.get("outs")), "metrics": entries(spec.get("metrics")),
            "plots": entries(spec.get("plots"))}


def differences(actual_stages: dict, package: str) -> list[str]:
    """One line per stage and key where `actual_stages` (dvc.yaml's `stages:`) departs from the contract."""
    problems = []
    want = expected(package)
    for name, spec in want.items():
        if name not in actual_stages:
            problems.append(f"{name}: stage missing")
            continue
        got = normalise(actual_stages[name] or {})
        if got["cmd"] != spec["cmd"]:
            problems.append(f"{name}.cmd: is {got['cmd']!r}, the contract says {spec['cmd']!r}")
        for path in sorted(spec["deps"] - got["deps"]):
            problems.append(f"{name}.deps: missing {path}")
        for path in sorted(got["deps"] - spec["deps"]):
            problems.append(f"{name}.deps: not in the contract: {path}")
        for file in sorted(set(spec["params"]) | set(got["params"])):
            missing = sorted(spec["params"].get(file, set()) - got["params"].get(file, set()))
            extra = sorted(got["params"].get(file, set()) - spec["params"].get(file, set()))
            if missing:
                problems.append(f"{name}.params: {file}: missing {', '.join(missing)}")
            if extra:
                problems.append(f"{name}.params: {file}: not in the contract: {', '.join(extra)}")
        for section in ("outs", "metrics", "plots"):
            for path in sorted(set(spec[section]) | set(got[section])):
                if path not in got[section]:
                    problems.append(f"{name}.{section}: missing {path}")
                elif path not in spec[section]:
                    problems.append(f"{name}.{section}: not in the contract: {path}")
                elif got[section][path] != spec[section][path]:
                    problems.append(f"{name}.{section}: {path}: options {got[section][path]}, "
                                    f"the contract says {spec[section][path]}")
    return problems


def package_name(root: Path) -> str:
    """The project's own package: the one folder under src/ with an __init__.py, else from pyproject's name."""
    found = sorted(p.parent.name for p in (root / "src").glob("*/__init__.py"))
    if len(found) == 1:
        return found[0]
    import tomllib

    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, KeyError, ValueError):
        from hfclf.infra.errors import UserError

        raise UserError(f"cannot tell the project's package: src/ holds {found or 'no package'} and "
                        "pyproject.toml names no project") from None
    return name.replace("-", "_")


def missing_params(root: Path) -> list[str]:
    """Param keys of the contract that the project's files lack (DVC would refuse to run the stage)."""
    import tomllib

    import yaml

    loaded: dict[str, object] = {}
    problems = []
    for stage in STAGES:
        for file, keys in stage.all_params():
            if file not in loaded:
                path = root / file
                try:
                    text = path.read_text(encoding="utf-8")
                    loaded[file] = tomllib.loads(text) if file.endswith(".toml") else yaml.safe_load(text) or {}
                except (OSError, ValueError, yaml.YAMLError) as err:
                    loaded[file] = err
            content = loaded[file]
            if isinstance(content, Exception):
                users = [s.name for s in STAGES if file in dict(s.all_params())]
                line = f"{file}: cannot be read ({type(content).__name__}); params of {', '.join(users)}"
                if line not in problems:
                    problems.append(line)
                continue
            for key in keys:
                node = content
                for part in key.split("."):
                    node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
                if node is KeyError:
                    problems.append(f"{stage.name}.params: {file}: has no key {key}")
    return problems


def check(root: Path) -> list[str]:
    import yaml

    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    stages = (yaml.safe_load(text) or {}).get("stages") or {}
    return differences(stages, package_name(root)) + missing_params(root)


def write(root: Path) -> Path:
    """Render dvc.yaml for the project at `root`, keeping stages of the user's own after the contract's."""
    import yaml

    path = root / "dvc.yaml"
    text = render(package_name(root))
    if path.exists():
        current = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
        own = {name: spec for name, spec in current.items() if name not in {s.name for s in STAGES}}
        if own:
            dumped = yaml.safe_dump(own, sort_keys=False, indent=2)
            text += "\n  # your own stages\n" + "".join(f"  {line}\n" for line in dumped.splitlines())
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- user code

def user_hook(dotted: str | None, key: str):
    """The function a config key names by dotted path (e.g. data.loader: my_project.data.load), or None.

    The project's src/ is importable even before `make install`: it is put on sys.path here.
    """
    import importlib

    from hfclf.infra.errors import UserError

    if not dotted:
        return None
    module_name, _, attr = str(dotted).rpartition(".")
    src = Path.cwd() / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    try:
        module = importlib.import_module(module_name) if module_name else None
    except Exception as err:  # an ImportError, or an error raised while importing the user's module
        raise UserError(f"{key}={dotted!r} does not import: {type(err).__name__}: {err}. "
                        f"Set {key} to a dotted path like my_package.module.function, or null.") from None
    hook = getattr(module, attr, None) if module is not None else None
    if not callable(hook):
        raise UserError(f"{key}={dotted!r} does not import: "
                        + (f"module '{module_name}' has no function '{attr}'" if module else "no module named")
                        + f". Set {key} to a dotted path like my_package.module.function, or null.")
    return hook


# --------------------------------------------------------------------------- gates

def gate_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def write_gate(path: Path, content: dict) -> None:
    """A gate file: sorted keys, no timestamps, so equal content means equal bytes (and DVC sees no change)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------- command

USAGE = """usage: hfclf contract [--write]
  check dvc.yaml against the contract hfclf derives (exit 2 on a difference); --write rewrites it."""


def main(argv: list[str] | None = None) -> None:
    from hfclf import __version__
    from hfclf.infra.cli import project_root
    from hfclf.infra.errors import UserError

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in {"-h", "--help"} for a in args) or set(args) - {"--write"}:
        print(USAGE)
        sys.exit(0 if set(args) <= {"-h", "--help"} else 2)
    try:
        root = project_root()
        if "--write" in args:
            path = write(root)
            print(f"wrote {path} from the contract of hfclf {__version__} ({len(STAGES)} stages)")
            return
        problems = check(root)
    except UserError as err:
        sys.stderr.write(f"ERROR: {err}\n")
        sys.exit(2)
    if problems:
        sys.stderr.write(f"ERROR: dvc.yaml departs from the contract of hfclf {__version__} "
                         f"({len(problems)} difference{'s' if len(problems) > 1 else ''}); "
                         "`hfclf contract --write` rewrites it:\n" + "".join(f"  {p}\n" for p in problems))
        sys.exit(2)
    print(f"dvc.yaml matches the contract of hfclf {__version__} ({len(STAGES)} stages)")


def unified_diff(actual: str, package: str) -> str:
    """The text diff between a dvc.yaml and the rendering (for tests and messages)."""
    return "".join(difflib.unified_diff(actual.splitlines(True), render(package).splitlines(True),
                                        "dvc.yaml", "contract"))
