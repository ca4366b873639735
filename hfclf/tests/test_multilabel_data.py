"""Multi-label data (data.task=multi_label): reading label sets in every raw format, the errors a user
can fix, rare labels (both tasks), iterative and group splits, the profile, the review, and prepare
on a real multi-label set (Debian's package tags, built by bench/datasets.py). No model is trained."""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TEMPLATE_ROOT, copy_project

from hfclf.data import dataset, label_formats, multilabel, probes, profiling, splitting
from hfclf.data.label_formats import LabelSpec
from hfclf.data.multilabel import MULTI
from hfclf.infra.errors import UserError
from hfclf.preflight import checks

LABELS = ("billing", "refund", "shipping", "account")
WORDS = ("card", "order", "parcel", "late", "charge", "twice", "money", "back", "login", "email", "box", "damaged",
         "address", "change", "invoice", "copy", "tracking", "code", "password", "reset", "cancel", "plan", "help",
         "urgent", "store", "credit", "return", "label", "delivery", "window")


def validate_file(path: Path, spec: LabelSpec, label="labels", min_examples=3, rare="refuse"):
    loaded = dataset.load_source(str(path), columns=("text", *spec.label_keys(label)))
    return dataset.validate(loaded, "text", label, str(path), min_examples, spec, rare)


def multi(fmt="auto", delimiter=";", columns=()) -> LabelSpec:
    return LabelSpec(MULTI, fmt, delimiter, tuple(columns))


def synthetic_sets(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Tickets with 1-3 of four labels of uneven frequency; texts of four random words (rarely twins)."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.5, 0.25, 0.15, 0.1])
    records = []
    for i in range(rows):
        picked = rng.choice(len(LABELS), size=rng.integers(1, 4), replace=False, p=weights)
        labels = [LABELS[j] for j in picked]
        records.append({"text": f"{' '.join(rng.choice(WORDS, 4))} about {' and '.join(labels)}",
                        "label": multilabel.encode(labels)})
    return pd.DataFrame(records)


# --------------------------------------------------------------------------- formats

def test_json_cells_become_sorted_unique_label_sets(tmp_path):
    rows = pd.DataFrame({"text": ["card charged twice", "refund and charge", "where is it", "password"],
                         "labels": ['["refund", "billing", "refund"]', '["billing", " refund "]', '["shipping"]',
                                    '[1, "account", 2.0]']})
    rows.to_csv(tmp_path / "t.csv", index=False)
    frames, report = validate_file(tmp_path / "t.csv", multi("json"), min_examples=1)
    assert frames["all"]["label"].tolist() == ['["billing", "refund"]', '["billing", "refund"]', '["shipping"]',
                                               '["1", "2.0", "account"]']   # numbers as written, like a CSV cell
    assert "labels" not in frames["all"].columns and report.rows_in == 4


def test_jsonl_and_parquet_lists_are_read_as_json(tmp_path):
    rows = [{"text": f"text {i}", "labels": ["a", "b"] if i % 2 else ["b"]} for i in range(6)]
    pd.DataFrame(rows).to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    for name in ("t.jsonl", "t.parquet"):
        frames, _ = validate_file(tmp_path / name, multi(), min_examples=1)   # auto: every cell is a list
        assert frames["all"]["label"].tolist() == ['["b"]', '["a", "b"]'] * 3


def test_delimited_cells_are_split_stripped_and_empty_items_ignored(tmp_path):
    rows = pd.DataFrame({"text": ["one", "two", "three"], "labels": ["billing | refund", "refund||", " shipping "]})
    rows.to_csv(tmp_path / "t.csv", index=False)
    frames, _ = validate_file(tmp_path / "t.csv", multi("delimited", "|"), min_examples=1)
    assert frames["all"]["label"].tolist() == ['["billing", "refund"]', '["refund"]', '["shipping"]']


def test_columns_accept_every_spelling_of_zero_and_one(tmp_path):
    rows = [{"text": "a", "billing": "1", "refund": "0", "vip": "x"},
            {"text": "b", "billing": "0.0", "refund": "1.0", "vip": "y"},
            {"text": "c", "billing": "true", "refund": "False", "vip": "z"},
            {"text": "d", "billing": " 1 ", "refund": "TRUE", "vip": "w"}]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    frames, _ = validate_file(tmp_path / "t.csv", multi(columns=["billing", "refund"]), min_examples=1)
    assert frames["all"]["label"].tolist() == ['["billing"]', '["refund"]', '["billing"]', '["billing", "refund"]']
    assert list(frames["all"].columns) == ["text", "vip", "label"]   # the 0/1 columns became the label set
    typed = pd.DataFrame({"text": ["a", "b"], "billing": [1, 0], "refund": [False, True]})
    sets = label_formats.parse_label_sets(typed, "labels", ["billing", "refund"], "columns", ";", "mem", "all")
    assert sets.tolist() == ['["billing"]', '["refund"]']


@pytest.mark.parametrize("cells, columns, expected", [
    (['["a"]', ' ["a", "b"]', None], (), "json"),
    (["a;b", '["a"]', "b"], (), "delimited"),
    (["a;b", "a", "b"], (), "delimited"),
    (["ignored"] * 3, ("a", "b"), "columns"),
])
def test_auto_picks_columns_then_json_then_delimited(cells, columns, expected, caplog):
    spec = multi(columns=columns)
    with caplog.at_level(logging.INFO):
        assert label_formats.resolve_format(spec, pd.Series(cells, dtype=object)) == expected
    if expected == "delimited" and any(str(c).startswith("[") for c in cells):
        assert "1 of 3 label cells look like JSON lists" in caplog.text


def test_label_spec_reads_config_and_refuses_contradictions():
    assert LabelSpec.from_config({}) == LabelSpec()      # a project made before multi-label
    spec = LabelSpec.from_config({"task": "multi_label", "label_format": "columns", "label_columns": ["a", "b"]})
    assert spec.multi and spec.label_keys("label") == ("a", "b")
    with pytest.raises(UserError, match="data.task must be single_label or multi_label, not 'multilabel'"):
        LabelSpec.from_config({"task": "multilabel"})
    with pytest.raises(UserError, match="data.label_format=columns needs data.label_columns"):
        LabelSpec.from_config({"task": "multi_label", "label_format": "columns"})
    with pytest.raises(UserError, match="data.label_columns is set .* but data.label_format=json"):
        LabelSpec.from_config({"task": "multi_label", "label_format": "json", "label_columns": ["a", "b"]})


# --------------------------------------------------------------------------- errors name file, row and column

def test_rows_without_labels_are_refused_naming_file_row_line_and_column(tmp_path):
    rows = pd.DataFrame({"text": ["ok", "empty cell", "empty list", "ok too"], "labels": ['["a"]', "", "[]", '["b"]']})
    rows.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError) as err:
        validate_file(tmp_path / "t.csv", multi("json"), min_examples=1)
    message = str(err.value)
    assert "\n" not in message and f"'{tmp_path / 't.csv'}'" in message and "column 'labels'" in message
    assert "2 row(s)" in message
    assert "row 2 (line 3): empty cell" in message and "row 3 (line 4): '[]' holds no label" in message


def test_unreadable_json_is_refused_with_the_reason(tmp_path):
    rows = pd.DataFrame({"text": ["t1", "t2", "t3", "t4"],
                         "labels": ['["a"', '"a"', '[{"a": 1}]', '[true]']})
    rows.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError) as err:
        validate_file(tmp_path / "t.csv", multi("json"), min_examples=1)
    message = str(err.value)
    assert "4 row(s) of column 'labels'" in message and "data.label_format=json" in message
    assert "row 1 (line 2): invalid JSON '[\"a\"'" in message
    assert "row 2 (line 3): '\"a\"' is a string, not a JSON list of labels" in message
    assert "row 3 (line 4): an item is an object, not a label" in message
    assert "row 4 (line 5): an item is true/false" in message


def test_a_bad_zero_one_cell_names_its_column(tmp_path):
    rows = pd.DataFrame({"text": ["a", "b", "c"], "billing": ["1", "yes", "0"], "refund": ["0", "1", "0"]})
    rows.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError) as err:
        validate_file(tmp_path / "t.csv", multi(columns=["billing", "refund"]), min_examples=1)
    message = str(err.value)
    assert "row 2 (line 3) column 'billing': 'yes' is not 0 or 1" in message
    assert "row 3 (line 4): no label: every label column is 0" in message and "'billing', 'refund'" in message


def test_at_most_five_problem_rows_are_shown_with_the_count(tmp_path):
    rows = pd.DataFrame({"text": [f"t{i}" for i in range(9)], "labels": ["a"] * 2 + [""] * 7})
    rows.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"7 row\(s\) .*row 3 \(line 4\): empty cell.*row 7 .*; and 2 more\. "):
        validate_file(tmp_path / "t.csv", multi("delimited"), min_examples=1)


def test_rows_are_numbered_without_file_lines_when_texts_span_lines(tmp_path):
    rows = pd.DataFrame({"text": ["two\nlines", "t2"], "labels": ['["a"]', "[]"]})
    rows.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r": row 2: '\[\]' holds no label"):
        validate_file(tmp_path / "t.csv", multi("json"), min_examples=1)


def test_a_missing_label_column_lists_the_columns_that_exist(tmp_path):
    pd.DataFrame({"text": ["a"], "billing": [1], "vip": [0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"no column 'refund'\. Its columns are: text, billing, vip\. "
                                        r"Set data.label_columns"):
        validate_file(tmp_path / "t.csv", multi(columns=["billing", "refund"]))
    frame = pd.DataFrame({"text": ["a"], "billing": [1]})
    with pytest.raises(UserError, match=r"'mem' \(split 'train'\) has no column 'refund' \(data.label_columns\)\. "
                                        r"Its columns are: text, billing\."):
        label_formats.parse_label_sets(frame, "labels", ["billing", "refund"], "columns", ";", "mem", "train")


def test_empty_texts_are_dropped_before_labels_are_read(tmp_path):
    rows = pd.DataFrame({"text": ["a", "", "b", "c"], "labels": ["x;y", "", "y", "x"]})
    rows.to_csv(tmp_path / "t.csv", index=False)
    frames, report = validate_file(tmp_path / "t.csv", multi(), min_examples=1)
    assert report.dropped_empty_text == 1 and len(frames["all"]) == 3


def test_a_single_label_is_refused(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "labels": ["x"] * 3}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"only one label \('x', on all 3 rows\).*needs at least two"):
        validate_file(tmp_path / "t.csv", multi())


# --------------------------------------------------------------------------- rare labels, both tasks

def write_with_rare(tmp_path: Path, multi_label: bool) -> Path:
    rows = [{"text": f"common ticket {i}", "labels": "a;b" if i % 2 else "a", "category": "A" if i % 2 else "B"}
            for i in range(20)]
    rows += [{"text": "rare one", "labels": "a;rare", "category": "RARE"},
             {"text": "rare two", "labels": "rare", "category": "RARE"}]
    path = tmp_path / "t.csv"
    pd.DataFrame(rows).drop(columns=["category" if multi_label else "labels"]).to_csv(path, index=False)
    return path


def test_rare_class_refused_names_it_and_the_drop_setting(tmp_path):
    path = write_with_rare(tmp_path, multi_label=False)
    with pytest.raises(UserError, match=r"1 label\(s\) in 'category' have fewer than 3 rows.*'RARE' \(2\).*"
                                        r"prepare.rare_labels=drop"):
        validate_file(path, LabelSpec(), label="category")


def test_rare_class_dropped_with_its_rows(tmp_path, caplog):
    path = write_with_rare(tmp_path, multi_label=False)
    with caplog.at_level(logging.WARNING):
        frames, report = validate_file(path, LabelSpec(), label="category", rare="drop")
    assert sorted(frames["all"]["label"].unique()) == ["A", "B"] and len(frames["all"]) == 20
    assert report.dropped_rare_labels == {"RARE": 2}
    assert "dropped 2 rows of 1 class(es) with fewer than 3 rows (prepare.rare_labels=drop): RARE (2)" in caplog.text


def test_rare_label_refused_in_multi_label(tmp_path):
    with pytest.raises(UserError, match=r"in column 'labels' have fewer than 3 rows.*'rare' \(2\).*"
                                        r"prepare.rare_labels=drop"):
        validate_file(write_with_rare(tmp_path, multi_label=True), multi())


def test_rare_label_dropped_from_every_set(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        frames, report = validate_file(write_with_rare(tmp_path, multi_label=True), multi(), rare="drop")
    assert multilabel.all_labels(frames["all"]["label"]) == ["a", "b"]
    assert report.dropped_rare_labels == {"rare": 2} and report.dropped_without_label == 1
    assert len(frames["all"]) == 21 and frames["all"]["label"].iloc[-1] == '["a"]'   # "rare one" kept as [a]
    assert "removed 1 label(s) with fewer than 3 rows from every label set" in caplog.text


def test_an_unknown_rare_labels_policy_is_refused(tmp_path):
    with pytest.raises(UserError, match="prepare.rare_labels must be 'refuse' or 'drop', not 'ignore'"):
        validate_file(write_with_rare(tmp_path, multi_label=True), multi(), rare="ignore")


# --------------------------------------------------------------------------- splitting

def label_counts(values: pd.Series) -> np.ndarray:
    return multilabel.matrix(values, LABELS).sum(0)


def test_iterative_split_keeps_label_proportions_and_every_label_in_train():
    frame = synthetic_sets(600)
    rare = pd.DataFrame({"text": ["only one ticket about vip"], "label": ['["vip", "billing"]']})
    frames = {"all": pd.concat([frame, rare], ignore_index=True)}
    splits = splitting.split(frames, "stratified", 0.15, 0.15, seed=0, task=MULTI)
    assert sum(len(s) for s in splits.values()) == 601
    # iterative stratification puts label balance before exact sizes: within 1% of the rows
    assert abs(len(splits["test"]) - 0.15 * 601) <= 6 and abs(len(splits["validation"]) - 0.15 * 601) <= 6
    total = label_counts(frames["all"]["label"])
    for name, target in (("train", 0.7), ("validation", 0.15), ("test", 0.15)):   # each label split like the rows
        assert np.abs(label_counts(splits[name]["label"]) / total - target).max() < 0.01, name
    assert "vip" in multilabel.all_labels(splits["train"]["label"])     # its only row stays in train
    again = splitting.split(frames, "stratified", 0.15, 0.15, seed=0, task=MULTI)
    assert dataset.fingerprint(splits) == dataset.fingerprint(again)


def test_a_label_found_only_among_held_items_is_moved_back():
    indicator = np.array([[1, 0], [1, 0], [1, 1], [1, 0]], dtype=np.float32)
    mask = multilabel.keep_labels_unheld(indicator, np.array([False, False, True, True]))
    assert mask.tolist() == [True, False, False, True]           # row 2 back, row 0 held in its place
    lone = multilabel.keep_labels_unheld(np.array([[1, 0], [0, 1]]), np.array([False, True]))
    assert lone.tolist() == [False, True]                        # nothing to swap: the held side stays


def test_group_split_keeps_near_duplicates_together_with_the_union_of_their_labels():
    frame = synthetic_sets(300)
    twins = pd.DataFrame({"text": [f"Parcel {n} lost!!" for n in range(3)] + [f"parcel {n} LOST" for n in range(3)],
                          "label": ['["shipping"]'] * 3 + ['["refund"]'] * 3})
    frames = {"all": pd.concat([frame, twins], ignore_index=True)}
    splits = splitting.split(frames, "group", 0.2, 0.2, seed=0, task=MULTI)
    keys = {name: set(splits[name]["text"].map(splitting.normalise_text)) for name in dataset.SPLITS}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    assert sum(len(s) for s in splits.values()) == 306
    total = label_counts(frames["all"]["label"])
    assert np.abs(label_counts(splits["test"]["label"]) / total - 0.2).max() < 0.03


def test_too_few_groups_are_held_out_at_random_with_a_warning(caplog):
    frames = {"all": pd.DataFrame({"text": [f"topic {t} text" for t in "abcdefgh"],
                                   "label": ['["x"]', '["y"]', '["x", "y"]', '["z"]'] * 2})}
    with caplog.at_level(logging.WARNING):
        splits = splitting.split(frames, "group", 0.1, 0.1, seed=0, task=MULTI)
    assert sum(len(s) for s in splits.values()) == 8 and min(len(s) for s in splits.values()) > 0
    assert "too few to stratify by label; held out at random" in caplog.text
    assert multilabel.all_labels(splits["train"]["label"]) == ["x", "y", "z"]


# --------------------------------------------------------------------------- out of scope

def test_out_of_scope_texts_get_the_empty_set(tmp_path):
    path = tmp_path / "oos.csv"
    pd.DataFrame({"text": ["weather?", "a joke", "who won"], "labels": ["[]", "", "UNKNOWN"]}).to_csv(path, index=False)
    texts = probes.read_out_of_scope(path, "text", "labels", ["billing"], "data.out_of_scope", multi_label=True)
    with pytest.raises(UserError, match=r"must have no label or 'UNKNOWN' \("):   # single-label: [] is a label
        probes.read_out_of_scope(path, "text", "labels", ["billing"], "data.out_of_scope")
    splits = splitting.split({"all": synthetic_sets(100)}, "stratified", 0.2, 0.2, 0, MULTI)
    added = probes.add_out_of_scope(splits, texts, 0.2, 0.2, 0, probes.NO_LABEL)
    assert sum((s["label"] == "[]").sum() for s in added.values()) == 3
    assert all((s["label"] == "[]").sum() == 1 for s in added.values())


# --------------------------------------------------------------------------- profile and review

def test_profile_has_cardinality_support_and_pairs(tmp_path):
    splits = {"train": pd.DataFrame({"text": ["a", "b", "c", "d"],
                                     "label": ['["x", "y"]', '["x"]', '["x", "y", "z"]', "[]"]}),
              "validation": pd.DataFrame({"text": ["e"], "label": ['["y", "z"]']}),
              "test": pd.DataFrame({"text": ["f"], "label": ['["x"]']})}
    p = profiling.profile(splits, ["x", "y", "z"], {"type": "file"}, {"empty_text": 0, "rare_labels": {"w": 1}},
                          "f", task=MULTI)
    assert p["task"] == MULTI and p["num_classes"] == 3
    assert p["per_class"]["train"] == {"x": 3, "y": 2, "z": 1} and p["per_class"]["validation"] == {"x": 0, "y": 1,
                                                                                                     "z": 1}
    assert p["label_cardinality"] == {"mean": 1.5, "max": 3,
                                      "rows_with": {"0": 0.1667, "1": 0.3333, "2": 0.3333, "3+": 0.1667}}
    assert p["label_pairs"][:2] == [{"labels": ["x", "y"], "rows": 2}, {"labels": ["y", "z"], "rows": 2}]
    assert p["examples"]["z"] == ["c", "e"]
    markdown = profiling.profile_markdown(p)
    assert "## Rows per label and split" in markdown and "## Labels that occur together" in markdown
    assert "| x + y | 2 |" in markdown and "rare labels: `w` (1)" in markdown and "Mean 1.50, at most 3" in markdown
    profiling.plot_class_counts(p, tmp_path / "class_counts.png")
    assert (tmp_path / "class_counts.png").stat().st_size > 1000


def test_review_reports_label_balance_rare_labels_and_conflicting_sets():
    splits = splitting.split({"all": synthetic_sets(300)}, "stratified", 0.2, 0.2, 0, MULTI)
    splits["train"] = pd.concat([splits["train"], pd.DataFrame({
        "text": ["Refund my card", "refund my card!", "vip help"],
        "label": ['["billing", "refund"]', '["refund"]', '["vip"]']})], ignore_index=True)
    settings = checks.ReviewSettings(similarity_threshold=None, rare_label_min=5)
    result = checks.review(splits, settings, 128, None, MULTI)
    assert result["verdict"] == "pass" and result["task"] == MULTI
    assert set(result["imbalance"]["train_counts"]) == {*LABELS, "vip"} and result["imbalance"]["majority"] == "billing"
    assert result["rare_labels"] == {"threshold": 5, "labels": {"vip": 1}}
    assert result["label_conflicts"]["texts"] == 1
    assert result["label_conflicts"]["examples"][0]["labels"] == {"billing + refund": 1, "refund": 1}
    assert any("carry different label sets" in risk for risk in result["risks"])
    assert any(risk.startswith("1 labels have fewer than 5 training rows: vip (1)") for risk in result["risks"])
    markdown = checks.review_markdown(result)
    assert "## Same text, different label sets" in markdown and "billing + refund ×1" in markdown
    assert "Rare labels (fewer than 5 training rows, review.rare_label_min): `vip` (1)." in markdown


def test_single_label_review_is_unchanged_by_the_task_argument(tickets):
    frames = {"all": tickets.rename(columns={"instruction": "text", "category": "label"})}
    splits = splitting.split(frames, "stratified", 0.2, 0.2, seed=0)
    settings = checks.ReviewSettings(similarity_threshold=None)
    assert checks.review(splits, settings, 128) == checks.review(splits, settings, 128, None, "single_label")
    assert "rare_labels" not in checks.review(splits, settings, 128)


# --------------------------------------------------------------------------- prepare on real data (debtags)

def bench_datasets():
    spec = importlib.util.spec_from_file_location("bench_datasets", TEMPLATE_ROOT / "bench" / "datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_debtags_parser_joins_continued_tag_lines():
    dump = ("Package: vim\nDescription: Vi IMproved - enhanced vi editor\n long text\nTag: devel::editor,\n"
            " implemented-in::c, role::program,\n use::editing, use::TODO\nSection: editors\n\n"
            "Package: vim\nDescription: Vi IMproved - enhanced vi editor\nTag: role::program\n\n"
            "Package: nano\nDescription: small editor\nTag: role::program, use::editing\n\n"
            "Package: nothing\nDescription: untagged\n\n")
    module = bench_datasets()
    records = module.dump_records(dump)
    assert records[0]["Tag"].count("\n") == 2 and len(records) == 4
    table = module.debtags_table(records, ("role", "use", "implemented-in"), min_per_label=2)
    assert table["package"].tolist() == ["vim", "nano"]
    assert table["tags"].tolist() == [["role::program", "use::editing"]] * 2   # implemented-in::c: 1 package
    built = module.debtags(rows=5, min_per_label=1, dump=dump)
    assert list(built.columns) == ["text", "labels", "package"] and len(built) == 2
    assert json.loads(built.set_index("package").loc["vim", "labels"]) == ["implemented-in::c", "role::program",
                                                                             "use::editing"]


@pytest.fixture(scope="module")
def debtags_csv(tmp_path_factory) -> Path:
    """600 real packages labelled with their tags of the three default facets (300+ packages a tag)."""
    dump = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True).stdout \
        if shutil.which("apt-cache") else ""
    assert "Tag:" in dump, "apt-cache dumpavail lists no tagged packages here (run `apt-get update` once)"
    frame = bench_datasets().debtags(rows=600, min_per_label=300, seed=0, dump=dump)
    path = tmp_path_factory.mktemp("debtags") / "debtags.csv"
    frame.to_csv(path, index=False)
    return path


def compose(project: Path, *overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(project / "conf"), version_base=None):
        return hydra_compose("prepare", overrides=list(overrides))


def test_prepare_on_debtags_writes_label_sets_individual_labels_and_profile(debtags_csv, baked_project, tmp_path,
                                                                             monkeypatch):
    from hfclf.data import prepare

    project = copy_project(baked_project, tmp_path / "project")
    shutil.copy(debtags_csv, project / "debtags.csv")
    monkeypatch.chdir(project)
    cfg = compose(project, "data.source=debtags.csv", "data.text_column=text", "data.label_column=labels",
                  "data.task=multi_label", "data.out_of_scope=data/out_of_scope/default.txt")
    prepare.main.__wrapped__(cfg)
    info = json.loads((project / "data/processed/labels.json").read_text())
    raw = pd.read_csv(debtags_csv)
    expected = sorted({label for cell in raw["labels"] for label in json.loads(cell)})
    assert info["task"] == MULTI and info["labels"] == expected and "role::program" in expected
    splits = {name: pd.read_parquet(project / f"data/processed/{name}.parquet") for name in dataset.SPLITS}
    assert multilabel.all_labels(splits["train"]["label"]) == expected      # every label can be learnt
    for frame in splits.values():
        assert (frame["label"] == "[]").sum() >= 1                          # out-of-scope: the empty set
        sets = frame["label"].map(json.loads)
        assert all(s == sorted(set(s)) for s in sets)
    assert sum(len(s) for s in splits.values()) - sum((s["label"] == "[]").sum() for s in splits.values()) == 600
    profile = json.loads((project / "reports/data_profile.json").read_text())
    assert profile["task"] == MULTI and profile["labels"] == expected
    assert profile["label_cardinality"]["max"] >= 2 and profile["label_pairs"]
    assert set(profile["per_class"]["train"]) == set(expected)
    assert (project / "reports/figures/class_counts.png").exists()
    markdown = (project / "reports/data_profile.md").read_text()
    assert "## Labels per row" in markdown and "iterative stratification over the label sets" in markdown
    review = checks.review(splits, checks.ReviewSettings(similarity_threshold=None), 128, None, info["task"])
    assert set(review["imbalance"]["train_counts"]) == set(expected) and review["imbalance"]["ratio"] >= 1
    assert review["rare_labels"]["threshold"] == 10 and set(review["rare_labels"]["labels"]) <= set(expected)


def test_prepare_single_label_records_its_task_and_drops_rare_classes(baked_project, tmp_path, monkeypatch):
    from conftest import make_tickets

    from hfclf.data import prepare

    project = copy_project(baked_project, tmp_path / "project")
    rare = pd.DataFrame({"instruction": ["lost parcel", "parcel gone"], "category": ["SHIPPING"] * 2})
    pd.concat([make_tickets()[["instruction", "category"]], rare]).to_csv(project / "tickets.csv", index=False)
    monkeypatch.chdir(project)
    prepare.main.__wrapped__(compose(project, "data.source=tickets.csv", "prepare.rare_labels=drop"))
    info = json.loads((project / "data/processed/labels.json").read_text())
    assert info["task"] == "single_label" and info["labels"] == ["ACCOUNT", "ORDER", "REFUND"]
    profile = json.loads((project / "reports/data_profile.json").read_text())
    assert profile["dropped"]["rare_labels"] == {"SHIPPING": 2} and profile["rows_total"] == 90
    assert "label_cardinality" not in profile and profile["per_class"]["train"]["ORDER"] > 0
    assert "rare labels: `SHIPPING` (2)" in (project / "reports/data_profile.md").read_text()
