"""Writing a whole output folder at once: filled beside the old one, then swapped in, so a failure
never leaves half a folder and never destroys the previous one."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_folder(out_dir: Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield an empty sibling folder to fill; on success it replaces `out_dir`, on error it is removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix or f".{out_dir.name}-", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
