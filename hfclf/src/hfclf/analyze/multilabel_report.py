"""reports/failure_analysis.md and its plots for a multi-label model, from analyze/multilabel.py's
results. The figures keep failure_report.FIGURES' names (dvc.yaml declares them) with multi-label
contents: label decisions instead of top-class confidence, F1 per label instead of accuracy per
slice, micro-F1 under perturbations, and how far off-topic texts are from getting any label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hfclf.analyze import failure_report
from hfclf.analyze.failure_report import FIGURES, _save, _short, _table_slices
from hfclf.infra.render import md_table, pct, pyplot

TABLE_LIMIT = 20   # rows of the per-label tables (flagged labels always shown)


# --------------------------------------------------------------------------- plots

def plot_decisions(probs: np.ndarray, truth: np.ndarray, pred: np.ndarray, path: Path):
    """The probability behind every label decision, right ones and wrong ones (log scale)."""
    return failure_report.plot_right_and_wrong(
        np.asarray(probs, dtype=float).ravel(), (truth == pred).ravel(), ("right decisions", "wrong decisions"),
        "label probability (sigmoid), every label of every test row", "label decisions (log scale)",
        "Probabilities behind right and wrong label decisions", path)


def plot_out_of_scope(test_margins: np.ndarray, oos_margins: dict[str, np.ndarray], path: Path):
    """Each text's highest label probability minus that label's threshold: right of 0 it gets a label."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    every = np.concatenate([np.asarray(test_margins, dtype=float), *map(np.asarray, oos_margins.values())])
    bins = np.linspace(min(-1.0, every.min()), max(1.0, every.max()), 41)
    ax.hist(test_margins, bins=bins, density=True, alpha=0.5, label="test split (in scope)", color="tab:blue")
    for colour, (name, values) in zip(("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:olive"),
                                      oos_margins.items()):
        ax.hist(values, bins=bins, density=True, alpha=0.6, label=f"out of scope: {name}", color=colour)
    ax.axvline(0.0, color="black", linestyle="--", label="threshold: right of it, a label is given")
    ax.set_xlabel("highest label probability minus that label's threshold")
    ax.set_ylabel("density")
    ax.set_title("In-scope vs out-of-scope: how close each text is to getting a label")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_all(result: dict, probs: np.ndarray, truth: np.ndarray, pred: np.ndarray, test_margins: np.ndarray,
             oos_margins: dict[str, np.ndarray], paths: dict[str, Path]) -> dict:
    """Every figure of failure_report.FIGURES, multi-label contents; returns the figures."""
    calib = result["calibration"]
    labels = sorted(result["label_slices"], key=lambda s: (not s["flagged"], s["f1"]))
    return {
        "confidence": plot_decisions(probs, truth, pred, paths["confidence"]),
        "reliability": failure_report.plot_reliability(
            calib["reliability"], calib["ece"], paths["reliability"],
            xlabel="label probability (all label decisions)", ylabel="share where the label is true"),
        "slices": failure_report.plot_slices(labels, result["scores"]["micro_f1"], paths["slices"], metric="f1",
                                             title="F1 by label", overall_name="micro-F1", axis="F1"),
        "robustness": failure_report.plot_robustness(result["robustness"], paths["robustness"], metric="micro_f1",
                                                     axis="test micro-F1"),
        "out_of_scope": plot_out_of_scope(test_margins, oos_margins, paths["out_of_scope"]),
    }


# --------------------------------------------------------------------------- markdown

def _labels(names: list[str], none: str = "(no label)") -> str:
    """A label set for people; `none` for the empty set ("—" where nothing was missed or added)."""
    return ", ".join(names) if names else none


def tuning_gain(tuning: dict | None, average: str = "micro") -> tuple[float, float] | None:
    """(F1 at 0.5, F1 tuned) on validation from classifier.json's `threshold_tuning`, or None."""
    if not tuning:
        return None
    before = tuning.get(f"{average}_f1_at_0.5", tuning.get(f"{average}_f1_default"))
    after = tuning.get(f"{average}_f1_tuned")
    return (float(before), float(after)) if before is not None and after is not None else None


def _summary(result: dict) -> list[str]:
    calib, scores, robust, oos = result["calibration"], result["scores"], result["robustness"], result["out_of_scope"]
    flagged = [s for s in result["label_slices"] if s["flagged"]]
    worst = max(robust["perturbations"], key=lambda r: r["drop_points"], default=None)
    gain = tuning_gain((result["thresholds"] or {}).get("tuning"))
    lines = [f"- **Calibration**: expected calibration error {calib['ece']:.4f} over all {calib['decisions']} label "
             f"decisions; worst-calibrated labels: {', '.join(calib['worst_labels'][:3])}.",
             f"- **Labels**: {len(flagged)} of {len(result['label_slices'])} labels have an F1 more than "
             f"{result['settings']['flag_below'] * 100:.1f} points under the micro-F1 {scores['micro_f1']:.4f}"
             + (f" ({', '.join(s['slice'] for s in flagged[:5])})." if flagged else "."),
             (f"- **Robustness**: worst perturbation `{worst['perturbation']}` costs {worst['drop_points']:.1f} micro-F1 "
              f"points and changes {pct(worst['sets_changed'])} of predicted label sets." if worst
              else "- **Robustness**: not run."),
             _oos_summary(oos)]
    if gain:
        lines.append(f"- **Decision thresholds** (per label, tuned on validation): validation micro-F1 "
                     f"{gain[0]:.4f} at 0.5 → {gain[1]:.4f} tuned.")
    if result.get("challenge"):
        c = result["challenge"]
        lines.append(f"- **Challenge set**: micro-F1 {c['micro_f1']:.4f}, exact sets {c['subset_accuracy']:.4f} "
                     f"on {c['rows']} rows.")
    return lines


def _oos_summary(oos: dict) -> str:
    sets = oos["sets"]
    if not sets:
        return "- **Out of scope**: no out-of-scope files (analyze.out_of_scope.files)."
    share = float(np.mean([s["share_no_label"] for s in sets.values()]))
    return (f"- **Out of scope**: {pct(share)} of off-topic texts get no label (the right answer); in-scope test "
            f"rows get none {pct(oos['test_share_no_label'])} of the time.")


def _thresholds(result: dict) -> list[str]:
    tuning = result["thresholds"].get("tuning") or {}
    gain = tuning_gain(tuning)
    lines = ["## Decision thresholds", ""]
    if not gain:
        return lines + ["The model carries no threshold tuning record: each label is decided at its saved "
                        "threshold (0.5 when none was saved).", ""]
    lines += [f"Each label is predicted when its probability reaches its own threshold, tuned on validation: "
              f"micro-F1 {gain[0]:.4f} at 0.5 → **{gain[1]:.4f}** tuned"
              + (f", macro-F1 {macro[0]:.4f} → {macro[1]:.4f}." if (macro := tuning_gain(tuning, "macro")) else "."), ""]
    rows = [r for r in tuning.get("per_label", []) if "f1_tuned" in r]
    if rows:
        names = {i: name for i, name in enumerate(result["thresholds"]["per_label"])}
        lines += [md_table(["label", "threshold", "validation F1 at 0.5", "validation F1 tuned"],
                           [(names.get(r["label"], r["label"]), r["threshold"], r.get("f1_at_0.5", r.get("f1_default")),
                             r["f1_tuned"])
                            for r in rows[:TABLE_LIMIT]]), ""]
    return lines


def _calibration(result: dict, figures_rel: str) -> list[str]:
    calib = result["calibration"]
    worst = sorted(calib["per_label"], key=lambda r: -r["ece"])[:TABLE_LIMIT]
    return ["## Calibration", "",
            "Each label's probability read as a forecast of whether the label is true. Expected calibration error "
            f"over all label decisions: **{calib['ece']:.4f}** (mean probability {calib['mean_probability']:.4f}, "
            f"share of decisions whose label is true {calib['positive_rate']:.4f}).", "",
            f"![label decisions]({figures_rel}/{FIGURES['confidence']}) "
            f"![reliability diagram]({figures_rel}/{FIGURES['reliability']})", "",
            md_table(["label", "test rows with it", "ECE", "mean probability", "share true"],
                     [(r["label"], r["support"], r["ece"], r["mean_probability"], r["positive_rate"]) for r in worst]),
            ""]


def _hard_examples(result: dict) -> list[str]:
    hard = result["hard_examples"]
    lines = ["## Hard examples", "", "### Rows with the most wrong label decisions", ""]
    lines.append(md_table(["text", "actual", "predicted", "missed", "wrongly added", "wrong decisions", "row F1"],
                          [(_short(r["text"]), _labels(r["actual"]), _labels(r["predicted"]), _labels(r["missed"], "—"),
                            _labels(r["added"], "—"), r["wrong_decisions"], r["f1"]) for r in hard["most_wrong"]])
                 if hard["most_wrong"] else "Every test row got exactly its label set.")
    lines += ["", "### Exactly right, but closest to a threshold", ""]
    lines.append(md_table(["text", "labels", "closest label", "distance to its threshold"],
                          [(_short(r["text"]), _labels(r["labels"]), r["closest_label"], r["margin"])
                           for r in hard["unsure_correct"]]) if hard["unsure_correct"]
                 else "No test row got exactly its label set.")
    return lines + [""]


def _label_slices(result: dict, figures_rel: str) -> list[str]:
    slices = sorted(result["label_slices"], key=lambda s: (not s["flagged"], s["f1"]))
    shown = [s for s in slices if s["flagged"]]
    shown += [s for s in slices if not s["flagged"]][: max(0, TABLE_LIMIT - len(shown))]
    micro = result["scores"]["micro_f1"]
    return ["## Labels", "",
            f"F1 of each label on the test split. A label is **flagged** when its F1 is more than "
            f"{result['settings']['flag_below'] * 100:.1f} points under the micro-F1 {micro:.4f}; the interval reads "
            f"F1 as a proportion (95% Wilson). Labels with fewer than {result['settings']['min_rows']} test rows are "
            "marked *few rows*: their F1 is noise.", "",
            md_table(["label", "test rows", "precision", "recall", "F1", "95% CI", "vs micro-F1 (points)", "flag"],
                     [(s["slice"], s["rows"], s["precision"], s["recall"], s["f1"],
                       f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]", f"{-s['drop_points']:+.1f}",
                       " ".join(x for x, on in (("⚠️ below", s["flagged"]), ("few rows", s["low_support"])) if on))
                      for s in shown]),
            "", f"![F1 by label]({figures_rel}/{FIGURES['slices']})", ""]


def _row_slices(result: dict) -> list[str]:
    slices = result["slices"]
    if not slices:
        return []
    exact = result["scores"]["subset_accuracy"]
    return ["### Rows with exactly the right set, by slice", "",
            f"Exact-set accuracy by text length and by the extra columns of the data (overall {exact:.4f}); "
            f"flagged more than {result['settings']['flag_below'] * 100:.1f} points under it.", "",
            md_table(["slice", "rows", "exact-set accuracy", "95% CI", "vs overall (points)", "flag"],
                     [(s["slice"], s["rows"], s["accuracy"], f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]",
                       f"{-s['drop_points']:+.1f}", "⚠️ below" if s["flagged"] else "") for s in _table_slices(slices)]),
            ""]


def _robustness(result: dict, figures_rel: str) -> list[str]:
    robust = result["robustness"]
    lines = ["## Robustness", "",
             f"The test texts ({robust['rows']} rows) perturbed, seeded; micro-F1 under each, the drop from clean "
             f"({robust['clean_micro_f1']:.4f}) and the share of rows whose predicted label set changed.", "",
             md_table(["perturbation", "micro-F1", "drop (points)", "sets changed", "texts changed", "tokens changed",
                       "newly wrong sets", "newly right sets"],
                      [(r["perturbation"], r["micro_f1"], f"{r['drop_points']:.1f}", pct(r["sets_changed"]),
                        pct(r["texts_changed"]), pct(r["inputs_changed"]), r["broken"], r["fixed"])
                       for r in robust["perturbations"]]), "",
             f"![robustness]({figures_rel}/{FIGURES['robustness']})", ""]
    for name, examples in robust["examples"].items():
        if examples:
            lines.append(f"- `{name}` broke: " + " · ".join(
                f"“{_short(e['perturbed'], 60)}” → {_labels(e['predicted'])} (is {_labels(e['actual'])})"
                for e in examples[:2]))
    return lines + [""]


def _out_of_scope(result: dict, figures_rel: str) -> list[str]:
    oos = result["out_of_scope"]
    lines = ["## Out of scope", "",
             "Texts that belong to no label: the right answer is the empty label set. In-scope test rows for contrast: "
             f"{pct(oos['test_share_no_label'])} get no label (truly without a label: "
             f"{pct(oos['test_share_truly_no_label'])}).", ""]
    if not oos["sets"]:
        return lines + ["No out-of-scope files (analyze.out_of_scope.files).", ""]
    lines += [md_table(["set", "texts", "given no label", "mean labels given", "labels given most"],
                       [(name, s["texts"], pct(s["share_no_label"]), s["mean_labels"],
                         ", ".join(f"{k} ({v})" for k, v in list(s["top_labels"].items())[:3]) or "—")
                        for name, s in oos["sets"].items()]), "",
              f"![out of scope]({figures_rel}/{FIGURES['out_of_scope']})", ""]
    for name, s in oos["sets"].items():
        if s["most_labelled"]:
            lines += [f"Off-topic texts in `{name}` given the most labels: " + " · ".join(
                f"“{_short(e['text'], 60)}” → {_labels(e['labels'])}" for e in s["most_labelled"]), ""]
    return lines


def _challenge(result: dict) -> list[str]:
    c = result.get("challenge")
    if not c:
        return []
    return ["## Challenge set", "",
            f"`{result['settings']['challenge']}`: {c['rows']} rows, micro-F1 **{c['micro_f1']:.4f}**, macro-F1 "
            f"{c['macro_f1']:.4f}, exact sets {c['subset_accuracy']:.4f}.", "",
            md_table(["text", "actual", "predicted", "missed", "wrongly added"],
                     [(_short(r["text"]), _labels(r["actual"]), _labels(r["predicted"]), _labels(r["missed"], "—"),
                       _labels(r["added"], "—")) for r in c["errors"]]) if c["errors"]
            else "Every challenge row got exactly its label set.", ""]


def markdown(result: dict, figures_rel: str = "figures") -> str:
    scores = result["scores"]
    lines = ["# Failure analysis", "",
             f"Multi-label model `{result['model']}` on the test split ({scores['rows']} rows): micro-F1 "
             f"{scores['micro_f1']:.4f}, macro-F1 {scores['macro_f1']:.4f}, exact label sets "
             f"{scores['subset_accuracy']:.4f}. Suggestions derived from these numbers: "
             "[improvements.md](improvements.md).", "", "## Summary", "", *_summary(result), ""]
    lines += _thresholds(result) + _calibration(result, figures_rel) + _hard_examples(result)
    lines += _label_slices(result, figures_rel) + _row_slices(result) + _robustness(result, figures_rel)
    lines += _out_of_scope(result, figures_rel) + _challenge(result)
    return "\n".join(lines) + "\n"
