"""Changing values in the commented YAML files under conf/ without losing the comments.

A YAML round trip through a parser drops comments and reorders keys; the configs here are meant
to be read by people, so values are replaced in place, line by line, and the result is parsed
back to prove it says what was asked before it replaces the file.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import yaml

from hfclf.infra.errors import UserError

# key: value   # comment   (value: double-quoted, single-quoted or plain; the comment is kept)
_VALUE = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|[^#\n]*?'


def render(value) -> str:
    """A YAML scalar: null, true/false, numbers as is, strings double-quoted (JSON escapes are YAML's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _replace(match: re.Match, rendered: str) -> str:
    """The line with its new value; the comment stays in its column when the value fits before it."""
    key, comment = match.group(1), match.group(3)
    if not comment:
        return f"{key}{rendered}"
    column = len(key) + len(match.group(2)) + len(comment) - len(comment.lstrip())
    line = f"{key}{rendered}"
    return f"{line.ljust(column) if len(line) < column - 1 else line + '  '}{comment.lstrip()}"


def set_values(path: Path, values: dict) -> None:
    """Set top-level `key: value` lines in `path`, keeping comments and layout; add missing keys at the end."""
    text = path.read_text(encoding="utf-8")
    for key, value in values.items():
        pattern = re.compile(rf"^({re.escape(key)}:[ \t]*)({_VALUE})([ \t]+#[^\n]*)?[ \t]*$", re.M)
        rendered = render(value)
        text, count = pattern.subn(lambda m: _replace(m, rendered), text, count=1)
        if count == 0:
            text = text.rstrip("\n") + f"\n{key}: {rendered}\n"
    try:
        parsed = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UserError(f"'{path}' would not be valid YAML after the edit ({err}); fix the file by hand.") from None
    wrong = [k for k, v in values.items() if parsed.get(k) != v]
    if wrong:
        raise UserError(f"could not set {', '.join(wrong)} in '{path}': edit the file by hand.")
    write_atomically(path, text)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step (same permissions): a crash never leaves a half-written config."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, path.stat().st_mode)
    os.replace(tmp, path)
