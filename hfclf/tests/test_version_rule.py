"""The version rule, enforced: any change under src/ needs a new version (README: "Version rule").

Projects' DVC stages depend on the library's version, not on its files, so a change shipped under
an old version number leaves their dvc.lock calling stale results up to date. `RELEASES` records,
one line per version, the digest of src/hfclf/ that the version stands for; the last line must be
this tree's version and digest, and no version may stand for two trees.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import hfclf

LIBRARY = Path(__file__).resolve().parents[1]
SOURCE = LIBRARY / "src" / "hfclf"
RELEASES = LIBRARY / "RELEASES"


def source_digest(root: Path = SOURCE) -> str:
    """SHA-256 over the package's files (relative path and bytes), bytecode left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def releases() -> list[tuple[str, str]]:
    lines = [line.split() for line in RELEASES.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return [(version, digest) for version, digest in lines]


def test_the_source_tree_is_the_one_its_version_was_recorded_for():
    recorded = releases()
    versions = [version for version, _ in recorded]
    assert len(versions) == len(set(versions)), f"a version recorded twice in {RELEASES}: {versions}"
    version, digest = recorded[-1]
    current = source_digest()
    assert (version, digest) == (hfclf.__version__, current), (
        f"src/hfclf/ is not the tree recorded for {hfclf.__version__} (last line of {RELEASES}: {version}). "
        "Any change under src/ needs a new version: bump __version__ in src/hfclf/__init__.py and "
        "_hfclf_version in the template's cookiecutter.json to the same new value, then append to "
        f"{RELEASES.name}: `<new version> {current}` (this tree's digest once the version is bumped: "
        "run this test again for it).")


def test_the_template_bakes_the_library_version():
    spec = json.loads((LIBRARY.parent / "cookiecutter.json").read_text(encoding="utf-8"))
    assert spec["_hfclf_version"] == hfclf.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", hfclf.__version__)
