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
                f"train.augment.{AUGMENT_SWITCH[name]}=true", drop))
        else:
            rate = float(augment.get("rate", 0.1))
            out.append(Suggestion(
                f"`{name}` still costs {drop:.1f} points with augmentation on.",
                "Augment more: a higher rate perturbs more words per text.",
                f"train.augment.rate={min(0.5, round(rate * 2, 3))}", drop * 0.8))
    conf = analysis["confidence"]
    oos = analysis["out_of_scope"]
    rec = oos["recommended"]
    saved = oos["saved_threshold"]
    if conf["ece"] > limits.max_ece and not saved:
        out.append(Suggestion(
            f"Expected calibration error is {conf['ece']:.3f} (above {limits.max_ece}): raw confidences are not "
            "probabilities.",
            "Do not use raw confidences as a decision rule; save an abstain threshold chosen on validation with "
            "the model.", f"train.abstain.target_precision={target_precision}", conf["ece"] * 100))
    sets = oos["sets"]
    if sets:
        confident = float(np.mean([s["share_confidence_over_0.5"] for s in sets.values()]))
        if confident >= limits.max_out_of_scope_confident and not saved and rec["threshold"]:
            rejected = np.mean(list((rec["out_of_scope_rejected"] or {}).values()) or [0.0])
            out.append(Suggestion(
                f"{confident * 100:.0f}% of off-topic texts get a class with confidence > 0.5.",
                f"Save an abstain threshold with the model: {rec['threshold']:.3f} keeps {rec['coverage'] * 100:.1f}% "
                f"of validation rows at precision {rec['precision']:.4f} and rejects {rejected * 100:.0f}% of the "
                "off-topic texts; prediction answers UNKNOWN below it.",
                f"train.abstain.target_precision={target_precision}", confident * 10))
        rejected_at_rec = rec["out_of_scope_rejected"] or {}
        if (not oos["model_has_unknown_class"]
                and (not rejected_at_rec or np.mean(list(rejected_at_rec.values())) < limits.min_out_of_scope_rejected)):
            share = np.mean(list(rejected_at_rec.values())) * 100 if rejected_at_rec else 0.0
            out.append(Suggestion(
                f"At the recommended threshold only {share:.0f}% of off-topic texts are rejected: confidence alone "
                "does not separate them.",
                "Collect real off-topic messages (one per line) and train an `UNKNOWN` class from them.",
                "data.out_of_scope=data/raw/out_of_scope.txt", (1 - share / 100) * 5))
    margin = evaluation.get("margin_over_best_baseline") or {}
    best = evaluation.get("best_baseline")
    if best and "macro_f1" in margin and margin["macro_f1"] < limits.min_margin_points:
        out.append(Suggestion(
            f"The fine-tune's margin over the best baseline (`{best}`) is {margin['macro_f1']:+.2f} macro-F1 points "
            "on the test split.",
            "The test split is too easy to show what fine-tuning adds: score the model on harder, realistic examples "
            "(a challenge CSV with text and label columns); if it adds nothing there either, the cheaper baseline "
            "will do.",
            "analyze.challenge.path=data/challenge/challenge.csv", 1.0))
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
                              f"{s['drop_points']:.1f} points under average.", action, switch, s["drop_points"] / 2))
    challenge = analysis.get("challenge")
    clean = conf["accuracy"]
    if challenge and (clean - challenge["accuracy"]) * 100 >= limits.min_drop_points:
        out.append(Suggestion(
            f"Challenge-set accuracy is {challenge['accuracy']:.4f} vs {clean:.4f} on the test split.",
            "Add examples like the challenge set to the training data (keep the challenge file itself out of it).",
            "data.source=<dataset with challenge-like examples>", (clean - challenge["accuracy"]) * 100))
    if model_meta.get("stop_reason") == "time_budget":
        out.append(Suggestion("Training stopped at the time budget (compute.max_minutes), not at convergence.",
                              "Give training more time.", "compute.max_minutes=60", 3.0))
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
        lines += [f"{i}. **{s.finding}** {s.action}", f"   - switch: `{s.switch}`", f"   - try: `{s.command}`", ""]
    return "\n".join(lines) + "\n"
