"""Texts the model is probed with beyond the test split: out-of-scope sets (texts that belong to no
class) and challenge sets (hard examples with their correct labels). Reading them checks columns
and labels and raises UserError naming the file, the column and the fix.

Out-of-scope files: `.txt` (one text per line; blank lines and lines starting with `#` skipped),
or CSV / TSV / JSONL / Parquet with a text column (`text` or the dataset's text column); a label
column, if present, may only hold UNKNOWN or nothing (multi-label: also `[]`). In a multi-label
project the out-of-scope texts join the splits with the empty label set `[]` - the model learns to
predict no label for them - instead of a class UNKNOWN. Challenge files: CSV / TSV / JSONL / Parquet
with a text and a label column whose labels the model knows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from hfclf.data.dataset import read_file
from hfclf.data.multilabel import encode
from hfclf.infra.errors import UserError

UNKNOWN = "UNKNOWN"
NO_LABEL = encode([])   # multi-label: the empty label set `[]`


def _pick(frame: pd.DataFrame, candidates: Sequence[str], path: Path, what: str, key: str) -> str:
    for name in candidates:
        if name in frame.columns:
            return name
    wanted = " or ".join(repr(c) for c in dict.fromkeys(candidates))
    raise UserError(f"'{path}' has no {what} column ({wanted}). Its columns are: "
                    f"{', '.join(map(str, frame.columns))}. Rename the column, or fix {key}.")


def read_out_of_scope(path: str | Path, text_column: str, label_column: str = "label", labels: Sequence[str] = (),
                      key: str = "", multi_label: bool = False) -> list[str]:
    """The texts of an out-of-scope file, stripped, empty ones dropped; refuses rows labelled as a class
    (`multi_label`: a label column may also hold the empty set `[]`)."""
    path = Path(path)
    key = key or "the out-of-scope setting"
    if not path.exists():
        raise UserError(f"out-of-scope file '{path}' does not exist. Create it or fix {key}.")
    if path.suffix.lower() == ".txt":
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as err:
            raise UserError(f"out-of-scope file '{path}' is not valid UTF-8 ({err.reason} at byte {err.start}). "
                            "Re-save it as UTF-8.") from None
        texts = [line for line in lines if line and not line.startswith("#")]
    else:
        frame = read_file(path)
        column = _pick(frame, ["text", text_column], path, "text", key)
        label_col = next((c for c in ("label", label_column) if c in frame.columns and c != column), None)
        if label_col is not None:
            values = frame[label_col].dropna().astype(str).str.strip()
            no_label = {"", UNKNOWN} | ({NO_LABEL} if multi_label else set())
            wrong = sorted(set(values[~values.isin(no_label)]))
            if wrong:
                known = [w for w in wrong if w in set(labels)]
                why = (f"{known} are classes of the model, so those rows are in scope" if known
                       else f"{wrong[:10]} are not '{UNKNOWN}'")
                allowed = f"'{UNKNOWN}'" + (f" or {NO_LABEL}" if multi_label else "")
                raise UserError(f"'{path}' column '{label_col}' has label(s) {wrong[:10]}: out-of-scope rows must "
                                f"have no label or {allowed} ({why}). Move in-scope rows to a challenge file "
                                "(analyze.challenge.path) or drop the label column.")
        texts = [str(t).strip() for t in frame[column].dropna()]
        texts = [t for t in texts if t]
    if not texts:
        raise UserError(f"out-of-scope file '{path}' has no texts. Add one text per line, or fix {key}.")
    return texts


def read_challenge(path: str | Path, text_column: str, label_column: str, labels: Sequence[str],
                   key: str = "analyze.challenge.path") -> pd.DataFrame:
    """A challenge set as columns text, label (+ any extra columns); every label must be known."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"challenge file '{path}' does not exist. Create it or fix {key}.")
    frame = read_file(path)
    text = _pick(frame, ["text", text_column], path, "text", key)
    label = _pick(frame, ["label", label_column], path, "label", key)
    frame = frame.rename(columns={text: "text", label: "label"})
    frame = frame[frame["text"].notna() & frame["text"].astype(str).str.strip().ne("")].copy()
    if frame.empty:
        raise UserError(f"challenge file '{path}' has no rows with text.")
    missing = frame["label"].isna() | frame["label"].astype(str).str.strip().eq("")
    if missing.any():
        rows = (frame.index[missing][:5] + 2).tolist()
        raise UserError(f"challenge file '{path}' has {int(missing.sum())} row(s) without a label "
                        f"(e.g. file lines {rows}). Every challenge row needs its correct label.")
    frame["text"] = frame["text"].astype(str)
    frame["label"] = frame["label"].astype(str).str.strip()
    unknown = sorted(set(frame["label"]) - set(labels))
    if unknown:
        raise UserError(f"challenge file '{path}' has label(s) the model does not know: {unknown[:10]}. "
                        f"Known labels: {', '.join(labels)}. Fix the labels (they are case-sensitive).")
    return frame.reset_index(drop=True)


def add_out_of_scope(splits: dict[str, pd.DataFrame], texts: Sequence[str], validation_size: float,
                     test_size: float, seed: int, label: str = UNKNOWN) -> dict[str, pd.DataFrame]:
    """Add out-of-scope texts to every split, in the prepare fractions, labelled `label`: class UNKNOWN,
    or for a multi-label task NO_LABEL (the empty set)."""
    from sklearn.model_selection import train_test_split

    texts = list(dict.fromkeys(texts))
    if len(texts) < 3:
        raise UserError(f"data.out_of_scope has {len(texts)} distinct text(s); at least 3 are needed to put "
                        f"'{label}' examples into train, validation and test.")
    rest, test = train_test_split(texts, test_size=max(test_size, 1 / len(texts)), random_state=seed)
    train, validation = train_test_split(rest, test_size=max(validation_size / (1 - test_size), 1 / len(rest)),
                                         random_state=seed)
    parts = {"train": train, "validation": validation, "test": test}
    return {name: pd.concat([frame, pd.DataFrame({"text": parts[name], "label": label})], ignore_index=True)
            for name, frame in splits.items()}
