"""Pre-flight on a tiny model: the data profile's token lengths, review, smoke test, plan and its
approval, the CPU fallback on GPU out-of-memory, and resuming a training process that was killed.

Every failure mode runs for real and its message is checked. One prepared project (prepare ->
review -> smoke -> plan on the tiny model) is shared by the module; tests that change it work on
a copy.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import copy_project, hfclf_command, make_tickets, run_stage, stage_env

from hfclf.infra import compute
from hfclf.train import modeling
from hfclf.preflight import plan, checks, smoke
from hfclf.infra.errors import UserError

CHECKS = ["model loads", "loss is finite", "loss decreases", "evaluation runs", "save and reload",
          "identical predictions after reload", "label mapping round-trip"]


def set_conf(project: Path, file: str, **values) -> None:
    """Write values into conf/<file> (keys dotted), as a user editing the YAML would."""
    path = project / "conf" / file
    conf = OmegaConf.load(path)
    for key, value in values.items():
        OmegaConf.update(conf, key, value, force_add=True)
    OmegaConf.save(conf, path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_model_dir, baked_project) -> Path:
    """conf/ set up for the tiny model, then prepare, review, smoke and plan run once."""
    project = copy_project(baked_project, tmp_path_factory.mktemp("preflight"))
    make_tickets().to_csv(project / "tickets.csv", index=False)
    set_conf(project, "data/default.yaml", source="tickets.csv")
    set_conf(project, "prepare.yaml", **{"prepare.validation_size": 0.2, "prepare.test_size": 0.2})
    # a random tiny model learns only with trainable embeddings and a high learning rate
    set_conf(project, "model/default.yaml", name=str(tiny_model_dir), freeze_embeddings=False)
    set_conf(project, "train.yaml", **{"train.learning_rate": 1e-2, "train.batch_size": 8, "train.max_epochs": 2})
    # one thread: a tiny model gains nothing from more, and on a busy CPU two threads per process thrash
    set_conf(project, "compute/default.yaml", device="cpu", precision="fp32", threads=1)
    set_conf(project, "smoke.yaml", **{"smoke.steps": 30})   # the random tiny model needs more steps than MiniLM
    for stage in ("prepare", "review", "smoke", "plan"):
        run_stage(project, stage)
    return project


@pytest.fixture()
def project(prepared, tmp_path) -> Path:
    """A private copy of the prepared project."""
    copy = tmp_path / "project"
    shutil.copytree(prepared, copy)
    return copy


def report(project: Path, name: str) -> dict:
    return json.loads((project / "reports" / name).read_text())


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- prepare: profile

def test_profile_has_token_percentiles_and_plots(prepared, tiny_model_dir):
    profile = report(prepared, "data_profile.json")
    tokens = profile["text_tokens"]
    assert tokens["tokenizer"] == str(tiny_model_dir) and tokens["tokenized_rows"] == 90
    assert 3 <= tokens["p50"] <= tokens["p99"] <= tokens["max"] < 40       # short tickets, CLS/SEP included
    assert tokens["model_max_positions"] == 128 and tokens["longer_than"]["128"] == 0.0
    assert profile["split"] == {"method": "group", "kept_from_source": []}
    for figure in ("class_counts.png", "text_lengths.png"):
        assert (prepared / "reports/figures" / figure).stat().st_size > 5000, figure
    markdown = (prepared / "reports/data_profile.md").read_text()
    assert "| tokens |" in markdown and "![text lengths](figures/text_lengths.png)" in markdown


# --------------------------------------------------------------------------- review

def test_review_passes_on_the_default_group_split(prepared):
    result = report(prepared, "review.json")
    assert result["verdict"] == "pass" and result["leakage"]["max_fraction"] == 0.0
    assert [p["near_rows"] for p in result["leakage"]["pairs"]] == [0, 0, 0]
    assert "Verdict: ✅ pass" in (prepared / "reports/review.md").read_text()


def test_stratified_split_leaks_and_review_fails_with_the_fix(project):
    run_stage(project, "prepare", "prepare.split=stratified")
    failed = run_stage(project, "review", check=False)
    no_traceback(failed)
    message = failed.stderr
    assert "ERROR: review found severe leakage:" in message and "repeat a train text" in message
    assert "review.max_leakage_fraction=0.01" in message
    assert "set `split: group` in conf/prepare.yaml" in message and "review.allow_leakage=true" in message
    assert report(project, "review.json")["verdict"] == "fail"           # the report says why, in full
    allowed = run_stage(project, "review", "review.allow_leakage=true")
    assert "severe leakage allowed" in allowed.stdout
    assert report(project, "review.json")["verdict"] == "leakage allowed"


def test_leakage_in_the_datasets_own_splits_points_to_the_source():
    splits = {"train": pd.DataFrame({"text": ["cancel order 1", "refund please"], "label": ["O", "R"]}),
              "validation": pd.DataFrame({"text": ["reset my password"], "label": ["A"]}),
              "test": pd.DataFrame({"text": ["Cancel order 22!"], "label": ["O"]})}
    result = checks.review(splits, checks.ReviewSettings(similarity_threshold=None), max_length=128)
    assert result["verdict"] == "fail" and result["leakage"]["pairs"][1]["near_rows"] == 1
    message = checks.leakage_error(result, {"method": "group", "kept_from_source": ["test"]})
    assert "the dataset's own test overlap with train" in message and "de-duplicate them at the source" in message


def test_review_finds_conflicts_imbalance_lengths_and_personal_data(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    train = pd.DataFrame({"text": [f"where is my parcel number {i}" for i in range(40)]
                          + ["hi", "the same words", "contact me at jane.doe@example.com",
                             "call +44 20 7946 0958 please", "card 4111 1111 1111 1111 was charged twice",
                             "my account is ACC-1234567", "word " * 200],
                          "label": ["SHIP"] * 40 + ["OTHER", "A", "OTHER", "OTHER", "PAY", "OTHER", "OTHER"]})
    splits = {"train": train,
              "validation": pd.DataFrame({"text": ["The same words!"], "label": ["B"]}),
              "test": pd.DataFrame({"text": ["totally new"], "label": ["SHIP"]})}
    settings = checks.ReviewSettings(max_leakage_fraction=1.0, similarity_threshold=None)
    result = checks.review(splits, settings, max_length=64,
                           count_tokens=lambda texts: [len(x) for x in tokenizer(texts)["input_ids"]])
    assert result["label_conflicts"]["texts"] == 1 and result["label_conflicts"]["rows"] == 2
    assert result["label_conflicts"]["examples"][0]["labels"] == {"A": 1, "B": 1}
    imbalance = result["imbalance"]
    assert imbalance["ratio"] == 40.0 and imbalance["severe"] and "PAY" in imbalance["minority_classes"]
    assert result["lengths"]["short"]["rows"] == 1 and result["lengths"]["long"]["rows"] == 1
    kinds = result["personal_data"]["kinds"]
    assert {k: v["rows"] for k, v in kinds.items()} == {"email": 1, "card_number": 1, "phone": 1,
                                                         "order_or_account_number": 1}
    markdown = checks.review_markdown(result)
    assert "jane.doe@example.com" not in markdown and "ja••••" in markdown      # shown masked only
    assert "4111 1111 1111 1111" not in json.dumps(result)
    risks = " ".join(result["risks"])
    assert "carry different labels" in risks and "class imbalance 40.0:1" in risks
    assert "longer than model.max_length=64 tokens" in risks and "likely personal data" in risks


# --------------------------------------------------------------------------- smoke

def test_smoke_report_lists_every_check_and_throughput(prepared):
    result = report(prepared, "smoke.json")
    assert result["passed"] and [c["check"] for c in result["checks"]] == CHECKS
    assert all(c["passed"] for c in result["checks"])
    assert result["subset"] == {"train_rows": 24, "validation_rows": 6, "classes": 3}   # 8 and 2 per class
    assert result["steps"] == 30 and all(np.isfinite(result["losses"]))
    assert result["train_examples_per_second"] > 0 and result["inference_examples_per_second"] > 0
    # the plan's clock is timed on the whole training split's batches, not on the 24-row subset
    timed = result["timing"]["training"]
    train_rows = report(prepared, "data_profile.json")["rows"]["train"]
    assert timed["steps_per_epoch"] == -(-train_rows // result["batch_size"]) > 2
    assert timed["steps_timed"] == min(12, timed["steps_per_epoch"])    # smoke.timing_steps, or all of a small epoch
    assert 1 <= len(timed["rounds"]) <= 5                                # smoke.timing_min_seconds / _max_rounds
    assert timed["step_seconds"] == pytest.approx(statistics.median(timed["rounds"]), abs=1e-4)
    # the clock's figure is the whole split at the timed step: step_seconds is recorded to 4 decimals (a
    # tiny model's 0.0046 s may be 0.00455 - 1.1% off), examples per second to 1
    slowest, fastest = ((timed["step_seconds"] + half) * timed["steps_per_epoch"] for half in (5e-5, -5e-5))
    assert train_rows / slowest - 0.05 <= result["train_examples_per_second"] <= train_rows / fastest + 0.05
    assert result["parameters"] >= result["trainable_parameters"] > 0 and result["device"] == "cpu"


def test_smoke_steps_auto_repeat_the_subset_whatever_the_number_of_classes():
    # Bitext's 11 categories x 8 rows, batch 16: 17 steps; Debian's ~50 sections x 8: 75 steps, where a
    # fixed 9 steps (144 examples) would not show every example even once, so the loss cannot fall
    assert smoke.planned_steps("auto", 88, 16, passes=3) == 17
    assert smoke.planned_steps("auto", 400, 16, passes=3) == 75
    assert smoke.planned_steps("auto", 6, 6, passes=3) == 9          # never fewer than 9 steps
    assert smoke.planned_steps(30, 400, 16, passes=3) == 30          # a number is taken as it is
    for bad in ("many", 2):
        with pytest.raises(UserError, match="smoke.steps"):
            smoke.planned_steps(bad, 88, 16, passes=3)


def test_smoke_fails_when_the_loss_does_not_fall(project):
    failed = run_stage(project, "smoke", "train.learning_rate=0", check=False)
    no_traceback(failed)
    assert "ERROR: smoke check 'loss decreases' failed: mean loss went from" in failed.stderr
    assert "Check train.learning_rate" in failed.stderr
    assert not (project / "reports/smoke.json").exists()        # no stale pass left behind


def test_smoke_fails_on_a_model_that_gives_non_finite_loss(project, tiny_model_dir, tmp_path):
    from transformers import BertModel

    broken = tmp_path / "nan-bert"
    shutil.copytree(tiny_model_dir, broken)                            # the tokenizer stays as it is
    model = BertModel.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight.fill_(float("nan"))  # weights that went bad
    model.save_pretrained(broken)
    failed = run_stage(project, "smoke", f"model.name={broken}", check=False)
    no_traceback(failed)
    assert "ERROR: smoke check 'loss is finite' failed: training loss became nan at step 0" in failed.stderr


def test_reload_and_label_mapping_checks_catch_a_corrupted_model(tiny_model_dir, tmp_path):
    labels = ["ACCOUNT", "ORDER", "REFUND"]
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), labels, seed=0)
    modeling.save(model, tokenizer, tmp_path / "m", {"max_length": 64, "abstain_threshold": None})
    config = json.loads((tmp_path / "m/config.json").read_text())
    config["id2label"] = {"0": "ORDER", "1": "ACCOUNT", "2": "REFUND"}           # a mapping that went wrong
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    loaded = modeling.Predictor.from_dir(tmp_path / "m", compute.select("cpu", "fp32", 1))
    problems = smoke.label_mapping_problems(labels, loaded)
    assert problems and "id2label is ['ORDER', 'ACCOUNT', 'REFUND']" in problems[0]
    before = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert smoke.same_predictions(before, before.copy(), 1e-4) == (True, 0.0)
    assert smoke.same_predictions(before, before[:, ::-1], 1e-4)[0] is False
    assert smoke.loss_decreases([2.0, 2.0, 2.0], 0.02)[0] is False and smoke.loss_decreases([2, 1.5, 1.0], 0.02)[0]


# --------------------------------------------------------------------------- plan

def compose(project: Path, *overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(project / "conf"), version_base=None):
        return hydra_compose("plan", overrides=list(overrides))


def test_plan_reports_sizes_schedule_estimate_and_risks(prepared, tiny_model_dir):
    made = report(prepared, "training_plan.json")
    rows = report(prepared, "data_profile.json")["rows"]
    assert made["data"]["rows"] == rows and made["training"]["epochs"] == 2
    assert made["training"]["steps_per_epoch"] == -(-rows["train"] // 8)
    assert made["model"]["parameters"] == report(prepared, "smoke.json")["parameters"]
    assert made["model"]["suggested_max_length"] == 32 and made["model"]["truncated_share"] == 0.0
    assert made["estimate"]["fits_budget"] and made["estimate"]["total_minutes"] > 0
    assert made["compute"]["device"] == "cpu" and made["settings"]["model"] == str(tiny_model_dir)
    markdown = (prepared / "reports/training_plan.md").read_text()
    assert made["plan_sha256"] == plan.digest(markdown)
    for row in ("| data |", "| model |", "| max_length |", "| schedule |", "| device |", "| estimate |", "| budget |"):
        assert row in markdown, row
    assert "## Risks" in markdown
    # train.stop_at_score (the template's 0.995): the plan says it and where easy data can stop
    assert made["training"]["stop_at_score"] == 0.995 and made["settings"]["stop_at_score"] == 0.995
    assert made["training"]["target_stop_epochs"] == 0.5   # the first of 4 passes per epoch + one pass of cooldown
    assert "when a pass scores 0.995 or more (nothing better left to measure), training ends after a cooldown" in markdown
    assert f"once a pass scores 0.995 (train.stop_at_score; from 0.5 epoch, " \
           f"{made['estimate']['target_stop_minutes']} min)" in markdown
    # train.patience_window (the template's 3): covered by the approval, said in "stops on"
    assert made["settings"]["patience_window"] == 3
    assert "(the median of the last 3 passes: one lucky pass does not raise the bar)" in markdown
    without = plan.make_plan(compose(prepared, "train.stop_at_score=null"), report(prepared, "data_profile.json"),
                             report(prepared, "review.json"), report(prepared, "smoke.json"), "f")
    assert "stop_at_score" not in plan.plan_markdown(without) and "easy data stops near the low end" in \
        plan.plan_markdown(without)


def at_speed(smoked: dict, **speeds) -> dict:
    """The smoke report with these examples per second at every length it timed."""
    return dict(smoked, **speeds, by_length={k: dict(v, **speeds) for k, v in smoked["by_length"].items()})


def test_plan_flags_a_blown_budget_and_refuses_an_impossible_max_length(prepared):
    profile, reviewed, smoked = (report(prepared, n) for n in ("data_profile.json", "review.json", "smoke.json"))
    slow = at_speed(smoked, train_examples_per_second=0.01)
    made = plan.make_plan(compose(prepared, "compute.max_minutes=1"), profile, reviewed, slow, "f")
    assert not made["estimate"]["fits_budget"]
    assert made["risks"][0].startswith("the estimate (") and "exceeds compute.max_minutes=1" in made["risks"][0]
    assert "does not fit" in plan.plan_markdown(made)
    with pytest.raises(UserError, match=r"model.max_length=256 is more than .* can take \(128 positions\)"):
        plan.make_plan(compose(prepared, "model.max_length=256"), profile, reviewed, smoked, "f")


def test_plan_resolves_auto_epochs_from_the_budget_as_train_does(prepared):
    profile, reviewed, smoked = (report(prepared, n) for n in ("data_profile.json", "review.json", "smoke.json"))
    train_rows = profile["rows"]["train"]
    # 250 s per epoch (validation all but free): (30 min - start-up) / 250 s = 7.1 epochs fit -> 7
    paced = at_speed(smoked, train_examples_per_second=train_rows / 250, inference_examples_per_second=1e9)
    cfg = compose(prepared, "train.max_epochs=auto", "compute.max_minutes=30")
    made = plan.make_plan(cfg, profile, reviewed, paced, "f")
    overhead = made["estimate"]["overhead_seconds"]
    assert made["estimate"]["seconds_per_epoch"] == 250.0
    assert made["training"]["epochs"] == int((1800 - overhead) // 250) == 7 and made["estimate"]["fits_budget"]
    assert "epochs fit in the budget" in plan.plan_markdown(made)
    # train resolves the same bound from the recorded plan; under another budget, that budget's
    assert plan.epoch_bound("auto", made, 30, 1500) == 7 and plan.epoch_bound("auto", made, 10, 1500) == 2
    # at most 10 epochs - or, on a set this small, the epochs that make train.min_steps steps (the template's 1500)
    steps = made["training"]["steps_per_epoch"]
    assert made["training"]["min_steps"] == 1500 and made["training"]["auto_max_epochs"] == math.ceil(1500 / steps) > 10
    assert plan.epoch_bound("auto", made, 600, 0) == 10
    assert plan.epoch_bound("auto", made, 600, 20 * steps) == 20
    assert plan.epoch_bound("auto", made, 600, 1500) == int((36000 - overhead) // 250) < math.ceil(1500 / steps)
    assert plan.make_plan(compose(prepared, "train.max_epochs=auto", "compute.max_minutes=300", "train.min_steps=0"),
                          profile, reviewed, paced, "f")["training"]["epochs"] == 10    # at most 10
    wide = plan.make_plan(compose(prepared, "train.max_epochs=auto", "compute.max_minutes=300",
                                  f"train.min_steps={20 * steps}"), profile, reviewed, paced, "f")
    assert wide["training"]["epochs"] == 20 and wide["training"]["total_steps"] == 20 * steps
    assert (f"kept within 2–20: a small set, so the 20 epochs that make train.min_steps={20 * steps} steps rather "
            "than 10") in plan.plan_markdown(wide)
    tight = plan.make_plan(compose(prepared, "train.max_epochs=auto", "compute.max_minutes=5"), profile, reviewed,
                           paced, "f")
    assert tight["training"]["epochs"] == 2 and not tight["estimate"]["fits_budget"]  # at least 2: the budget stops it
    with pytest.raises(UserError, match=r"train.min_steps must be a whole number of optimisation steps, at least 0 "
                                        r".* not -1"):
        plan.make_plan(compose(prepared, "train.min_steps=-1"), profile, reviewed, paced, "f")


def test_plan_without_a_smoke_test_says_what_to_run(project):
    (project / "reports/smoke.json").unlink()
    failed = run_stage(project, "plan", check=False)
    no_traceback(failed)
    assert "reports/smoke.json' is missing: run `make smoke`" in failed.stderr


def test_approval_gate_refuses_until_this_exact_plan_is_approved(project):
    from mlflow.tracking import MlflowClient

    set_conf(project, "plan.yaml", **{"plan.require_approval": True})
    refused = run_stage(project, "train", check=False)
    no_traceback(refused)
    assert "training needs an approved plan (plan.require_approval=true)" in refused.stderr
    assert "run `make approve`" in refused.stderr and not (project / "models/model").exists()

    approved = run_stage(project, "approve")
    assert "# Training plan" in approved.stdout                         # the plan is shown when approving
    record = report(project, "plan_approval.json")
    assert record["plan_sha256"] == report(project, "training_plan.json")["plan_sha256"]

    stale = run_stage(project, "train", "train.max_epochs=5", check=False)   # not the plan that was approved
    no_traceback(stale)
    assert "the training plan is stale: max_epochs=2 in the plan, 5 now" in stale.stderr

    plan_md = project / "reports/training_plan.md"
    plan_md.write_text(plan_md.read_text() + "- one more risk\n")        # the plan changed after approval
    changed = run_stage(project, "train", check=False)
    no_traceback(changed)
    assert "the training plan changed since it was approved" in changed.stderr

    run_stage(project, "approve")
    run_stage(project, "train")
    assert (project / "models/model/model.safetensors").exists()
    run_id = json.loads((project / "models/model/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    tags = client.get_run(run_id).data.tags
    assert tags["plan_approved"] == "True" and tags["plan_approval_required"] == "True"
    assert tags["review_verdict"] == "pass"
    logged = {a.path for a in client.list_artifacts(run_id, "reports")}
    assert logged >= {"reports/data_profile.md", "reports/review.md", "reports/review.json", "reports/smoke.json",
                      "reports/training_plan.md", "reports/training_plan.json", "reports/plan_approval.json"}
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"figures/class_counts.png", "figures/text_lengths.png"} <= figures


def test_train_runs_to_the_epoch_bound_the_plan_resolved_and_says_so(project):
    """max_epochs=auto end to end: the plan resolves it, its gate records it, train reads it from the plan."""
    set_conf(project, "train.yaml", **{"train.max_epochs": "auto", "train.early_stopping_patience": 1000,
                                       "train.stop_at_score": None, "train.min_steps": 84})
    run_stage(project, "plan")
    planned = report(project, "training_plan.json")["training"]
    bound = planned["epochs"]   # 84 steps: 12 epochs of 7 steps (54 rows, batch 8), unless the budget bites sooner
    assert 2 <= bound <= planned["auto_max_epochs"] == max(10, math.ceil(84 / planned["steps_per_epoch"]))
    assert report(project, "gates/plan.json")["epoch_bound"] == bound
    # without a plan, auto has nothing to resolve from: a clear error before any work
    (project / "reports/training_plan.json").rename(project / "reports/plan.bak")
    missing = run_stage(project, "train", check=False)
    no_traceback(missing)
    assert "train.max_epochs=auto is resolved by the plan" in missing.stderr and "run `make plan`" in missing.stderr
    (project / "reports/plan.bak").rename(project / "reports/training_plan.json")
    trained = run_stage(project, "train")
    assert f"train.max_epochs=auto: at most {bound} epochs" in trained.stdout + trained.stderr
    summary = report(project, "training.json")
    assert summary["max_epochs"] == bound and summary["epochs_run"] == bound and summary["stop_reason"] == "completed"


def test_auto_max_length_is_chosen_by_the_data_then_by_the_budget_end_to_end(project, tmp_path):
    """model.max_length=auto on long texts: prepare, review and the smoke test use the data's length,
    the smoke test times every candidate, the plan keeps the longest at which plan.length_min_epochs
    epochs fit, its gate records it, and train and the saved model use it."""
    from hfclf.testing import tiny_bert

    model = tiny_bert(tmp_path / "tiny-bert-512", positions=512)
    tickets = make_tickets(rows_per_label=16)
    tickets["instruction"] = (tickets["instruction"] + " ") * 20   # the ticket told 20 times: 140-240 tokens
    tickets.to_csv(project / "tickets.csv", index=False)
    set_conf(project, "model/default.yaml", name=str(model), max_length="auto")
    set_conf(project, "compute/default.yaml", max_minutes=10000)
    for stage in ("prepare", "review", "smoke"):
        run_stage(project, stage)
    assert report(project, "review.json")["lengths"]["long"]["max_length"] == 256
    smoked = report(project, "smoke.json")
    assert smoked["max_length"] == 256 and list(smoked["by_length"]) == ["256", "128"]
    assert all(clock["train_examples_per_second"] > 0 for clock in smoked["by_length"].values())

    run_stage(project, "plan", "plan.length_min_epochs=1")   # the budget allows the data's length
    made = report(project, "training_plan.json")["model"]
    assert made["max_length"] == 256 and made["max_length_choice"] == "the data's length"
    assert made["truncated_share"] == 0.0 and set(made["epochs_fitting_by_length"]) == {"256", "128"}
    assert report(project, "gates/plan.json")["max_length"] == 256

    run_stage(project, "plan", "plan.length_min_epochs=1e12")   # it does not: the shortest, and a risk says so
    planned = report(project, "training_plan.json")
    assert planned["model"]["max_length"] == 128 and report(project, "gates/plan.json")["max_length"] == 128
    cut = report(project, "data_profile.json")["text_tokens"]["longer_than"]["128"]   # the profile's share
    assert planned["model"]["truncated_share"] == cut > 0.5
    risk = next(r for r in planned["risks"] if r.startswith("model.max_length=auto keeps 128 tokens"))
    assert f"which truncates {cut:.1%} of texts: at 256, only" in risk and "Raise compute.max_minutes" in risk
    assert "| max_length | 128 — auto → 128, the shortest timed" in (project / "reports/training_plan.md").read_text()

    (project / "reports/training_plan.json").rename(project / "reports/plan.bak")   # `hfclf train` by hand
    unplanned = run_stage(project, "train")
    assert "model.max_length=auto without a plan: 256 tokens, the data's length, not checked against " \
           "compute.max_minutes" in unplanned.stdout + unplanned.stderr
    assert json.loads((project / "models/model/classifier.json").read_text())["max_length"] == 256
    (project / "reports/plan.bak").rename(project / "reports/training_plan.json")
    trained = run_stage(project, "train")
    assert "model.max_length=auto: 128 tokens, the shortest timed" in trained.stdout + trained.stderr
    assert json.loads((project / "models/model/classifier.json").read_text())["max_length"] == 128
    assert report(project, "training.json")["max_length"] == 128
    assert "texts cut at 128 tokens (model.max_length)" in (project / "reports/training.md").read_text()


# --------------------------------------------------------------------------- compute control

def test_gpu_out_of_memory_falls_back_to_cpu_loudly_and_resumes(tmp_path):
    """No GPU here: the CUDA attempt raises the real torch.OutOfMemoryError a GPU would raise."""
    checkpoint = tmp_path / "last.pt"
    gpu = compute.Compute(torch.device("cuda"), "bf16", 2)
    attempts, told = [], []

    def attempt(hw, resume):
        attempts.append((hw.device.type, resume))
        if hw.device.type == "cuda":
            checkpoint.write_bytes(b"written by the GPU attempt")
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "trained"

    result, used = compute.run_with_cpu_fallback(attempt, gpu, False, checkpoint,
                                                 lambda message, cpu: told.append(message))
    assert result == "trained" and used.device.type == "cpu"
    assert attempts == [("cuda", False), ("cpu", True)]              # the CPU run resumes the GPU's checkpoint
    assert told == used.warnings[-1:]
    assert told[0].startswith("CUDA ran out of memory during training (CUDA out of memory. Tried to allocate")
    assert "falling back to the CPU, resuming from the last checkpoint" in told[0]

    def broken(hw, resume):
        raise ValueError("not a memory problem")
    with pytest.raises(ValueError):
        compute.run_with_cpu_fallback(broken, gpu, False, None, lambda *a: None)

    def cpu_oom(hw, resume):
        raise torch.OutOfMemoryError("out of memory")
    with pytest.raises(torch.OutOfMemoryError):                       # nowhere left to fall back to
        compute.run_with_cpu_fallback(cpu_oom, compute.select("cpu", "fp32", 1), False, None, lambda *a: None)


def test_train_starts_without_importing_what_it_does_not_use(project):
    """Start-up (issue #14): the train stage reads its splits without pandas, builds the (BERT) model
    without transformers and trains without torch._dynamo; `python -X importtime` lists every module
    the stage's process imported. It does not wait for MLflow to open the run before training, yet
    the model and the report name the run."""
    uri = f"tracking.uri=sqlite:///{project / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hfclf", "train", uri], cwd=project,
                          env=stage_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"torch", "hfclf.train.bert", "pyarrow.parquet"} <= imported
    assert not sorted(m for m in imported if m.split(".")[0] in {"pandas", "transformers"}
                      or m.startswith(("torch._dynamo", "huggingface_hub._snapshot_download")))
    run_id = report(project, "training.json")["run_id"]
    assert json.loads((project / "models/model/mlflow_run.json").read_text())["run_id"] == run_id


def test_killed_training_resumes_from_its_last_checkpoint(project):
    """SIGKILL a real training process once it has checkpointed, then resume it to a finished model."""
    from mlflow.tracking import MlflowClient

    overrides = ["train.max_epochs=30", "train.early_stopping_patience=1000", "train.stop_at_score=null",
                 "train.checkpoint_every_minutes=0.01"]
    checkpoint = project / "models/checkpoints/last.pt"
    proc = subprocess.Popen(hfclf_command("train", f"tracking.uri=sqlite:///{project / 'mlflow.db'}", *overrides),
                            cwd=project, env=stage_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "training ended before it could be killed"
        assert checkpoint.exists(), "no checkpoint within 180 s"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (project / "models/model").exists()                   # killed: no model yet
    killed_at = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]["step"]
    killed_run = json.loads((project / "models/checkpoints/mlflow_run.json").read_text())["run_id"]
    assert killed_at > 0

    run_stage(project, "train", *overrides, "train.resume=true")
    summary = report(project, "training.json")
    steps_per_epoch = report(project, "training_plan.json")["training"]["steps_per_epoch"]
    assert summary["resumed_from_step"] == killed_at and summary["steps"] == 30 * steps_per_epoch
    assert summary["stop_reason"] == "completed" and len(summary["history"]) == 30 * 4   # train.evals_per_epoch: 4
    assert (project / "models/model/model.safetensors").exists() and not checkpoint.exists()
    assert summary["run_id"] == killed_run                             # the same MLflow run, continued
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_run(killed_run).info.status == "FINISHED"
