"""Likely personal data in the texts - emails, phone numbers, card numbers (Luhn-checked), order or
account numbers - found by patterns, counted per kind and shown masked, so the review report
itself leaks nothing. Part of the pre-training review (checks.py).
"""
from __future__ import annotations

import re

import pandas as pd

from hfclf.data.dataset import SPLITS

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}[ .-]\d{2,4}[ .-]\d{2,5}(?!\w)"
                   r"|(?<![\w+])\+\d{8,15}(?!\w)")
NUMBER = re.compile(r"(?<![\w])(?:#?\d{6,}|[A-Za-z]{2,5}[-_]?\d{5,})(?!\w)")
PATTERNS = {"email": EMAIL, "card_number": CARD, "phone": PHONE, "order_or_account_number": NUMBER}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def mask(value: str) -> str:
    """Keep the first and last two characters, so the report itself leaks nothing."""
    return value[:2] + "•" * max(len(value) - 4, 1) + value[-2:] if len(value) > 4 else "•" * len(value)


def find_personal_data(text: str) -> dict[str, list[str]]:
    """Matches per kind; each span is claimed by the first kind that matches it (email before number ...)."""
    found: dict[str, list[str]] = {}
    rest = text
    for kind, pattern in PATTERNS.items():
        hits = []
        for match in pattern.finditer(rest):
            value = match.group(0)
            if kind == "card_number" and not _luhn(re.sub(r"\D", "", value)):
                continue
            hits.append(value)
        for value in hits:
            rest = rest.replace(value, " ")
        if hits:
            found[kind] = hits
    return found


def personal_data(splits: dict[str, pd.DataFrame], settings) -> dict:
    """Rows with likely personal data, by kind, with masked examples (`settings.examples` per kind)."""
    everything = pd.concat([splits[s]["text"] for s in SPLITS], ignore_index=True)
    # cheap pre-filter: every pattern needs an @ or at least six digits
    candidates = everything[everything.str.contains("@", regex=False) | (everything.str.count(r"\d") >= 6)]
    kinds = {kind: {"rows": 0, "examples": []} for kind in PATTERNS}
    any_rows = 0
    for text in candidates:
        found = find_personal_data(text)
        any_rows += bool(found)
        for kind, values in found.items():
            kinds[kind]["rows"] += 1
            if len(kinds[kind]["examples"]) < settings.examples:
                masked = text
                for value in values:
                    masked = masked.replace(value, mask(value))
                kinds[kind]["examples"].append(masked)
    n = max(len(everything), 1)
    for info in kinds.values():
        info["fraction"] = round(info["rows"] / n, 4)
    return {"rows": any_rows, "fraction": round(any_rows / n, 4), "kinds": kinds}
