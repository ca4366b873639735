"""Real datasets for benchmarks, built offline on the fly (never committed).

`debian`: Debian's package index (`apt-cache dumpavail`): each package's one-line `Description`
labelled with its `Section`, sections with at least `min_per_section` packages, a seeded,
stratified subsample of about `rows` rows. A topic-classification set nobody here wrote, with
~30-50 classes of uneven difficulty (libs vs devel vs python are close). Short texts, many classes.

`debtags`: the same index as a multi-label set: each package's one-line `Description` labelled
with its debtags (the `Tag:` field, which continues on following lines) of the chosen facets
(default `role`, `use`, `implemented-in`, written `use::editing`; the `::TODO` placeholders left out),
labels with at least `min_per_label` packages, packages with at least one of them, de-duplicated by
package and by text, a seeded subsample of `rows` rows. Columns `text`, `labels` (a JSON list), `package`.

`man`: English man pages (/usr/share/man/man{1,2,3,5,7,8}, gzip roff read directly, never `man`):
the NAME line's description plus the DESCRIPTION section, roff stripped, cut to ~2000 characters,
labelled man1, man2, ... (user commands, system calls, library calls, file formats, overviews,
administration). A seeded cap of `rows_per_section` pages per section. Long texts, few classes.

    python bench/datasets.py debian --out /tmp/debian.csv [--rows 3000] [--seed 0]
    python bench/datasets.py debtags --out /tmp/debtags.csv [--rows 3000] [--facets role,use,implemented-in]
                                     [--min-per-label 50] [--seed 0]
    python bench/datasets.py man --out /tmp/man.csv [--rows-per-section 400] [--seed 0]

Columns: `text`, `label` (and `package` / `page`); debtags: `text`, `labels`, `package`.
Run `apt-get update` once if dumpavail lists nothing.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import re
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


DEBTAG_FACETS = ("role", "use", "implemented-in")


def dump_records(text: str) -> list[dict[str, str]]:
    """The stanzas of `apt-cache dumpavail` as field -> value. A field continued on the following
    lines (they start with a space or tab: `Tag:`, the long `Description`) keeps them, one per line."""
    records, record, last = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if record:
                records.append(record)
            record, last = {}, None
        elif line.startswith((" ", "\t")):
            if last is not None:
                record[last] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            last = key if key not in record else None      # a repeated field: the first one counts
            if last is not None:
                record[key] = value.strip()
    return records


def package_tags(tag_field: str, facets: tuple[str, ...]) -> list[str]:
    """The debtags of a `Tag:` value (over several lines) in `facets`, without `facet::TODO` placeholders."""
    tags = (tag.strip() for tag in tag_field.replace("\n", " ").split(","))
    return sorted({tag for tag in tags if tag.split("::", 1)[0] in facets and not tag.endswith("::TODO")})


def debtags_table(records: list[dict[str, str]], facets: tuple[str, ...] = DEBTAG_FACETS,
                  min_per_label: int = 50) -> pd.DataFrame:
    """Every package with a description and a kept tag: columns package, text, tags (a sorted list).
    A tag is kept when at least `min_per_label` distinct packages (after de-duplication) carry it."""
    rows = [{"package": r["Package"], "text": r["Description"].splitlines()[0].strip(),
             "tags": package_tags(r.get("Tag", ""), facets)} for r in records
            if r.get("Package") and r.get("Description", "").strip()]
    frame = pd.DataFrame(rows, columns=["package", "text", "tags"])
    frame = frame[frame["tags"].map(bool)].drop_duplicates("package").drop_duplicates("text")
    counts = frame["tags"].explode().value_counts()
    kept = set(counts[counts >= min_per_label].index)
    frame = frame.assign(tags=frame["tags"].map(lambda tags: [t for t in tags if t in kept]))
    return frame[frame["tags"].map(bool)].reset_index(drop=True)


def debtags(rows: int = 3000, facets: tuple[str, ...] = DEBTAG_FACETS, min_per_label: int = 50, seed: int = 0,
            dump: str | None = None) -> pd.DataFrame:
    """The debtags multi-label set (module docstring) from `dump`, or from `apt-cache dumpavail`."""
    if dump is None:
        dump = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    table = debtags_table(dump_records(dump), tuple(facets), min_per_label)
    if table.empty:
        raise SystemExit(f"apt-cache dumpavail lists no package with a tag of {', '.join(facets)} carried by "
                         f"{min_per_label}+ packages: run `apt-get update` once, or lower --min-per-label.")
    picked = table.sample(min(rows, len(table)), random_state=seed).reset_index(drop=True)
    return pd.DataFrame({"text": picked["text"], "labels": picked["tags"].map(json.dumps),
                         "package": picked["package"]})


MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = ("1", "2", "3", "5", "7", "8")
# macros whose arguments are running text: man(7) font macros (alternating ones join their arguments
# without spaces), and mdoc(7)'s inline ones (their callable macro names among the arguments are dropped)
_FONT = {"B", "I", "SM", "SB"}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_MDOC_INLINE = {"Nm", "Nd", "Xr", "Ar", "Fl", "Cm", "Pa", "Sy", "Em", "Li", "Dq", "Qq", "Sq", "Pq", "Ql", "Va",
                "Fn", "Fa", "Ft", "Dv", "Er", "Ev", "Ic", "Op", "No", "Ns", "Tn", "Ux", "Lk", "Mt", "Ad", "An",
                "Ms", "Vt", "It"}
_GLYPHS = {"em": " - ", "en": "-", "hy": "-", "mi": "-", "bu": "", "aq": "'", "dq": '"', "lq": '"', "rq": '"',
           "oq": "'", "cq": "'", "co": "(c)", "rg": "(R)", "tm": "(TM)", "mu": "x", "<=": "<=", ">=": ">=",
           "!=": "!=", "->": "->", "<-": "<-", "ti": "~", "ha": "^", "rs": "\\", "dg": "", "de": " degrees",
           "Aq": "'", "C`": '"', "C'": '"', "L\"": '"', "R\"": '"', "PI": "pi", "sp": " ", "pl": "+", "eq": "="}
_ESCAPES = [
    (re.compile(r"\\\".*$"), ""),                                          # comment to the end of the line
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),                           # font: \fB \fI \fR \fP \f5 \f(CW \f[B]
    (re.compile(r"\\s[+-]?(\d|\(\d\d|\[\d+\])"), ""),                      # size: \s-1 \s0
    (re.compile(r"\\[hvwlLNDxXoSbZ]'[^']*'"), ""),                         # motions, widths, lines, glyph numbers
    (re.compile(r"\\[*n]\[[^\]]*\]"), lambda m: _GLYPHS.get(m.group(0)[3:-1], "")),   # \*[name] \n[reg]
    (re.compile(r"\\[*n]\(..|\\[*n]."), lambda m: _GLYPHS.get(m.group(0)[-2:], "")),   # \*(Aq \*(C` \nx
    (re.compile(r"\\\[([^\]]*)\]"), lambda m: _GLYPHS.get(m.group(1), "")),           # \[em]
    (re.compile(r"\\\((..)"), lambda m: _GLYPHS.get(m.group(1), "")),                  # \(em \(bu
    (re.compile(r"\\[-e\\]"), lambda m: "-" if m.group(0) == "\\-" else "\\"),         # \- \e \\
    (re.compile(r"\\[ ~0]"), " "),                                          # unbreakable spaces
    (re.compile(r"\\[&|^%c:)!{}]|\\[kz].?|\\$"), ""),                       # zero-width and control escapes
    (re.compile(r"\\(.)"), r"\1"),                                         # any other escaped character: itself
]


def roff_text(line: str) -> str:
    """One roff text line without its escapes."""
    for pattern, replacement in _ESCAPES:
        line = pattern.sub(replacement, line)
    return line


def _macro_args(rest: str) -> list[str]:
    return [a[1:-1] if len(a) > 1 and a[0] == a[-1] == '"' else a
            for a in re.findall(r'"(?:[^"]|"")*"|\S+', rest)]


def man_sections(source: str) -> dict[str, list[str]]:
    """A page's text lines by section heading (NAME, DESCRIPTION, ...): request and macro lines dropped,
    except the text arguments of font and inline macros; tables (.TS/.TE) and macro definitions dropped."""
    sections: dict[str, list[str]] = {}
    current, skip_until, heading_next = None, None, False
    lines = re.sub(r"(?<!\\)\\\n", "", source).splitlines()          # join continued lines
    for line in lines:
        if skip_until:
            if re.match(skip_until, line):
                skip_until = None
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name in ("TS", "de", "de1", "am", "ig", "EQ"):
                skip_until = {"TS": r"[.']\s*TE", "EQ": r"[.']\s*EN"}.get(name, r"[.']\s*\.")   # `..` or `.  .`
            elif name in ("SH", "Sh"):
                heading_next = not rest.strip()                        # `.SH` alone: the heading is the next line
                current = " ".join(_macro_args(roff_text(rest))).upper().strip()
                sections.setdefault(current, [])
            elif current is not None and name == "IP" and rest.strip():     # .IP "tag" indent: keep the tag
                sections[current].append(roff_text(_macro_args(rest)[0]))
            elif current is not None and name in _FONT:
                sections[current].append(roff_text(" ".join(_macro_args(rest))))
            elif current is not None and name in _ALTERNATING:
                sections[current].append(roff_text("".join(_macro_args(rest))))
            elif current is not None and name == "Nd":                       # mdoc's NAME description
                sections[current].append("- " + roff_text(rest))
            elif current is not None and name in _MDOC_INLINE:
                words = [w for w in _macro_args(rest) if not re.fullmatch(r"[A-Z][a-z]", w)]
                sections[current].append(roff_text(" ".join(words)))
        elif heading_next:
            heading_next, current = False, roff_text(line).upper().strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(roff_text(line))
    return sections


def man_text(source: str, max_chars: int = 2000) -> str:
    """The NAME line's description (after `\\-`, or mdoc's .Nd) and the DESCRIPTION section (else the
    first section after NAME and SYNOPSIS), whitespace collapsed, cut at a word before max_chars."""
    sections = man_sections(source)
    name = " ".join(" ".join(sections.get("NAME", [])).split())
    description = name.split(" - ", 1)[1] if " - " in name else name
    body_key = next((k for k in sections if k == "DESCRIPTION"),
                    next((k for k in sections if k not in ("NAME", "SYNOPSIS", "LIBRARY", "")), None))
    body = " ".join(" ".join(sections.get(body_key, [])).split()) if body_key else ""
    text = f"{description.rstrip('.')}. {body}".strip() if description else body
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def _family(file_name: str) -> str:
    """The command or library family of a page, e.g. gcloud for gcloud_alpha_compute_disks_move.1.gz."""
    return re.split(r"[_.:-]", file_name, maxsplit=1)[0].lower()


def manpages(rows_per_section: int = 400, seed: int = 0, min_rows: int | None = None, min_chars: int = 100,
             max_chars: int = 2000, max_family_share: float = 0.1, root: Path = MAN_ROOT) -> pd.DataFrame:
    """English man pages labelled with their section (man1, man2, ...), at most rows_per_section per
    section; sections with fewer than min_rows (default: half the cap) usable pages are dropped. Each
    section's file names are shuffled (seeded per section) and read until the cap is met, so only what
    is kept (plus rejects: `.so` redirects, texts under min_chars, duplicates) is decompressed.
    No family of pages (file names up to the first _ - . :) gets more than max_family_share of a
    section: on the machine this was written on, man1 holds 16,631 `gcloud_*` pages of 17,904, which
    would make the class mean "gcloud"."""
    min_rows = rows_per_section // 2 if min_rows is None else min_rows
    rows, seen = [], set()
    for section in MAN_SECTIONS:
        folder = root / f"man{section}"
        if not folder.is_dir():
            continue
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".gz") and not p.is_symlink())
        random.Random(f"{seed}/man{section}").shuffle(names)
        family_cap = max(1, int(rows_per_section * max_family_share))
        kept, families = [], {}
        for file_name in names:
            if len(kept) >= rows_per_section:
                break
            family = _family(file_name)
            if families.get(family, 0) >= family_cap:
                continue
            try:
                source = gzip.decompress((folder / file_name).read_bytes()).decode("utf-8", "replace")
            except (OSError, EOFError):
                continue
            if re.search(r"^\.so\s", source, re.M) and not re.search(r"^\.S[Hh]\b", source, re.M):
                continue                                               # a redirect to another page
            text = man_text(source, max_chars)
            if len(text) < min_chars or text in seen:
                continue
            seen.add(text)
            families[family] = families.get(family, 0) + 1
            kept.append({"text": text, "label": f"man{section}", "page": file_name.removesuffix(".gz")})
        if len(kept) >= min_rows:
            rows += kept
    frame = pd.DataFrame(rows, columns=["text", "label", "page"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["debian", "debtags", "man"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=3000, help="debian: about this many rows in all; debtags: rows")
    parser.add_argument("--facets", default=",".join(DEBTAG_FACETS), help="debtags: the facets whose tags are labels")
    parser.add_argument("--min-per-label", type=int, default=50, help="debtags: smallest label kept (packages)")
    parser.add_argument("--min-per-section", type=int, default=30, help="debian: smallest section kept")
    parser.add_argument("--rows-per-section", type=int, default=400, help="man: at most this many pages per section")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.name == "debian":
        frame = debian(args.rows, args.min_per_section, args.seed)
    elif args.name == "debtags":
        facets = tuple(f.strip() for f in args.facets.split(",") if f.strip())
        frame = debtags(args.rows, facets, args.min_per_label, args.seed)
    else:
        frame = manpages(args.rows_per_section, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    if args.name == "debtags":
        sets = frame["labels"].map(json.loads)
        counts = sets.explode().value_counts()
        print(f"{args.out}: {len(frame)} rows, {len(counts)} labels, {sets.map(len).mean():.2f} labels per row "
              f"(max {sets.map(len).max()})")
        print(", ".join(f"{label} {n}" for label, n in counts.items()))
        return
    lengths = frame["text"].str.len()
    print(f"{args.out}: {len(frame)} rows, {frame['label'].nunique()} sections; text length (characters) "
          + ", ".join(f"p{q}: {lengths.quantile(q / 100):.0f}" for q in (5, 50, 95)) + f", max {lengths.max()}")
    print(", ".join(f"{label} {n}" for label, n in frame["label"].value_counts().sort_index().items()))


if __name__ == "__main__":
    main()
