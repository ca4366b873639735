"""Editing conf/ YAML in place (what use-dataset does to conf/data/default.yaml) and reading a
dataset's columns from a file's first bytes (what find-datasets does when a card lists none)."""
from __future__ import annotations

import pytest
import yaml

from hfclf.infra import config_edit
from hfclf.research import columns as datasets_columns
from hfclf.infra.errors import UserError

CONFIG = """\
# The dataset.
source: "data/raw/a#b.csv"   # Hub id or local file
revision: null               # pinned commit
subset: 'x'                  # configuration
text_column: text            # column with the text
"""


def test_values_change_and_comments_stay(tmp_path):
    path = tmp_path / "default.yaml"
    path.write_text(CONFIG)
    config_edit.set_values(path, {"source": 'org/it\'s "quoted"', "revision": "a" * 40, "subset": None,
                                  "text_column": "body", "label_column": "queue"})
    text = path.read_text()
    assert yaml.safe_load(text) == {"source": 'org/it\'s "quoted"', "revision": "a" * 40, "subset": None,
                                    "text_column": "body", "label_column": "queue"}
    lines = text.splitlines()
    assert lines[0] == "# The dataset."
    assert lines[3] == "subset: null                 # configuration"        # comment kept in its column
    assert lines[2].endswith("  # pinned commit")                           # a longer value pushes it right
    assert lines[-1] == 'label_column: "queue"'                             # a missing key is appended


def test_an_edit_that_would_break_the_file_is_refused(tmp_path):
    path = tmp_path / "default.yaml"
    path.write_text('source: "a"\nbroken: [unclosed\n')
    with pytest.raises(UserError, match="default.yaml"):
        config_edit.set_values(path, {"source": "x"})
    assert path.read_text() == 'source: "a"\nbroken: [unclosed\n'   # left as it was


def test_columns_from_the_head_of_csv_and_jsonl():
    csv_head = b"text,label,score\n" + b"".join(b"ticket %d,%s,%d\n" % (i, b"AB"[i % 2:i % 2 + 1], i) for i in range(30))
    columns, distinct, rows = datasets_columns.columns_from_head("train.csv", csv_head + b"cut in the mid")
    assert columns == {"text": "string", "label": "string", "score": "int64"}
    assert rows == 30 and distinct["label"] == 2
    jsonl = b"".join(b'{"utterance": "hi %d", "intent": "greet", "id": %d}\n' % (i, i) for i in range(3))
    columns, distinct, rows = datasets_columns.columns_from_head("data/train.jsonl", jsonl)
    assert columns == {"utterance": "string", "intent": "string", "id": "int64"} and rows == 3 and distinct == {}
    assert datasets_columns.pick_text(columns, ["text", "utterance"]) == "utterance"
    assert datasets_columns.pick_label(columns, distinct, ["label", "intent"], "utterance") == "intent"
