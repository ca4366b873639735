"""prepare's reading, validation and splitting: every bad input gets a message naming what is wrong."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfclf.data import dataset, splitting
from hfclf.infra.errors import UserError


def load_and_validate(path: Path, text="instruction", label="category", min_examples=3):
    loaded = dataset.load_source(str(path))
    return dataset.validate(loaded, text, label, str(path), min_examples)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_reads_every_file_format(tmp_path, tickets, suffix):
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        tickets.to_csv(path, index=False)
    elif suffix == ".tsv":
        tickets.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        tickets.to_json(path, orient="records", lines=True)
    else:
        tickets.to_parquet(path)
    frames, report = load_and_validate(path)
    assert len(frames["all"]) == len(tickets) and report.dropped_empty_text == 0
    assert set(frames["all"].columns) >= {"text", "label", "tags"}


def test_save_to_disk_folder_keeps_its_splits(tmp_path, tickets):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(tickets.iloc[:60]),
                               "test": datasets.Dataset.from_pandas(tickets.iloc[60:])})
    dd.save_to_disk(str(tmp_path / "ds"))
    frames, _ = load_and_validate(tmp_path / "ds")
    assert set(frames) == {"train", "test"}
    splits = splitting.split(frames, "stratified", 0.1, 0.1, 0)
    assert len(splits["test"]) == len(tickets) - 60          # the existing test split is kept as is
    assert len(splits["train"]) + len(splits["validation"]) == 60


def test_missing_column_lists_the_columns_that_exist(tmp_path, tickets):
    tickets.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"no column 'topic'.*Its columns are: instruction, category, tags"):
        load_and_validate(tmp_path / "t.csv", label="topic")


def test_empty_file_and_header_only(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match=r"empty.csv' is empty"):
        load_and_validate(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("instruction,category\n")
    with pytest.raises(UserError, match="has a header but no rows"):
        load_and_validate(tmp_path / "header.csv")


def test_single_class_is_refused(tmp_path, tickets):
    tickets.assign(category="ORDER").to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"single class \('ORDER', 90 rows\)"):
        load_and_validate(tmp_path / "t.csv")


def test_empty_texts_are_dropped_and_counted(tmp_path, tickets):
    tickets.loc[[0, 5, 9], "instruction"] = np.nan
    tickets.loc[[1], "instruction"] = "   "
    tickets.to_csv(tmp_path / "t.csv", index=False)
    frames, report = load_and_validate(tmp_path / "t.csv")
    assert report.dropped_empty_text == 4 and len(frames["all"]) == len(tickets) - 4


def test_too_few_examples_per_label_are_named(tmp_path, tickets):
    rare = pd.DataFrame({"instruction": ["lost parcel", "parcel gone"], "category": ["SHIPPING"] * 2})
    pd.concat([tickets, rare]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"fewer than 3 rows.*'SHIPPING' \(2\)"):
        load_and_validate(tmp_path / "t.csv")


def test_undecodable_bytes_name_file_and_line(tmp_path):
    (tmp_path / "latin.csv").write_bytes("instruction,category\nok,A\ncaf\xe9,B\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.csv' is not valid UTF-8: undecodable byte 0xe9 on line 3"):
        load_and_validate(tmp_path / "latin.csv")


def test_mixed_label_types_are_refused(tmp_path):
    rows = [{"instruction": f"text {i}", "category": (i if i % 2 else "ORDER")} for i in range(20)]
    pd.DataFrame(rows).to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    with pytest.raises(UserError, match=r"mixes label types \((10 number, 10 str|10 str, 10 number)\)"):
        load_and_validate(tmp_path / "t.jsonl")


def test_integer_labels_become_strings(tmp_path, tickets):
    tickets.assign(category=tickets["category"].map({"ORDER": 0, "REFUND": 1, "ACCOUNT": 2})).to_json(
        tmp_path / "t.jsonl", orient="records", lines=True)
    frames, _ = load_and_validate(tmp_path / "t.jsonl")
    assert sorted(frames["all"]["label"].unique()) == ["0", "1", "2"]


def test_stratified_split_sizes_and_class_balance(tickets):
    frames = {"all": tickets.rename(columns={"instruction": "text", "category": "label"})}
    splits = splitting.split(frames, "stratified", 0.2, 0.2, seed=0)
    assert [len(splits[s]) for s in dataset.SPLITS] == [54, 18, 18]
    for name in dataset.SPLITS:
        assert splits[name]["label"].nunique() == 3
    again = splitting.split(frames, "stratified", 0.2, 0.2, seed=0)
    assert dataset.fingerprint(splits) == dataset.fingerprint(again)


def test_group_split_keeps_near_duplicates_on_one_side():
    base = [f"please cancel order {n}" for n in range(30)] + [f"Refund for item {n}!" for n in range(30)]
    base += [f"reset password {w}" for w in ("now", "today", "asap", "please", "quick", "fast")] * 5
    labels = ["ORDER"] * 30 + ["REFUND"] * 30 + ["ACCOUNT"] * 30
    frames = {"all": pd.DataFrame({"text": base, "label": labels})}
    splits = splitting.split(frames, "group", 0.2, 0.2, seed=0)
    keys = {name: set(splits[name]["text"].map(splitting.normalise_text)) for name in dataset.SPLITS}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    assert sum(len(s) for s in splits.values()) == 90


def test_write_splits_leaves_old_output_intact_on_failure(tmp_path, tickets, monkeypatch):
    frames = {"all": tickets.rename(columns={"instruction": "text", "category": "label"})}
    splits = splitting.split(frames, "stratified", 0.2, 0.2, seed=0)
    out = tmp_path / "processed"
    dataset.write_splits(splits, ["ACCOUNT", "ORDER", "REFUND"], out, {})
    before = (out / "train.parquet").read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", explode)
    with pytest.raises(OSError):
        dataset.write_splits(splits, ["ACCOUNT", "ORDER", "REFUND"], out, {})
    assert (out / "train.parquet").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepare-")]


def test_a_split_with_fewer_groups_than_classes_is_random_with_a_warning_not_a_traceback(caplog):
    # 6 classes whose texts collapse into 8 near-duplicate groups: 10% is 1 group, fewer than the 6 classes,
    # where sklearn's stratified split raises "test_size = 1 should be >= the number of classes = 6"
    texts = [f"ticket about {topic} number {n}" for topic in ("a", "b", "c", "d", "e", "f", "g", "h") for n in range(4)]
    labels = [f"class{i % 6}" for i in range(len(texts))]
    frames = {"all": pd.DataFrame({"text": texts, "label": labels})}
    with caplog.at_level("WARNING"):
        splits = splitting.split(frames, "group", 0.1, 0.1, seed=0)
    assert sum(len(s) for s in splits.values()) == len(texts) and min(len(s) for s in splits.values()) > 0
    assert "too few to stratify" in caplog.text and "groups of near-duplicate texts" in caplog.text
    with pytest.raises(UserError, match="too few rows .* test split"):
        splitting.split({"all": pd.DataFrame({"text": ["one text"], "label": ["a"]})}, "stratified", 0.1, 0.1, 0)


def test_training_reads_the_prepared_splits_as_pandas_does_and_names_what_is_wrong(tmp_path, tickets):
    """data/processed.py: the train stage's reader (pyarrow, without importing pandas) gives the
    columns as pandas reads them, label sets included; a missing, foreign or broken file is a
    UserError naming it."""
    from hfclf.data import processed

    splits = splitting.split({"all": tickets[["instruction", "category"]].set_axis(["text", "label"], axis=1)},
                             "stratified", 0.2, 0.2, seed=0)
    splits["train"] = splits["train"].assign(label=['["ORDER", "REFUND"]', "[]", *splits["train"]["label"][2:]],
                                             text=["ünïcode ✓ \n two lines", "", *splits["train"]["text"][2:]])
    out = tmp_path / "processed"
    dataset.write_splits(splits, ["ACCOUNT", "ORDER", "REFUND"], out, {"fingerprint": "f" * 16})
    for name in dataset.SPLITS:
        frame = dataset.read_split(out, name)
        assert processed.read_columns(out, name) == {"text": frame["text"].tolist(), "label": frame["label"].tolist()}
    assert processed.read_labels(out)["fingerprint"] == "f" * 16 == dataset.read_labels(out)["fingerprint"]

    pd.DataFrame({"text": ["a"]}).to_parquet(out / "validation.parquet")
    with pytest.raises(UserError, match=r"'.*validation.parquet' has no column 'label' \(it has text\): .*make prepare"):
        processed.read_columns(out, "validation")
    (out / "test.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match=r"'.*test.parquet' cannot be read as Parquet .*make prepare"):
        processed.read_columns(out, "test")
    (out / "train.parquet").unlink()
    for read in (processed.read_columns, dataset.read_split):
        with pytest.raises(UserError, match=r"'.*train.parquet' is missing: run `make prepare`"):
            read(out, "train")
