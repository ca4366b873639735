"""The project's own code, reached from config: a dotted path (data.loader, data.clean, model.builder)
resolved to the function it names, with the project's src/ put on sys.path so it imports even before
`make install`. This module owns that lookup and its one-line UserError when the path does not
import; which stages run the user's code (and list it as a dep) is the stage table's business
(hfclf.pipeline).
"""
from __future__ import annotations

import sys
from pathlib import Path


def user_hook(dotted: str | None, key: str):
    """The function a config key names by dotted path (e.g. data.loader: my_project.data.load), or None.

    The project's src/ is importable even before `make install`: it is put on sys.path here.
    """
    import importlib

    from hfclf.infra.errors import UserError

    if not dotted:
        return None
    module_name, _, attr = str(dotted).rpartition(".")
    src = Path.cwd() / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    try:
        module = importlib.import_module(module_name) if module_name else None
    except Exception as err:  # an ImportError, or an error raised while importing the user's module
        raise UserError(f"{key}={dotted!r} does not import: {type(err).__name__}: {err}. "
                        f"Set {key} to a dotted path like my_package.module.function, or null.") from None
    hook = getattr(module, attr, None) if module is not None else None
    if not callable(hook):
        raise UserError(f"{key}={dotted!r} does not import: "
                        + (f"module '{module_name}' has no function '{attr}'" if module else "no module named")
                        + f". Set {key} to a dotted path like my_package.module.function, or null.")
    return hook
