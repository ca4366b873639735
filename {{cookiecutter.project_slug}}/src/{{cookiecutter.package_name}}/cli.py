"""Running a stage: find conf/, compose the Hydra config, turn UserError into a clean exit."""
import functools
import os
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from .errors import UserError


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) that holds conf/ and dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf").is_dir() and (folder / "dvc.yaml").is_file():
            return folder
    raise UserError(f"no project found at or above {here}: run stages from the project folder "
                    "(the one with conf/ and dvc.yaml).")


def stage(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], None]]:
    """Make `fn(cfg)` a Hydra entry point using conf/<config_name>.yaml.

    Relative paths in the config are resolved against the project root, which becomes the
    working directory, so `python -m pkg.stages.x` works from any sub-folder too.
    """
    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
        @functools.wraps(fn)
        def main() -> None:
            import hydra  # imported here so `--help` of other tools stays fast

            try:
                root = project_root()
            except UserError as err:
                sys.stderr.write(f"ERROR: {err}\n")
                sys.exit(2)
            os.chdir(root)

            @hydra.main(version_base=None, config_path=str(root / "conf"), config_name=config_name)
            def run(cfg: DictConfig):
                try:
                    return fn(cfg)  # a sweeper (hydra --multirun) optimises what the stage returns
                except UserError as err:  # the message is the whole story: no traceback
                    sys.stderr.write(f"ERROR: {err}\n")
                    sys.exit(2)

            run()
        return main
    return decorate
