"""The cookiecutter hooks' logic: validate the answers (pre_gen), finish the project (post_gen).

The template's hooks/ are a few lines each: they load the answers as JSON *data* and call
`hook(pre_gen, ...)` / `hook(post_gen, ...)` from here, so this logic is importable and
unit-tested. Hooks run under the interpreter that runs cookiecutter (or cruft), which may have
nothing but the standard library: this package imports only the standard library at import time
(pyarrow, for Parquet columns, is imported lazily and skipped when absent). It is split by side:
`answers` (pre_gen: validating the answers and a local dataset's columns; BakeError, hook, render
mode), `project` (post_gen: copy the data, git + DVC init, first commit) and `provenance` (where
the bake came from: the cruft-compatible .cruft.json that `make install` and `make update` read).
In render mode (HFCLF_BAKE_MODE=render, set by `make update`; a bare `cruft update` / `cruft diff`
is recognised too, on Linux) files are rendered exactly as at bake time, but nothing is validated
against the file system, copied, initialised or committed. The names below are re-exported so that
hooks/ and tests keep using `hfclf.bake.<name>`.
"""
from hfclf.bake.answers import (CONTROL_RE, DATA_SUFFIXES, FREE_TEXT, HUB_ID_RE, HUB_REPO_RE,
                                LOCAL_DATASET_NOTE, PACKAGE_RE, PROJECT_DIR_ENV, QUOTED_IN_YAML,
                                RENDER_MODE_ENV, RESERVED_PACKAGES, SLUG_RE, BakeError, columns_of,
                                hook, json_columns, looks_local, pre_gen, render_only, resolve_local,
                                save_to_disk_columns, text, validate_answers)
from hfclf.bake.project import (DATA_CONFIG, copy_local_dataset, dvc_command, git_identity,
                                point_data_config, post_gen, run)
from hfclf.bake.provenance import (ABBREVIATIONS, CRUFT_FILE, CRUFT_SKIP, RUN_KEYS, cruft_state,
                                   git_output, template_keys, template_source, write_cruft_file)

__all__ = [
    "CONTROL_RE", "DATA_SUFFIXES", "FREE_TEXT", "HUB_ID_RE", "HUB_REPO_RE", "LOCAL_DATASET_NOTE",
    "PACKAGE_RE", "PROJECT_DIR_ENV", "QUOTED_IN_YAML", "RENDER_MODE_ENV", "RESERVED_PACKAGES",
    "SLUG_RE", "BakeError", "columns_of", "hook", "json_columns", "looks_local", "pre_gen",
    "render_only", "resolve_local", "save_to_disk_columns", "text", "validate_answers",
    "DATA_CONFIG", "copy_local_dataset", "dvc_command", "git_identity", "point_data_config",
    "post_gen", "run",
    "ABBREVIATIONS", "CRUFT_FILE", "CRUFT_SKIP", "RUN_KEYS", "cruft_state", "git_output",
    "template_keys", "template_source", "write_cruft_file",
]
