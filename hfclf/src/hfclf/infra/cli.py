"""The one command line: `hfclf <command> [key=value ...]` (or `python -m hfclf ...`).

Every command - pipeline stages and actions alike - is a Hydra entry point over the project's
conf/<config>.yaml: it finds the project, composes the config with the overrides given, and turns
a UserError into one line on stderr (exit 2), never a traceback.
"""
import functools
import os
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from hfclf.infra.errors import UserError


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) that holds conf/ and dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf").is_dir() and (folder / "dvc.yaml").is_file():
            return folder
    raise UserError(f"no project found at or above {here}: run stages from the project folder "
                    "(the one with conf/ and dvc.yaml).")


def pinned_version(root: Path) -> str | None:
    """[tool.hfclf] version from the project's pyproject.toml: the library version its dvc.yaml and
    conf/ were made for (None when the project pins none)."""
    import tomllib

    path = root / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        pin = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("hfclf", {}).get("version")
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"'{path}' is not valid TOML ({err}): cannot read the pinned hfclf version.") from None
    return None if pin is None else str(pin)


def check_version(root: Path) -> None:
    """Refuse to run a project under another library version than the one it pins: its dvc.lock
    records results of the pinned version, and DVC re-runs stages when the pin moves, not when
    the installed library does."""
    from hfclf import __version__

    pin = pinned_version(root)
    if pin is not None and pin != __version__:
        raise UserError(f"this project pins hfclf {pin}, installed {__version__}: run `make install`")


def stage(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], None]]:
    """Make `fn(cfg)` a Hydra entry point using conf/<config_name>.yaml.

    Relative paths in the config are resolved against the project root, which becomes the
    working directory, so `python -m pkg.stages.x` works from any sub-folder too. A project that
    pins another hfclf version ([tool.hfclf] version in pyproject.toml) is refused before any work.
    """
    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
        @functools.wraps(fn)
        def main() -> None:
            import hydra  # imported here so `--help` of other tools stays fast

            try:
                root = project_root()
                check_version(root)       # before any work: the pinned library, or nothing
            except UserError as err:
                sys.stderr.write(f"ERROR: {err}\n")
                sys.exit(2)
            os.chdir(root)

            @hydra.main(version_base=None, config_path=str(root / "conf"), config_name=config_name)
            def run(cfg: DictConfig):
                from omegaconf import OmegaConf

                from hfclf.infra import progress

                # progress lines in non-interactive output (dvc repro logs, CI): tracking.progress_every_seconds
                progress.configure(OmegaConf.select(cfg, "tracking.progress_every_seconds", default=None))
                try:
                    preflight(config_name, cfg)   # config types, then the tracking server: before any work
                    return fn(cfg)  # a sweeper (hydra --multirun) optimises what the stage returns
                except UserError as err:  # the message is the whole story: no traceback
                    sys.stderr.write(f"ERROR: {err}\n")
                    sys.exit(2)

            run()
        return main
    return decorate


# Commands that log to MLflow: the tracking store is checked with a real API call before they compute.
TRACKED = {"train", "evaluate", "analyze", "register", "card"}


def preflight(config_name: str, cfg: DictConfig) -> None:
    """What every command checks once its config is composed, before any work: the types of the
    config sections the library has settings classes for, and (for TRACKED commands) that the
    MLflow tracking store answers."""
    from hfclf.infra.settings import validate_config

    validate_config(cfg)
    if config_name in TRACKED and cfg.get("tracking") is not None:
        from hfclf.infra import tracking

        tracking.check(cfg)


# command -> (module whose `main` runs it, what it does). dvc.yaml runs the stages; the Makefile the rest.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("hfclf.data.prepare", "read, validate, split and profile the data"),
    "review": ("hfclf.preflight.review", "check the splits: leakage, conflicts, imbalance, personal data"),
    "smoke": ("hfclf.preflight.smoke", "a few real training steps on a tiny subset"),
    "plan": ("hfclf.preflight.plan", "the training plan: schedule, device, time against the budget"),
    "approve": ("hfclf.preflight.approve", "record approval of the current plan"),
    "train": ("hfclf.train.stage", "fine-tune the model (MLflow run)"),
    "evaluate": ("hfclf.evaluate.stage", "test-split metrics, baselines, confusion matrix"),
    "analyze": ("hfclf.analyze.stage", "failure analysis and improvement suggestions"),
    "register": ("hfclf.ship.register", "log the model into the MLflow model registry"),
    "card": ("hfclf.ship.card", "model card + dist/model/"),
    "publish": ("hfclf.ship.publish", "upload plan (dry run) or push to the Hugging Face Hub"),
    "predict": ("hfclf.ship.predict", "label texts with the trained model"),
    "demo": ("hfclf.ship.demo", "Gradio demo on the trained model"),
    "find-datasets": ("hfclf.research.find_datasets", "search the Hub for candidate datasets"),
    "use-dataset": ("hfclf.research.use_dataset", "pin a Hub dataset in conf/data/default.yaml"),
    "promote": ("hfclf.train.sweeps", "write a sweep's best values into conf/"),
    "contract": ("hfclf.contract", "check (or --write) dvc.yaml against the stages' derived contract"),
}


def usage() -> str:
    from hfclf import __version__

    width = max(map(len, COMMANDS))
    lines = [f"hfclf {__version__}: usage: hfclf <command> [key=value ...]  (Hydra overrides of conf/<command>.yaml)", ""]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


# Commands whose process ends as soon as they return (exit_now): after training, the interpreter's
# own teardown - PyTorch, transformers and thousands of modules and objects freed one by one - took
# about 2 s of the wait for `dvc repro train` (2 shared cores), with nothing left to write.
EXIT_WHEN_DONE = {"train"}


def exit_now(code: int = 0) -> None:
    """End the process as a normal exit would - atexit handlers run, logging and the standard streams
    flushed - but without the interpreter's teardown (os._exit). While another non-daemon thread
    runs (a Hydra launcher's worker pool after a sweep), return instead: the interpreter's own exit
    knows how to stop those."""
    import atexit
    import logging
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """`hfclf <command> ...`: run the command's module with the remaining arguments."""
    import importlib

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return
    if args[0] == "--version":
        from hfclf import __version__

        print(__version__)
        return
    command = args.pop(0)
    if command not in COMMANDS:
        sys.stderr.write(f"ERROR: unknown command '{command}'.\n{usage()}\n")
        sys.exit(2)
    # make train-distributed: TRAIN_LAUNCHER (distributed.LAUNCHER_ENV: torchrun ...) replaces this process;
    # without it, train.distributed (and PyTorch) is not imported here: the stage imports it when needed
    if command == "train" and "TRAIN_LAUNCHER" in os.environ:
        from hfclf.train.distributed import relaunch_under_launcher

        relaunch_under_launcher("hfclf", [command, *args])
    sys.argv = [f"hfclf {command}", *args]   # Hydra reads overrides (and --multirun) from sys.argv
    importlib.import_module(COMMANDS[command][0]).main()
    if argv is None and command in EXIT_WHEN_DONE:   # the process's entry point (not a caller in Python)
        exit_now(0)
