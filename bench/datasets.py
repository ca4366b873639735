"""Real datasets for benchmarks, built offline on the fly (never committed).

`debian`: Debian's package index (`apt-cache dumpavail`): each package's one-line `Description`
labelled with its `Section`, sections with at least `min_per_section` packages, a seeded,
stratified subsample of about `rows` rows. A topic-classification set nobody here wrote, with
~30-50 classes of uneven difficulty (libs vs devel vs python are close).

    python bench/datasets.py debian --out /tmp/debian.csv [--rows 3000] [--seed 0]

Columns: `text`, `label` (and `package`). Run `apt-get update` once if dumpavail lists nothing.
"""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pandas as pd


def parse_dumpavail(text: str) -> pd.DataFrame:
    rows, record = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if record.get("Package") and record.get("Description") and record.get("Section"):
                rows.append(record)
            record = {}
        elif not line.startswith((" ", "\t")) and ":" in line:
            key, value = line.split(":", 1)
            record.setdefault(key, value.strip())
    frame = pd.DataFrame(rows)
    section = frame["Section"].str.split("/").str[-1]           # contrib/net, non-free/libs -> net, libs
    return pd.DataFrame({"package": frame["Package"], "text": frame["Description"], "label": section})


def debian(rows: int = 3000, min_per_section: int = 30, seed: int = 0) -> pd.DataFrame:
    dump = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    frame = parse_dumpavail(dump)
    if frame.empty:
        raise SystemExit("apt-cache dumpavail lists no packages: run `apt-get update` once.")
    frame = frame.drop_duplicates("package").drop_duplicates("text")
    counts = frame["label"].value_counts()
    frame = frame[frame["label"].isin(counts[counts >= min_per_section].index)]
    share = min(1.0, rows / len(frame))
    # stratified: every kept section keeps its share, and at least min_per_section // 2 rows
    picked = [group.sample(min(len(group), max(min_per_section // 2, round(len(group) * share))), random_state=seed)
              for _, group in frame.groupby("label")]
    return pd.concat(picked).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["debian"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--min-per-section", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = debian(args.rows, args.min_per_section, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"{args.out}: {len(frame)} rows, {frame['label'].nunique()} sections")


if __name__ == "__main__":
    main()
