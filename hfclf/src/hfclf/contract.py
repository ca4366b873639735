"""`hfclf contract`: dvc.yaml rendered from the stage table (hfclf.pipeline) and checked against it.

This module owns everything done *with* the contract: rendering STAGES to dvc.yaml text (render -
the template's dvc.yaml is this rendering), reading a dvc.yaml back into a comparable form
(expected, normalise), naming each stage and key where a project's dvc.yaml departs from it
(differences) or where the project's config files lack a param key it lists (missing_params),
rewriting dvc.yaml while keeping the user's own stages (write), and the command itself (main:
exit 2 naming each difference; --write rewrites).
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

from hfclf.pipeline import HEADER, STAGES, Stage


# --------------------------------------------------------------------------- rendering

def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _line(text: str, comment: str = "") -> str:
    """An item with its end-of-line comment: not column-aligned, so the file reads the same whatever
    the package name is (the template renders the name later, with Jinja)."""
    return f"{text}   # {comment}" if comment else text


def _render_stage(stage: Stage, package: str) -> list[str]:
    lines = [f"  # {line}" for line in stage.about]
    lines += [f"  {stage.name}:", f"    cmd: {stage.cmd}"]
    if stage.deps:
        lines.append("    deps:")
        lines += [_line(f"      - {d.path.format(package=package)}", d.comment) for d in stage.deps]
    lines.append("    params:")
    for file, keys in stage.all_params():
        lines.append(_line(f"      - {file}:", stage.param_comments.get(file, "")))
        lines += [f"          - {key}" for key in keys]
    for section in ("outs", "metrics", "plots"):
        items = getattr(stage, section)
        if not items:
            continue
        lines.append(f"    {section}:")
        for item in items:
            path = item.path.format(package=package)
            if not item.options:
                lines.append(_line(f"      - {path}", item.comment))
                continue
            lines.append(_line(f"      - {path}:", item.comment))
            lines += [f"          {key}: {_scalar(value)}" for key, value in item.options.items()]
    return lines


def render(package: str) -> str:
    """dvc.yaml for a project whose own code is src/<package>/ (the template passes its Jinja placeholder)."""
    blocks = ["\n".join(_render_stage(stage, package)) for stage in STAGES]
    return HEADER.format(package=package) + "stages:\n" + "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------- checking

def expected(package: str) -> dict[str, dict]:
    """The contract as DVC would read it: stage -> normalised fields."""
    import yaml

    return {name: normalise(spec) for name, spec in yaml.safe_load(render(package))["stages"].items()}


def normalise(spec: dict) -> dict:
    """A dvc.yaml stage in a comparable form: order-free lists, options as dicts."""
    def entries(items) -> dict[str, dict]:
        out = {}
        for item in items or []:
            if isinstance(item, dict):
                for path, options in item.items():
                    out[str(path)] = dict(options or {})
            else:
                out[str(item)] = {}
        return out

    params: dict[str, set] = {}
    for item in spec.get("params") or []:
        if isinstance(item, dict):
            for file, keys in item.items():
                params.setdefault(str(file), set()).update(keys or ["<whole file>"])
        else:
            params.setdefault("params.yaml", set()).add(str(item))
    return {"cmd": spec.get("cmd"), "deps": set(map(str, spec.get("deps") or [])), "params": params,
            "outs": entries(spec.get("outs")), "metrics": entries(spec.get("metrics")),
            "plots": entries(spec.get("plots"))}


def differences(actual_stages: dict, package: str) -> list[str]:
    """One line per stage and key where `actual_stages` (dvc.yaml's `stages:`) departs from the contract."""
    problems = []
    want = expected(package)
    for name, spec in want.items():
        if name not in actual_stages:
            problems.append(f"{name}: stage missing")
            continue
        got = normalise(actual_stages[name] or {})
        if got["cmd"] != spec["cmd"]:
            problems.append(f"{name}.cmd: is {got['cmd']!r}, the contract says {spec['cmd']!r}")
        for path in sorted(spec["deps"] - got["deps"]):
            problems.append(f"{name}.deps: missing {path}")
        for path in sorted(got["deps"] - spec["deps"]):
            problems.append(f"{name}.deps: not in the contract: {path}")
        for file in sorted(set(spec["params"]) | set(got["params"])):
            missing = sorted(spec["params"].get(file, set()) - got["params"].get(file, set()))
            extra = sorted(got["params"].get(file, set()) - spec["params"].get(file, set()))
            if missing:
                problems.append(f"{name}.params: {file}: missing {', '.join(missing)}")
            if extra:
                problems.append(f"{name}.params: {file}: not in the contract: {', '.join(extra)}")
        for section in ("outs", "metrics", "plots"):
            for path in sorted(set(spec[section]) | set(got[section])):
                if path not in got[section]:
                    problems.append(f"{name}.{section}: missing {path}")
                elif path not in spec[section]:
                    problems.append(f"{name}.{section}: not in the contract: {path}")
                elif got[section][path] != spec[section][path]:
                    problems.append(f"{name}.{section}: {path}: options {got[section][path]}, "
                                    f"the contract says {spec[section][path]}")
    return problems


def package_name(root: Path) -> str:
    """The project's own package: the one folder under src/ with an __init__.py, else from pyproject's name."""
    found = sorted(p.parent.name for p in (root / "src").glob("*/__init__.py"))
    if len(found) == 1:
        return found[0]
    import tomllib

    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, KeyError, ValueError):
        from hfclf.infra.errors import UserError

        raise UserError(f"cannot tell the project's package: src/ holds {found or 'no package'} and "
                        "pyproject.toml names no project") from None
    return name.replace("-", "_")


def missing_params(root: Path) -> list[str]:
    """Param keys of the contract that the project's files lack (DVC would refuse to run the stage)."""
    import tomllib

    import yaml

    loaded: dict[str, object] = {}
    problems = []
    for stage in STAGES:
        for file, keys in stage.all_params():
            if file not in loaded:
                path = root / file
                try:
                    text = path.read_text(encoding="utf-8")
                    loaded[file] = tomllib.loads(text) if file.endswith(".toml") else yaml.safe_load(text) or {}
                except (OSError, ValueError, yaml.YAMLError) as err:
                    loaded[file] = err
            content = loaded[file]
            if isinstance(content, Exception):
                users = [s.name for s in STAGES if file in dict(s.all_params())]
                line = f"{file}: cannot be read ({type(content).__name__}); params of {', '.join(users)}"
                if line not in problems:
                    problems.append(line)
                continue
            for key in keys:
                node = content
                for part in key.split("."):
                    node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
                if node is KeyError:
                    problems.append(f"{stage.name}.params: {file}: has no key {key}")
    return problems


def check(root: Path) -> list[str]:
    import yaml

    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    stages = (yaml.safe_load(text) or {}).get("stages") or {}
    return differences(stages, package_name(root)) + missing_params(root)


def write(root: Path) -> Path:
    """Render dvc.yaml for the project at `root`, keeping stages of the user's own after the contract's."""
    import yaml

    path = root / "dvc.yaml"
    text = render(package_name(root))
    if path.exists():
        current = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
        own = {name: spec for name, spec in current.items() if name not in {s.name for s in STAGES}}
        if own:
            dumped = yaml.safe_dump(own, sort_keys=False, indent=2)
            text += "\n  # your own stages\n" + "".join(f"  {line}\n" for line in dumped.splitlines())
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- command

USAGE = """usage: hfclf contract [--write]
  check dvc.yaml against the contract hfclf derives (exit 2 on a difference); --write rewrites it."""


def main(argv: list[str] | None = None) -> None:
    from hfclf import __version__
    from hfclf.infra.cli import project_root
    from hfclf.infra.errors import UserError

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in {"-h", "--help"} for a in args) or set(args) - {"--write"}:
        print(USAGE)
        sys.exit(0 if set(args) <= {"-h", "--help"} else 2)
    try:
        root = project_root()
        if "--write" in args:
            path = write(root)
            print(f"wrote {path} from the contract of hfclf {__version__} ({len(STAGES)} stages)")
            return
        problems = check(root)
    except UserError as err:
        sys.stderr.write(f"ERROR: {err}\n")
        sys.exit(2)
    if problems:
        sys.stderr.write(f"ERROR: dvc.yaml departs from the contract of hfclf {__version__} "
                         f"({len(problems)} difference{'s' if len(problems) > 1 else ''}); "
                         "`hfclf contract --write` rewrites it:\n" + "".join(f"  {p}\n" for p in problems))
        sys.exit(2)
    print(f"dvc.yaml matches the contract of hfclf {__version__} ({len(STAGES)} stages)")


def unified_diff(actual: str, package: str) -> str:
    """The text diff between a dvc.yaml and the rendering (for tests and messages)."""
    return "".join(difflib.unified_diff(actual.splitlines(True), render(package).splitlines(True),
                                        "dvc.yaml", "contract"))
