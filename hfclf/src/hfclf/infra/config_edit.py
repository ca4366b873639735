"""Changing values in the commented YAML files under conf/ without losing the comments.

A YAML round trip through a parser drops comments and reorders keys; the configs here are meant
to be read by people, so values are replaced in place, line by line, and the result is parsed
back to prove it says what was asked before it replaces the file (atomically: infra/files.py).
Used by `use-dataset` (conf/data/default.yaml) and `promote` (a sweep's best values).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from hfclf.infra import files
from hfclf.infra.errors import UserError

# key: value   # comment   (value: double-quoted, single-quoted or plain; the comment is kept)
_VALUE = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|[^#\n]*?'


def render(value: Any) -> str:
    """A YAML scalar that both PyYAML and OmegaConf read back as the same value: null, true/false,
    numbers (floats always with a dot: YAML 1.1 reads `1e-05` as a string), strings double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)   # JSON escapes are YAML's


def _set_line(lines: list[str], keys: list[str], value: Any) -> bool:
    """Replace the value of `keys` (a top-level key, or a key one level inside a top-level section)
    in `lines` (with their line ends), keeping the comment in its column when the value fits; False if absent."""
    start, end, indent = 0, len(lines), ""
    if len(keys) == 2:
        section = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(keys[0])}:\s*(#.*)?$", line)), None)
        if section is None:
            return False
        start = section + 1
        end = next((i for i in range(start, len(lines)) if re.match(r"^\S", lines[i]) and not lines[i].startswith("#")),
                   len(lines))
        indent = r"[ \t]+"
    pattern = re.compile(rf"^({indent}{re.escape(keys[-1])}:[ \t]*)({_VALUE})([ \t]+#[^\n]*)?([ \t]*\r?\n?)$")
    rendered = render(value)
    for i in range(start, end):
        match = pattern.match(lines[i])
        if match:
            head, old, comment, newline = match.group(1), match.group(2), match.group(3) or "", match.group(4)
            column = len(head) + len(old) + len(comment) - len(comment.lstrip())
            line = head + rendered
            if comment:
                line = line.ljust(column) if len(line) < column - 1 else line + "  "
            lines[i] = line + comment.lstrip() + newline
            return True
    return False


def _check_and_write(path: Path, text: str, values: dict[tuple[str, ...], Any]) -> None:
    """Parse the edited text back; write it only if every key reads the value asked for."""
    try:
        parsed = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UserError(f"'{path}' would not be valid YAML after the edit ({err}); fix the file by hand.") from None
    wrong = []
    for keys, value in values.items():
        found = parsed
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found != value:
            wrong.append(f"{'.'.join(keys)} (it would read {found!r})")
    if wrong:
        raise UserError(f"could not set {', '.join(wrong)} in '{path}': edit the file by hand.")
    files.write_text(path, text)   # a crash never leaves a half-written config


def set_values(path: Path, values: dict) -> None:
    """Set top-level `key: value` lines in `path`, keeping comments and layout; add missing keys at the end."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for key, value in values.items():
        if not _set_line(lines, [key], value):
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(f"{key}: {render(value)}\n")
    _check_and_write(path, "".join(lines), {(key,): value for key, value in values.items()})


def set_in_file(path: Path, keys: list[str], value: Any) -> None:
    """Set `value` at `keys` (a top-level key, or one key inside a top-level section), keeping comments;
    a key the file does not have is an error (it is added by hand, where it belongs)."""
    if len(keys) not in (1, 2):
        raise UserError(f"cannot edit '{'.'.join(keys)}' in '{path}' automatically: set it by hand.")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not _set_line(lines, keys, value):
        raise UserError(f"'{path}' has no key '{'.'.join(keys)}'; add it by hand.")
    _check_and_write(path, "".join(lines), {tuple(keys): value})
