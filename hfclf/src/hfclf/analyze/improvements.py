"""reports/improvements.md: concrete suggestions derived from the evaluation and failure-analysis
numbers, each naming the config switch that implements it and the command that tries it.

Rules compare numbers with the limits in conf/analyze.yaml (`analyze.improvements`); a rule that
does not fire says nothing, so an empty list means "nothing above the limits".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Where each config group lives, for `dvc exp run -S <file>:<key>=<value>`.
CONFIG_FILES = {"train": "conf/train.yaml", "analyze": "conf/analyze.yaml", "evaluate": "conf/evaluate.yaml",
                "data": "conf/data/default.yaml", "model": "conf/model/default.yaml",
                "compute": "conf/compute/default.yaml", "prepare": "conf/prepare.yaml"}
AUGMENT_SWITCH = {"typos": "typos", "casing": "casing", "punctuation": "punctuation", "word_dropout": "word_dropout"}


@dataclass
class Limits:
    """conf/analyze.yaml's `analyze.improvements`: above these a change is suggested."""
    min_drop_points: float = 2.0               # robustness / challenge accuracy drop, in points
    max_ece: float = 0.05                      # expected calibration error
    max_out_of_scope_confident: float = 0.2    # share of off-topic texts with confidence > 0.5
    min_out_of_scope_rejected: float = 0.8     # share of off-topic texts a threshold should reject
    min_margin_points: float = 1.0             # macro-F1 margin over the best baseline


@dataclass
class Suggestion:
    finding: str          # the number that triggered it
    action: str           # what to do
    switch: str           # the config switch, key=value
    priority: float       # larger first (roughly: accuracy points at stake)
    effect: str = ""      # the expected effect, with the split it was measured on

    @property
    def command(self) -> str:
        key, value = self.switch.split("=", 1)
        group, rest = key.split(".", 1)
        path = CONFIG_FILES.get(group, f"conf/{group}.yaml")
        # data/model/compute groups are files whose keys are not prefixed by the group name
        param = rest if group in ("data", "model", "compute") else key
        return f"dvc exp run -S {path}:{param}={value}"

    def as_dict(self) -> dict:
        return asdict(self) | {"command": self.command}


def suggest(analysis: dict, evaluation: dict, augment: dict, limits: Limits, target_precision: float,
            model_meta: dict) -> list[Suggestion]:
    """`augment` is the train.augment section the model was trained with (saved in classifier.json)."""
    out: list[Suggestion] = []
    for row in analysis["robustness"]["perturbations"]:
        name, drop = row["perturbation"], row["drop_points"]
        if drop < limits.min_drop_points or name not in AUGMENT_SWITCH:
            continue
        if not augment.get(AUGMENT_SWITCH[name], False):
            out.append(Suggestion(
                f"`{name}` perturbation costs {drop:.1f} accuracy points ({row['clean_accuracy']:.4f} → "
                f"{row['accuracy']:.4f}).",
                f"Train on {name}-perturbed copies of the training texts (a fresh draw each epoch).",
                f"train.augment.{AUGMENT_SWITCH[name]}=true", drop,
                f"recovers part of the {drop:.1f}-point drop measured on {analysis['robustness'].get('rows', 'the')} "
                "perturbed test rows; clean validation macro-F1 should stay within noise (compare with "
                "`dvc exp show`)"))
        else:
            rate = float(augment.get("rate", 0.1))
            out.append(Suggestion(
                f"`{name}` still costs {drop:.1f} points with augmentation on.",
                "Augment more: a higher rate perturbs more words per text.",
                f"train.augment.rate={min(0.5, round(rate * 2, 3))}", drop * 0.8,
                f"part of the remaining {drop:.1f}-point drop (measured on perturbed test rows)"))
    conf = analysis["confidence"]
    oos = analysis["out_of_scope"]
    rec = oos["recommended"]
    saved = oos["saved_threshold"]
    temp = conf.get("temperature") or {}
    if conf["ece"] > limits.max_ece and temp and not temp.get("saved") \
            and temp["validation_ece_after"] < temp["validation_ece_before"]:
        # the fix for miscalibration is calibration (not an abstain threshold: that trades coverage)
        out.append(Suggestion(
            f"Expected calibration error is {conf['ece']:.3f} (above {limits.max_ece}): confidences do not match "
            "accuracy.",
            "Fit a temperature on validation and save it with the model (predictions keep their labels; only the "
            "confidences change).", "train.calibrate=true", conf["ece"] * 100,
            f"ECE {temp['validation_ece_before']:.4f} → {temp['validation_ece_after']:.4f} on validation "
            f"(T = {temp['temperature']:.3f}; {temp['test_ece_before']:.4f} → {temp['test_ece_after']:.4f} on test); "
            "accuracy and macro-F1 unchanged"))
    sets = oos["sets"]
    min_coverage = rec.get("min_coverage", 0.0)
    if sets:
        confident = float(np.mean([s["share_confidence_over_0.5"] for s in sets.values()]))
        # only a threshold that keeps at least analyze.out_of_scope.min_coverage of in-scope rows is advice
        if (confident >= limits.max_out_of_scope_confident and not saved and rec["threshold"]
                and rec["coverage"] >= min_coverage):
            rejected = np.mean(list((rec["out_of_scope_rejected"] or {}).values()) or [0.0])
            # train picks the lowest threshold reaching this precision on validation: the same one
            wanted = (target_precision if rec.get("rule", "target_precision") == "target_precision"
                      else np.floor(rec["precision"] * 10000) / 10000)
            out.append(Suggestion(
                f"{confident * 100:.0f}% of off-topic texts get a class with confidence > 0.5.",
                f"Save an abstain threshold with the model ({rec['threshold']:.3f}); prediction answers UNKNOWN "
                "below it.", f"train.abstain.target_precision={wanted:g}", confident * 10,
                f"keeps {rec['coverage'] * 100:.1f}% of in-scope validation rows (at least "
                f"{min_coverage * 100:.0f}% required) at precision {rec['precision']:.4f} (vs "
                f"{rec.get('baseline_precision', float('nan')):.4f} answering all) and rejects {rejected * 100:.0f}% of the off-topic "
                "texts"))
        rejected_at_rec = rec["out_of_scope_rejected"] or {}
        if (not oos["model_has_unknown_class"]
                and (not rejected_at_rec or np.mean(list(rejected_at_rec.values())) < limits.min_out_of_scope_rejected)):
            share = np.mean(list(rejected_at_rec.values())) * 100 if rejected_at_rec else 0.0
            out.append(Suggestion(
                f"At the recommended threshold only {share:.0f}% of off-topic texts are rejected: confidence alone "
                "does not separate them.",
                "Collect real off-topic messages (one per line) and train an `UNKNOWN` class from them.",
                "data.out_of_scope=data/raw/out_of_scope.txt", (1 - share / 100) * 5,
                f"off-topic texts answered UNKNOWN instead of {share:.0f}% rejected now; not measurable on "
                "validation until such texts exist"))
    margin = evaluation.get("margin_over_best_baseline") or {}
    best = evaluation.get("best_baseline")
    if best and "macro_f1" in margin and margin["macro_f1"] < limits.min_margin_points:
        out.append(Suggestion(
            f"The fine-tune's margin over the best baseline (`{best}`) is {margin['macro_f1']:+.2f} macro-F1 points "
            "on the test split.",
            "The test split is too easy to show what fine-tuning adds: score the model on harder, realistic examples "
            "(a challenge CSV with text and label columns); if it adds nothing there either, the cheaper baseline "
            "will do.",
            "analyze.challenge.path=data/challenge/challenge.csv", 1.0,
            f"none on the model itself: a measurement (the best validation macro-F1 was "
            f"{model_meta.get('best_val_macro_f1', float('nan')):.4f})"))
    for s in analysis["slices"]:
        if not s["flagged"]:
            continue
        if "(noise" in s["slice"] or "typo" in s["slice"].lower():
            switch = "train.augment.typos=true"
            action = "This slice is about misspellings: train with typo augmentation."
        else:
            switch = "data.source=<dataset with more examples like this slice>"
            action = "Add training examples like this slice (or oversample it), then re-run prepare."
        if switch.startswith("train.augment.typos") and augment.get("typos"):
            continue
        out.append(Suggestion(f"Slice `{s['slice']}` ({s['rows']} rows) is at {s['accuracy']:.3f}, "
                              f"{s['drop_points']:.1f} points under average.", action, switch, s["drop_points"] / 2,
                              f"at most the {s['drop_points']:.1f}-point gap of this slice (measured on test rows)"))
    challenge = analysis.get("challenge")
    clean = conf["accuracy"]
    if challenge and (clean - challenge["accuracy"]) * 100 >= limits.min_drop_points:
        out.append(Suggestion(
            f"Challenge-set accuracy is {challenge['accuracy']:.4f} vs {clean:.4f} on the test split.",
            "Add examples like the challenge set to the training data (keep the challenge file itself out of it).",
            "data.source=<dataset with challenge-like examples>", (clean - challenge["accuracy"]) * 100,
            f"at most the {(clean - challenge['accuracy']) * 100:.1f}-point gap (measured on the challenge set)"))
    if model_meta.get("stop_reason") == "time_budget":
        out.append(Suggestion("Training stopped at the time budget (compute.max_minutes), not at convergence.",
                              "Give training more time.", "compute.max_minutes=60", 3.0,
                              f"validation macro-F1 was still improving at the budget (best "
                              f"{model_meta.get('best_val_macro_f1', float('nan')):.4f} after "
                              f"{model_meta.get('epochs_run', '?')} epochs)"))
    unique: dict[str, Suggestion] = {}
    for s in sorted(out, key=lambda s: -s.priority):
        unique.setdefault(s.switch, s)
    return list(unique.values())


def markdown(suggestions: list[Suggestion], limits: Limits) -> str:
    lines = ["# Improvements", "",
             "Suggestions derived from [evaluation.md](evaluation.md) and [failure_analysis.md](failure_analysis.md), "
             "most important first. Each names the config switch that implements it; the command tries it as a "
             "DVC experiment (`dvc exp show` compares it with this run). Limits: `analyze.improvements` in "
             "conf/analyze.yaml.", ""]
    if not suggestions:
        lines.append(f"Nothing above the limits (robustness drop ≥ {limits.min_drop_points} points, "
                     f"ECE > {limits.max_ece}, ...): no change is suggested.")
    for i, s in enumerate(suggestions, 1):
        lines += [f"{i}. **{s.finding}** {s.action}", f"   - expected effect: {s.effect or 'not measured'}",
                  f"   - switch: `{s.switch}`", f"   - try: `{s.command}`", ""]
    return "\n".join(lines) + "\n"
