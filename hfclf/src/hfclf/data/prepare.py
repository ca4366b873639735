"""prepare: read the raw dataset, validate it, split it, and profile it.

Outputs: data/processed/{train,validation,test}.parquet + labels.json, reports/data_profile.{json,md},
reports/figures/{class_counts,text_lengths}.png.

data.task=multi_label: each row's `label` is its canonical label set (data/multilabel.py), labels.json
records `"task": "multi_label"` and lists the individual labels, out-of-scope texts get the empty set.
"""
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from hfclf.data import dataset, label_formats, multilabel, probes, profiling, splitting
from hfclf.infra.cli import stage
from hfclf.infra.render import write_json
from hfclf.infra.user_code import user_hook
from hfclf.train import lengths

log = logging.getLogger(__name__)


@stage("prepare")
def main(cfg: DictConfig) -> None:
    source = cfg.data.source
    spec = label_formats.LabelSpec.from_config(cfg.data)
    log.info("reading %s (%s)", source, spec.task)
    loader_path, clean_path = cfg.data.get("loader"), cfg.data.get("clean")   # your code: src/<package>/data.py
    loader, cleaner = user_hook(loader_path, "data.loader"), user_hook(clean_path, "data.clean")
    loaded = (dataset.load_custom(loader, loader_path, source) if loader
              else dataset.load_source(source, cfg.data.revision, cfg.data.subset,
                                       (cfg.data.text_column, *spec.label_keys(cfg.data.label_column)),
                                       float(cfg.prepare.get("max_malformed_share", 0.0))))
    if cleaner:
        loaded = dataset.clean_with(cleaner, clean_path, loaded)
    frames, cleaning = dataset.validate(loaded, cfg.data.text_column, cfg.data.label_column, source,
                                        cfg.prepare.min_examples_per_class, spec,
                                        cfg.prepare.get("rare_labels", "refuse"))
    out_of_scope = cfg.data.get("out_of_scope")
    known = known_labels(frames, spec)
    off_topic = (probes.read_out_of_scope(out_of_scope, cfg.data.text_column, cfg.data.label_column, known,
                                          "data.out_of_scope", spec.multi) if out_of_scope else None)
    splits = splitting.split(frames, cfg.prepare.split, cfg.prepare.validation_size, cfg.prepare.test_size,
                             cfg.compute.seed, spec.task)
    if off_topic:  # data.out_of_scope: an UNKNOWN class (multi-label: no label) the model learns for off-topic texts
        label = probes.NO_LABEL if spec.multi else probes.UNKNOWN
        splits = probes.add_out_of_scope(splits, off_topic, cfg.prepare.validation_size, cfg.prepare.test_size,
                                         cfg.compute.seed, label)
        log.info("added %d out-of-scope texts from %s %s", len(set(off_topic)), out_of_scope,
                 "with no label ([])" if spec.multi else f"as class {probes.UNKNOWN}")
    labels = known_labels(splits, spec)
    unseen = sorted(set(labels) - set(known_labels({"train": splits["train"]}, spec)))
    if unseen:
        log.warning("labels %s never occur in the training split: the model cannot predict them", unseen)
    fingerprint = dataset.fingerprint(splits)
    dropped = {"empty_text": cleaning.dropped_empty_text, "missing_label": cleaning.dropped_missing_label}
    if cleaning.dropped_rare_labels:   # prepare.rare_labels=drop: label -> its rows
        dropped["rare_labels"] = cleaning.dropped_rare_labels
    if cleaning.dropped_without_label:
        dropped["rows_left_without_label"] = cleaning.dropped_without_label
    malformed = loaded.origin.pop("malformed_rows", [])
    if malformed:
        dropped["malformed_rows"] = len(malformed)
    variants = dataset.label_variants(labels)
    for group in variants:
        log.warning("labels %s differ only by case, spacing or number format: one class written several ways? "
                    "(review.fail_on_label_variants=true makes review fail on this)", group)
    texts = pd.concat([s["text"] for s in splits.values()], ignore_index=True)
    tokens = profiling.token_lengths(texts, cfg.model.name, cfg.prepare.token_length_sample, cfg.compute.seed)
    split_info = {"method": cfg.prepare.split, "kept_from_source": [s for s in ("validation", "test") if s in frames]}
    if spec.multi:
        split_info["stratification"] = "iterative"   # by label sets (data/splitting.py)
    report = profiling.profile(splits, labels, loaded.origin, dropped, fingerprint, tokens, split_info, spec.task)
    report["label_variants"] = variants
    report["malformed_rows"] = malformed

    reports = Path(cfg.paths.reports)
    dataset.write_splits(splits, labels, Path(cfg.paths.processed),
                         {"task": spec.task, "fingerprint": fingerprint, "source": loaded.origin})
    write_json(reports / "data_profile.json", report)
    (reports / "data_profile.md").write_text(profiling.profile_markdown(report), encoding="utf-8")
    figures = Path(cfg.paths.figures)
    profiling.plot_class_counts(report, figures / "class_counts.png")
    profiling.plot_lengths(texts.str.len().to_numpy(), tokens[0],   # auto: the data's length (train/lengths.py)
                           lengths.data_length(cfg.model.max_length, report.get("text_tokens")), figures / "text_lengths.png")
    log.info("wrote %s: %s rows (train/validation/test = %s), %d %s, fingerprint %s",
             cfg.paths.processed, report["rows_total"], "/".join(str(n) for n in report["rows"].values()),
             len(labels), "labels" if spec.multi else "classes", fingerprint)


def known_labels(frames: dict[str, pd.DataFrame], spec: label_formats.LabelSpec) -> list[str]:
    """The sorted classes, or for multi_label the individual labels of the label sets, in `frames`."""
    values = pd.concat([f["label"] for f in frames.values()])
    return multilabel.all_labels(values) if spec.multi else sorted(values.unique())
