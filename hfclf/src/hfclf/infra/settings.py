"""A stage's settings, straight from its config section: `from_section(ReviewSettings, cfg.review, "review")`.

The dataclass is the schema: every key of the section must be one of its fields and have its type
(OmegaConf checks and converts, e.g. 5 -> 5.0 for a float), so a misspelt or mistyped key in
conf/ or on the command line stops the stage with one line naming it, instead of being ignored
or failing deep inside the computation. No field is copied by hand.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from hfclf.infra.errors import UserError

T = TypeVar("T")


def from_section(cls: type[T], section: Mapping | Any, where: str, **extra: Any) -> T:
    """`cls(**section, **extra)`, checked: `where` is the section's name in the config (for messages);
    `extra` are values from elsewhere in the config (e.g. seed=cfg.compute.seed)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    values = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section or {})
    values.update(extra)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise UserError(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(f'{where}.{key}' for key in unknown)}: {where} takes {', '.join(fields)}. "
                        "Check the spelling in conf/ and on the command line.")
    # values are resolved already: a `${` inside one (a ticket's text) is data, not an interpolation -
    # such strings are type-checked without their `$` and put back as they are afterwards
    verbatim = {k: v for k, v in values.items() if isinstance(v, str) and "${" in v}
    try:
        result = OmegaConf.to_object(OmegaConf.merge(
            OmegaConf.structured(cls), {k: v.replace("$", "") if k in verbatim else v for k, v in values.items()}))
        for key, value in verbatim.items():
            setattr(result, key, value)
        return result
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
        reason = str(getattr(err, "msg", None) or err).splitlines()[0]
        expected = {f.name: f.type for f in dataclasses.fields(cls)}.get(str(key))
        wanted = f" (expected {expected if isinstance(expected, str) else getattr(expected, '__name__', expected)})" \
            if expected else ""
        raise UserError(f"setting {where}.{key}={values.get(key)!r} is invalid{wanted}: {reason}.") from None


def whole_or_auto(value: Any, key: str, minimum: int, why: str = "") -> int | None:
    """A setting that is a whole number or `auto`: None for auto, else the number, at least `minimum`
    (`why` explains the minimum in the message)."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a whole number or auto, not {value!r}.") from None
    if number < minimum:
        raise UserError(f"{key} must be at least {minimum}{why}, not {number}.")
    return number


def whole_number(value: Any, key: str, unit: str, minimum: int, meaning: str) -> int:
    """A setting that must be a whole number of `unit` (an int in the YAML), at least `minimum`
    (missing: `minimum`); `meaning` explains the values in the message."""
    if value is None:
        return minimum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key} must be a whole number of {unit}, at least {minimum} ({meaning}), not {value!r}.")
    return value


# Config sections whose types are checked as soon as a command's config is composed (cli.stage),
# before any work: section -> "module:SettingsClass". Only the keys a class knows are checked here
# (the stage's own from_section also refuses unknown keys).
SCHEMAS = {
    "prepare": "hfclf.data.dataset:PrepareSettings",
    "review": "hfclf.preflight.checks:ReviewSettings",
    "predict": "hfclf.ship.predict:PredictSettings",
    "analyze.slices": "hfclf.analyze.failures:SliceSettings",
    "analyze.improvements": "hfclf.analyze.improvements:Limits",
}


def validate_config(cfg: Any) -> None:
    """Type-check every SCHEMAS section present in `cfg`: a UserError names the key and the value."""
    import importlib

    from omegaconf import DictConfig, OmegaConf

    for section, target in SCHEMAS.items():
        node = OmegaConf.select(cfg, section, default=None)
        if not isinstance(node, DictConfig):
            continue
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key in node:
            if key in fields:
                try:
                    value = OmegaConf.select(node, str(key), throw_on_resolution_failure=True)
                except Exception:   # an unresolvable interpolation is the stage's business
                    continue
                values[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        from_section(cls, values, section)
