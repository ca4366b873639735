"""hfclf.bake: the cookiecutter hooks' logic (validation, .cruft.json, render mode) - fast, no bake."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfclf import __version__, bake

TEMPLATE_ROOT = Path(__file__).resolve().parents[2]       # the template checkout holding hfclf/
HOOKS = TEMPLATE_ROOT / "hooks"

GOOD = {"project_name": "Support Ticket Classifier", "project_slug": "support-ticket-classifier",
        "package_name": "support_ticket_classifier", "description": "Label tickets.",
        "author_name": "Your Name", "dataset": "owner/tickets", "text_column": "instruction",
        "label_column": "category", "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "hub_repo_id": "", "license": "mit", "_hfclf_version": __version__}


def answers(**changes):
    return {**GOOD, **changes}


@pytest.fixture(autouse=True)
def bake_mode(monkeypatch):
    monkeypatch.delenv(bake.RENDER_MODE_ENV, raising=False)
    monkeypatch.delenv(bake.PROJECT_DIR_ENV, raising=False)


@pytest.mark.parametrize("changes, variable, words", [
    ({"project_slug": "Bad Slug!"}, "project_slug", "not a valid slug"),
    ({"package_name": "9lives"}, "package_name", "not a valid package name"),
    ({"package_name": "hfclf"}, "package_name", "shadow"),
    ({"text_column": ""}, "text_column", "must not be empty"),
    ({"label_column": "instruction"}, "label_column", "also the text_column"),
    ({"hub_repo_id": "not a repo"}, "hub_repo_id", "not a Hub repo id"),
    ({"description": "two\nlines"}, "description", "line break"),
    ({"author_name": "tab\there"}, "author_name", "line break"),
    ({"project_name": 'a """ b'}, "project_name", "docstring"),
])
def test_validation_names_the_variable(changes, variable, words):
    with pytest.raises(bake.BakeError) as err:
        bake.validate_answers(answers(**changes))
    assert err.value.variable == variable and words in err.value.problem
    assert str(err.value).startswith(f"{variable}: ")


def test_quotes_and_backslashes_in_yaml_answers_are_accepted_as_data():
    """conf/ renders these answers with `| tojson`: any printable text is data (issue #17)."""
    bake.validate_answers(answers(text_column='say "hi"', label_column="it's \\ {{ x }}",
                                  base_model='C:\\models\\"m"'))


def test_hostile_free_text_is_accepted_as_plain_text():
    bake.validate_answers(answers(project_name="O'Brien's ''' {{ x }} \"Radar\"",
                                  description="quotes \" ' ''' and \\ backslash {{ cookiecutter }}",
                                  author_name="Zoë \"Z\" O'Neil \\"))


def test_hook_turns_a_bake_error_into_a_named_message_and_exit_1(capsys):
    with pytest.raises(SystemExit) as stop:
        bake.hook(bake.validate_answers, answers(project_slug="Bad Slug!"))
    assert stop.value.code == 1
    assert "ERROR: project_slug: 'Bad Slug!' is not a valid slug" in capsys.readouterr().err


def test_local_dataset_columns_are_checked_and_noted_for_post_gen(tmp_path):
    data = tmp_path / "tickets.csv"
    data.write_text("instruction,category\nwhere is my parcel,DELIVERY\n", encoding="utf-8")
    project = tmp_path / "out" / "proj"
    project.mkdir(parents=True)
    bake.pre_gen(answers(dataset=str(data)), project)
    assert (project / bake.LOCAL_DATASET_NOTE).read_text() == str(data.resolve())
    with pytest.raises(bake.BakeError, match=r"text_column: column 'body' is not in .*Its columns are: "
                                             r"instruction, category"):
        bake.pre_gen(answers(dataset=str(data), text_column="body"), project)
    with pytest.raises(bake.BakeError, match="dataset: local dataset .* does not exist"):
        bake.pre_gen(answers(dataset=str(tmp_path / "missing.csv")), project)


@pytest.mark.parametrize("content, words", [("", "is empty"), ("[1, 2]\n", "not a JSON object"),
                                            ("{oops\n", "not JSON")])
def test_unreadable_jsonl_is_named(tmp_path, content, words):
    data = tmp_path / "t.jsonl"
    data.write_text(content, encoding="utf-8")
    with pytest.raises(bake.BakeError, match=words):
        bake.columns_of(data)


def test_render_mode_checks_no_files_and_repeats_only_the_config_rewrite(tmp_path, monkeypatch):
    """`make update` re-renders old and new template commits: no data copy, no git, no .cruft.json,
    but the data config reads as the project's does (so git can merge three-way)."""
    updating = tmp_path / "project"
    (updating / "data" / "raw").mkdir(parents=True)
    (updating / "data" / "raw" / "tickets.csv.dvc").write_text("outs: []\n")
    render = tmp_path / "render"
    (render / "conf" / "data").mkdir(parents=True)
    (render / bake.DATA_CONFIG).write_text('source: "/gone/tickets.csv"   # comment\n')
    monkeypatch.setenv(bake.RENDER_MODE_ENV, "render")
    monkeypatch.setenv(bake.PROJECT_DIR_ENV, str(updating))
    given = answers(dataset="/gone/tickets.csv")
    bake.pre_gen(given, render)                       # the dataset is gone: not an error here
    bake.post_gen(given, render, repo_dir=TEMPLATE_ROOT)
    assert (render / bake.DATA_CONFIG).read_text() == 'source: "data/raw/tickets.csv"   # comment\n'
    assert sorted(p.name for p in render.iterdir()) == ["conf"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_cruft_state_of_a_plain_cookiecutter_bake(tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    (template / "cookiecutter.json").write_text(json.dumps({"project_name": "x", "dataset": "y",
                                                            "__prompts__": {}, "_hfclf_version": "1"}))
    git(template, "init", "-q")
    git(template, "add", "-A")
    git(template, "commit", "-qm", "A")
    run_answers = {"_checkout": None, "_hfclf_version": "1", "_output_dir": "/out",
                   "_repo_dir": str(template), "_template": str(template), "dataset": "y",
                   "project_name": "x"}
    state = bake.cruft_state(run_answers, template)
    assert state["template"] == str(template.resolve())
    assert state["commit"] == git(template, "rev-parse", "HEAD")
    assert state["directory"] is None and ".git" in state["skip"]
    context = state["context"]["cookiecutter"]
    assert list(context) == ["project_name", "dataset", "_hfclf_version", "_template", "_commit"]
    assert context["_commit"] == state["commit"]


def test_cruft_state_under_cruft_create_is_what_cruft_writes():
    given = {"_commit": "abc", "_template": "https://example.com/t.git", **answers()}
    state = bake.cruft_state(dict(sorted(given.items())), TEMPLATE_ROOT)
    assert state == {"template": "https://example.com/t.git", "commit": "abc", "checkout": None,
                     "context": {"cookiecutter": {**{k: given[k] for k in json.loads(
                         (TEMPLATE_ROOT / "cookiecutter.json").read_text()) if k in given},
                         "_template": "https://example.com/t.git", "_commit": "abc"}},
                     "directory": None}
    assert list(state["context"]["cookiecutter"])[-2:] == ["_template", "_commit"]


@pytest.mark.parametrize("given, expected", [
    ("gh:acme/tpl", "https://github.com/acme/tpl.git"),
    ("https://github.com/acme/tpl", "https://github.com/acme/tpl"),
    ("git@github.com:acme/tpl.git", "git@github.com:acme/tpl.git"),
])
def test_template_urls_are_kept_clonable(given, expected):
    assert bake.template_source(given, None)[0] == expected


def test_import_needs_only_the_standard_library():
    probe = ("import sys; before = set(sys.modules); import hfclf.bake; "
             "print(sorted(m.split('.')[0] for m in set(sys.modules) - before))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe.replace("print(", "import json; print(json.dumps(")
                                        + ")"], capture_output=True, text=True, check=True).stdout)
    outside = {m for m in loaded if m not in sys.stdlib_module_names and m not in ("hfclf", "_distutils_hack")}
    assert not outside, outside


@pytest.mark.skipif(not (HOOKS / "pre_gen_project.py").is_file(), reason="not inside the template")
@pytest.mark.parametrize("hook", ["pre_gen_project.py", "post_gen_project.py"])
def test_hooks_receive_answers_as_data_never_as_code(hook):
    """Render the real hook with cookiecutter's Jinja environment and hostile answers: the source
    parses, and the answers come back equal from the string literal, unevaluated."""
    from cookiecutter.environment import StrictEnvironment

    hostile = answers(project_name="x\"\"\" + __import__('os').system('echo pwned') + \"\"\"",
                      description="''' \\ \\n \n {{ cookiecutter.project_slug }} {% raw %} </script> é 😀",
                      author_name="\"); import os; os.system('echo pwned'); (\"")
    context = {"cookiecutter": hostile}
    env = StrictEnvironment(context=context, keep_trailing_newline=True)
    source = env.from_string((HOOKS / hook).read_text(encoding="utf-8")).render(**context)
    tree = ast.parse(source)                                    # never a SyntaxError
    assignment = next(n for n in tree.body if isinstance(n, ast.Assign)
                      and getattr(n.targets[0], "id", "") == "ANSWERS")
    call = assignment.value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "json.loads"
    literal = call.args[0]
    assert isinstance(literal, ast.Constant) and isinstance(literal.value, str)
    assert json.loads(literal.value) == hostile
    assert "pwned" not in "".join(ast.unparse(n) for n in tree.body if n is not assignment)
