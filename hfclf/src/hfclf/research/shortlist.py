"""The shortlist of candidate datasets as people read it: the table `find-datasets` prints and
reports/dataset_candidates.md, with the `make use-dataset` line for each candidate.
"""
from __future__ import annotations

from hfclf.infra.render import md_table
from hfclf.research.candidates import Candidate


TABLE_HEADER = ["#", "dataset", "downloads", "likes", "licence", "size", "rows", "splits", "languages",
                "modified", "text / label", "flags"]


def table_rows(candidates: list[Candidate]) -> list[list]:
    rows = []
    for i, c in enumerate(candidates, 1):
        columns = f"{c.text_column or '?'} / {c.label_column or '?'}"
        if c.label_column and c.classes.get(c.label_column):
            exact = c.columns.get(c.label_column) == "class_label"
            columns += f" ({'' if exact else '~'}{c.classes[c.label_column]} classes)"
        rows.append([i, c.id, _count(c.downloads), _count(c.likes), c.license or "-", c.size_category or "-",
                     _count(c.rows), ", ".join(c.splits) or "-", ", ".join(c.languages[:4]) or "-",
                     c.last_modified or "-", columns, "; ".join(c.flags) or "ok"])
    return rows


def markdown(candidates: list[Candidate], query: str, task: str | None, sort: str, endpoint: str) -> str:
    lines = [f"# Dataset candidates for \"{query}\"", "",
             f"Searched {endpoint} for datasets matching \"{query}\""
             f"{f', task `{task}`' if task else ', any task'}, most {sort.replace('_', ' ')} first. "
             "Everything below comes from the dataset cards, tags and file headers - nothing was downloaded. "
             "**Flags** say what to check before you commit: a missing licence, columns the card does "
             "not describe, no plausible text or label column.", ""]
    if not candidates:
        lines += ["No dataset matched. Try fewer or other words (the search matches dataset ids), or drop TASK."]
        return "\n".join(lines) + "\n"
    lines += [md_table(TABLE_HEADER, table_rows(candidates)), ""]
    for i, c in enumerate(candidates, 1):
        lines += [f"## {i}. {c.id}", ""]
        if c.columns:
            described = ", ".join(f"`{n}` ({t}{_values(c, n)})" for n, t in c.columns.items())
            lines.append(f"- columns (from {c.columns_from}): {described}")
            lines.append(f"- suggested: text `{c.text_column or '?'}`, label `{c.label_column or '?'}`")
        else:
            lines.append("- columns: unknown - the card has no `dataset_info` and no CSV / JSONL file was readable")
        splits = ", ".join(f"{s} ({_count(n)})" if n is not None else s for s, n in c.splits.items())
        lines.append(f"- splits: {splits or 'unknown'}")
        lines.append(f"- tasks: {', '.join(c.tasks) or 'none tagged'}; languages: {', '.join(c.languages) or 'unknown'}")
        if c.subsets:
            lines.append(f"- subsets: {', '.join(c.subsets)}")
        lines.append(f"- flags: {'; '.join(c.flags) or 'none'}")
        lines.append(f"- use it: `{use_command(c)}`")
        lines.append("")
    return "\n".join(lines)


def use_command(c: Candidate) -> str:
    parts = [f"make use-dataset ID={c.id}", f"LABEL={_shell(c.label_column) if c.label_column else '<column>'}"]
    if c.text_column:
        parts.append(f"TEXT={_shell(c.text_column)}")
    if len(c.subsets) > 1:
        parts.append(f"SUBSET={_shell(c.subset) if c.subset else '<' + '|'.join(c.subsets[:4]) + '>'}")
    return " ".join(parts)


def _values(c: Candidate, column: str) -> str:
    if column not in c.classes:
        return ""
    if c.columns[column] == "class_label":
        return f", {c.classes[column]} classes"
    return f", {c.classes[column]} distinct"


def _shell(value: str) -> str:
    return value if value.replace("_", "").replace("-", "").replace(".", "").isalnum() else f"'{value}'"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"
