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
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
        reason = str(getattr(err, "msg", None) or err).splitlines()[0]
        raise UserError(f"setting {where}.{key}={values.get(key)!r} is invalid: {reason}.") from None
