"""reports/improvements.md: concrete suggestions derived from the evaluation and failure-analysis
numbers, each naming the config switch that implements it and the command that tries it.

Rules compare numbers with the limits in conf/analyze.yaml (`analyze.improvements`); a rule that
does not fire says nothing, so an empty list means "nothing above the limits".
A multi-label model has its own rules (`suggest_multi_label`): weak labels, micro-F1 under
perturbations, off-topic texts given labels; findings with no switch (what the per-label thresholds
already gained) are `multi_label_notes`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

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
    also: tuple[str, ...] = ()   # further key=value switches the change needs (set together with `switch`)

    @property
    def command(self) -> str:
        return "dvc exp run " + " ".join(_set_param(switch) for switch in (self.switch, *self.also))

    def as_dict(self) -> dict:
        out = asdict(self) | {"command": self.command}
        if not self.also:
            out.pop("also")
        return out


def _set_param(switch: str) -> str:
    key, value = switch.split("=", 1)
    group, rest = key.split(".", 1)
    path = CONFIG_FILES.get(group, f"conf/{group}.yaml")
    # data/model/compute groups are files whose keys are not prefixed by the group name
    param = rest if group in ("data", "model", "compute") else key
    return f"-S {path}:{param}={value}"


def _robustness(robust: dict, augment: dict, limits: Limits, score: str = "accuracy", named: str = "accuracy",
                validation: str = "macro-F1") -> list[Suggestion]:
    """Augmentation for each perturbation that costs `score` points (`named` in the text) over the limit."""
    out = []
    for row in robust["perturbations"]:
        name, drop = row["perturbation"], row["drop_points"]
        if drop < limits.min_drop_points or name not in AUGMENT_SWITCH:
            continue
        if not augment.get(AUGMENT_SWITCH[name], False):
            out.append(Suggestion(
                f"`{name}` perturbation costs {drop:.1f} {named} points ({row[f'clean_{score}']:.4f} → "
                f"{row[score]:.4f}).",
                f"Train on {name}-perturbed copies of the training texts (a fresh draw each epoch).",
                f"train.augment.{AUGMENT_SWITCH[name]}=true", drop,
                f"recovers part of the {drop:.1f}-point drop measured on {robust.get('rows', 'the')} "
                f"perturbed test rows; clean validation {validation} should stay within noise (compare with "
                "`dvc exp show`)"))
        else:
            rate = float(augment.get("rate", 0.1))
            out.append(Suggestion(
                f"`{name}` still costs {drop:.1f} points with augmentation on.",
                "Augment more: a higher rate perturbs more words per text.",
                f"train.augment.rate={min(0.5, round(rate * 2, 3))}", drop * 0.8,
                f"part of the remaining {drop:.1f}-point drop (measured on perturbed test rows)"))
    return out


def _slices(slices: list[dict], augment: dict, named: str = "") -> list[Suggestion]:
    """A flagged slice: typo augmentation when it is about misspellings, else more examples like it."""
    out = []
    for s in slices:
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
        out.append(Suggestion(f"Slice `{s['slice']}` ({s['rows']} rows) is at {named}{s['accuracy']:.3f}, "
                              f"{s['drop_points']:.1f} points under average.", action, switch, s["drop_points"] / 2,
                              f"at most the {s['drop_points']:.1f}-point gap of this slice (measured on test rows)"))
    return out


def _unique(suggestions: list[Suggestion]) -> list[Suggestion]:
    """Most important first; one suggestion per switch."""
    unique: dict[str, Suggestion] = {}
    for s in sorted(suggestions, key=lambda s: -s.priority):
        unique.setdefault(s.switch, s)
    return list(unique.values())


def suggest(analysis: dict, evaluation: dict, augment: dict, limits: Limits, target_precision: float,
            model_meta: dict) -> list[Suggestion]:
    """`augment` is the train.augment section the model was trained with (saved in classifier.json)."""
    out: list[Suggestion] = _robustness(analysis["robustness"], augment, limits)
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
        out.append(_baseline_margin(best, margin["macro_f1"], "macro-F1", model_meta,
                                    model_meta.get("best_val_macro_f1", float("nan")), "label"))
    out += _slices(analysis["slices"], augment)
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
    out += _unconverged(model_meta, "macro-F1")
    return _unique(out)


def _unconverged(model_meta: dict, metric: str) -> list[Suggestion]:
    """A run that ran out of epochs (stop_reason `completed`, not patience) with its best pass in its last
    epoch, still rising, had not converged: a longer epoch bound (Debian sections, 2,504 rows: 2 of 3
    seeds ran to the bound of 10 with their best pass at 9.25-9.5 epochs; a bound of 13 scored +2.8
    points on the median). Nothing for a model saved without these figures."""
    bound, best, rise = model_meta.get("max_epochs"), model_meta.get("best_epoch"), model_meta.get("rise_into_best")
    if model_meta.get("stop_reason") != "completed" or not isinstance(bound, int) or best is None \
            or rise is None or rise <= 0 or best <= bound - 1:
        return []
    return [Suggestion(
        f"Training ran to its epoch bound ({bound} epochs) without converging: its best validation {metric} pass "
        f"came in the last epoch (at {best:g} epochs), {100 * rise:.2f} points above every pass an epoch earlier.",
        "Raise the epoch bound: the learning rate decays linearly to 0 at the bound, so a longer one also keeps it "
        "higher for longer, and early stopping still ends the run once validation stops improving.",
        f"train.max_epochs={2 * bound}", max(100 * rise, 0.5),
        f"not known until tried: validation {metric} rose {100 * rise:.2f} points over the last epoch (measured on "
        "validation)")]


def _baseline_margin(best: str, margin: float, metric: str, model_meta: dict, val_best: float,
                     label_column: str) -> Suggestion:
    """The suggestion for a fine-tune that does not beat its best baseline by the limit (`margin`: test
    points, fine-tune minus baseline). Ahead by less: the test split may be too easy to show what
    fine-tuning adds, so measure on harder examples. Behind: not an easy split but a fine-tune that
    lost (few rows per class, where a classifier on frozen embeddings generalises better); when it ran
    to its epoch bound, more epochs come first, else the baseline or more data."""
    if margin >= 0:
        return Suggestion(
            f"The fine-tune's margin over the best baseline (`{best}`) is {margin:+.2f} {metric} points on the test "
            "split.",
            "The test split is too easy to show what fine-tuning adds: score the model on harder, realistic examples "
            f"(a challenge CSV with text and {label_column} columns); if it adds nothing there either, the cheaper "
            "baseline will do.",
            "analyze.challenge.path=data/challenge/challenge.csv", 1.0,
            f"none on the model itself: a measurement (the best validation {metric} was {val_best:.4f})")
    finding = f"The best baseline (`{best}`) scores {-margin:.2f} {metric} points above the fine-tune on the test split."
    bound, ran = model_meta.get("max_epochs"), model_meta.get("epochs_run")
    known = isinstance(bound, int) and isinstance(ran, (int, float))   # a model saved without them: no claim
    if known and ran >= bound - 1e-6:
        return Suggestion(
            finding,
            f"Training ran to its epoch bound ({bound} epochs), where the learning rate reaches 0: give it more "
            "epochs and compare again; if the baseline stays ahead, it is the better model for this data (or "
            "collect more labelled rows per class).",
            f"train.max_epochs={2 * bound}", -margin,
            f"at most the {-margin:.1f}-point gap to the baseline (measured on test; the best validation {metric} "
            f"was {val_best:.4f})")
    ended = (f"ended before its epoch bound ({ran:g} of at most {bound} epochs: "
             f"{model_meta.get('stop_reason', 'stopped')})" if known else "ended")
    return Suggestion(
        finding,
        f"Training {ended} and still lost: with this few rows per class the cheaper "
        "baseline generalises better. Ship the baseline, or collect more labelled rows per class and train again.",
        "data.source=<more labelled rows per class>", -margin,
        f"the {-margin:.1f}-point gap to the baseline (measured on test; the best validation {metric} was "
        f"{val_best:.4f})")


def markdown(suggestions: list[Suggestion], limits: Limits, notes: Sequence[str] = ()) -> str:
    """improvements.md; `notes`: findings that need no switch (multi-label: what the thresholds already gained)."""
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
                  f"   - switch: `{s.switch}`" + "".join(f" with `{also}`" for also in s.also),
                  f"   - try: `{s.command}`", ""]
    if notes:
        lines += ["", "## Already in place, or nothing to switch", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- multi-label

def suggest_multi_label(analysis: dict, evaluation: dict, augment: dict, limits: Limits,
                        model_meta: dict) -> list[Suggestion]:
    """Suggestions for a multi-label model (analyze/multilabel.py's results), each with its effect as
    measured: on validation where the number exists there (`analysis["validation"]`), else on test."""
    out = _robustness(analysis["robustness"], augment, limits, "micro_f1", "micro-F1", "micro-F1")
    out += _weak_labels(analysis)
    out += _slices(analysis["slices"], augment, "exact-set accuracy ")
    out += _multi_label_out_of_scope(analysis["out_of_scope"], analysis["validation"], limits)
    micro, val_best = analysis["scores"]["micro_f1"], model_meta.get("best_val_micro_f1", float("nan"))
    margin = (evaluation.get("margin_over_best_baseline") or {}).get("micro_f1")
    best = evaluation.get("best_baseline")
    if best and margin is not None and margin < limits.min_margin_points:
        out.append(_baseline_margin(best, margin, "micro-F1", model_meta, val_best, "label-set"))
    challenge = analysis.get("challenge")
    if challenge and (micro - challenge["micro_f1"]) * 100 >= limits.min_drop_points:
        gap = (micro - challenge["micro_f1"]) * 100
        out.append(Suggestion(
            f"Challenge-set micro-F1 is {challenge['micro_f1']:.4f} vs {micro:.4f} on the test split.",
            "Add examples like the challenge set to the training data (keep the challenge file itself out of it).",
            "data.source=<dataset with challenge-like examples>", gap,
            f"at most the {gap:.1f}-point gap (measured on the challenge set)"))
    if model_meta.get("stop_reason") == "time_budget":
        out.append(Suggestion("Training stopped at the time budget (compute.max_minutes), not at convergence.",
                              "Give training more time.", "compute.max_minutes=60", 3.0,
                              f"validation micro-F1 was still improving at the budget (best {val_best:.4f} after "
                              f"{model_meta.get('epochs_run', '?')} epochs)"))
    out += _unconverged(model_meta, "micro-F1")
    return _unique(out)


def _weak_labels(analysis: dict) -> list[Suggestion]:
    """A flagged label: with few rows, drop it (prepare.rare_labels=drop) or add examples; else add examples."""
    validation, support = analysis["validation"], analysis.get("label_rows", {})
    out = []
    for s in analysis["label_slices"]:
        if not s["flagged"]:
            continue
        label, gap = s["slice"], s["drop_points"]
        val = validation["per_label"].get(label, {"f1": float("nan"), "support": 0})
        finding = (f"Label `{label}` has F1 {s['f1']:.3f} on {s['rows']} test rows, {gap:.1f} points under the "
                   f"micro-F1 (validation: F1 {val['f1']:.3f} on {val['support']} rows).")
        if s["low_support"] and label in support:
            without = validation["micro_f1_without"][label]
            out.append(Suggestion(
                finding, f"Too few examples to learn it ({support[label]} rows in all splits): add examples, or "
                "leave the label out of every set (labels with fewer rows than the minimum go with it).",
                "prepare.rare_labels=drop", gap / 2,
                f"validation micro-F1 {validation['micro_f1']:.4f} → {without:.4f} over the other labels; the model "
                f"no longer predicts `{label}`", also=(f"prepare.min_examples_per_class={support[label] + 1}",)))
        else:
            out.append(Suggestion(
                finding, f"Add training examples carrying `{label}` (or oversample them), then re-run prepare.",
                f"data.source=<dataset with more examples of {label}>", gap / 2,
                f"at most the {gap:.1f}-point gap of this label (its validation F1 {val['f1']:.3f} vs micro-F1 "
                f"{validation['micro_f1']:.4f})"))
    return out


def _multi_label_out_of_scope(oos: dict, validation: dict, limits: Limits) -> list[Suggestion]:
    """Off-topic texts given labels: train on off-topic texts as no-label rows (data.out_of_scope)."""
    if not oos["sets"]:
        return []
    share = float(np.mean([s["share_no_label"] for s in oos["sets"].values()]))
    if share >= limits.min_out_of_scope_rejected:
        return []
    finding = f"Only {share * 100:.0f}% of off-topic texts get no label; the others get a label they do not carry."
    trained = validation.get("no_label_rows", 0)
    if not trained:
        return [Suggestion(finding, "Collect real off-topic messages (one per line): prepare adds them to every split "
                                    "as rows with no label, so the model learns to predict none for them.",
                           "data.out_of_scope=data/raw/out_of_scope.txt", (1 - share) * 5,
                           f"more off-topic texts answered with no label than the {share * 100:.0f}% now; not "
                           "measurable on validation until such texts exist")]
    right = validation["no_label_right"]
    return [Suggestion(finding, "The model already trains on no-label rows: add more, and more varied, off-topic "
                                "texts to the file (ones like those given labels here).",
                       "data.out_of_scope=data/raw/out_of_scope.txt", (1 - share) * 5,
                       f"validation gives {right * 100:.0f}% of its {trained} no-label rows no label; more varied "
                       "examples should carry that over to these files")]


def multi_label_notes(analysis: dict, limits: Limits) -> list[str]:
    """Findings with no switch: what the per-label thresholds gained, calibration without a remedy."""
    from hfclf.analyze.multilabel_report import tuning_gain

    notes = []
    thresholds = analysis["thresholds"]
    gain = tuning_gain(thresholds.get("tuning"))
    if gain:
        notes.append(f"Per-label decision thresholds, tuned on validation, are saved with the model: validation "
                     f"micro-F1 {gain[0]:.4f} at 0.5 → {gain[1]:.4f} tuned; on test {thresholds['test_micro_f1_at_0.5']:.4f}"
                     f" at 0.5 → {analysis['scores']['micro_f1']:.4f} with them.")
    else:
        notes.append("The model carries no threshold tuning record (classifier.json `threshold_tuning`): re-run "
                     "`make train` so each label gets a threshold tuned on validation.")
    ece = analysis["calibration"]["ece"]
    if ece > limits.max_ece:
        notes.append(f"Label probabilities are miscalibrated (ECE {ece:.3f} over all label decisions, above "
                     f"{limits.max_ece}); the per-label thresholds decide the labels, so F1 is unaffected, but the "
                     "probabilities shown are not frequencies. train.calibrate does not apply to multi-label models.")
    return notes
