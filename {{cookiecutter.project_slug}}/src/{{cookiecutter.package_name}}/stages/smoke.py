"""smoke: train the real model a few steps on a tiny class-balanced subset, evaluate, save, reload,
compare, and measure throughput - so a broken setup fails in seconds, not after an hour.

Outputs: reports/smoke.json (checks, losses, parameters, train/inference examples per second).
"""
import logging
from pathlib import Path

from omegaconf import DictConfig

from .. import compute, data, smoke
from ..cli import stage
from ..reports import write_json
from .train import settings_from

log = logging.getLogger(__name__)


@stage("smoke")
def main(cfg: DictConfig) -> None:
    processed, reports = Path(cfg.paths.processed), Path(cfg.paths.reports)
    labels = data.read_labels(processed)["labels"]
    train_df, val_df = data.read_split(processed, "train"), data.read_split(processed, "validation")
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    compute.seed_everything(cfg.compute.seed)
    s = cfg.smoke
    settings = smoke.SmokeSettings(examples_per_class=s.examples_per_class,
                                   eval_examples_per_class=s.eval_examples_per_class, steps=s.steps,
                                   min_loss_drop=s.min_loss_drop,
                                   max_seconds=s.max_seconds, prediction_tolerance=s.prediction_tolerance)
    (reports / "smoke.json").unlink(missing_ok=True)   # a failed smoke test leaves no stale pass behind
    report = smoke.run(cfg.model.name, labels, train_df, val_df, settings_from(cfg), settings, hw)
    write_json(reports / "smoke.json", report)
    log.info("smoke test passed in %.1f s on %s (%s): %.0f train / %.0f inference examples per second",
             report["seconds"], report["device"], report["precision"], report["train_examples_per_second"],
             report["inference_examples_per_second"])


if __name__ == "__main__":
    main()
