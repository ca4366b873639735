"""reports/failure_analysis.md and its plots, from the results of failures.py.

The report's own text and plots live here, next to the analysis they describe; the shared
helpers they build on (md_table, pct, pyplot, save_figure) are infra/render.py's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hfclf.infra.render import md_table, pct as _pct, pyplot, save_figure

FIGURES = {
    "confidence": "confidence_histogram.png",
    "reliability": "reliability_diagram.png",
    "slices": "slices.png",
    "robustness": "robustness.png",
    "out_of_scope": "out_of_scope.png",
}


def _save(fig, path: Path):
    return save_figure(fig, path, bbox_inches="tight")   # long slice labels stay inside the image


def plot_confidence(conf: np.ndarray, correct: np.ndarray, path: Path):
    return plot_right_and_wrong(conf, correct, ("correct", "wrong"), "confidence (top-class probability)",
                                "test rows (log scale)", "Confidence of correct and wrong predictions", path)


def plot_right_and_wrong(values: np.ndarray, right: np.ndarray, names: tuple[str, str], xlabel: str, ylabel: str,
                         title: str, path: Path):
    """Two histograms on [0, 1] (log counts): the `values` of right decisions and of wrong ones."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(0, 1, 26)
    ax.hist(values[right], bins=bins, alpha=0.7, label=f"{names[0]} ({int(right.sum())})", color="tab:blue")
    ax.hist(values[~right], bins=bins, alpha=0.8, label=f"{names[1]} ({int((~right).sum())})", color="tab:red")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def _temperature_line(conf: dict) -> str:
    t = conf.get("temperature")
    if not t:
        return ""
    if t["saved"]:
        return (f" Temperature scaling (T = {t['temperature']:.3f}, fitted on validation, saved with the model): "
                f"ECE {t['test_ece_before']:.4f} → {t['test_ece_after']:.4f} on test, "
                f"{t['validation_ece_before']:.4f} → {t['validation_ece_after']:.4f} on validation.")
    return (f" Not calibrated (`train.calibrate: false`); a temperature fitted on validation (T = "
            f"{t['temperature']:.3f}) would take ECE {t['validation_ece_before']:.4f} → "
            f"{t['validation_ece_after']:.4f} on validation, {t['test_ece_before']:.4f} → {t['test_ece_after']:.4f} on test.")


def plot_reliability(bins: list[dict], ece: float, path: Path, xlabel: str = "confidence",
                     ylabel: str = "accuracy"):
    """Reliability bars; multi-label passes a label's probability (x) and how often the label is true (y)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    widths = [b["high"] - b["low"] for b in bins]
    ax.bar(centres, [b["accuracy"] for b in bins], width=widths, edgecolor="black", alpha=0.7, label=ylabel)
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="tab:red",
            label="mean confidence")
    for centre, b in zip(centres, bins):
        ax.annotate(str(b["n"]), (centre, min(b["accuracy"] + 0.02, 1.0)), ha="center", fontsize=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Reliability (ECE {ece:.4f})")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_slices(slices: list[dict], overall: float, path: Path, metric: str = "accuracy",
                title: str = "Accuracy by slice", overall_name: str = "overall", axis: str = "accuracy"):
    """One bar per slice (its `metric`, with its interval), flagged ones red, the overall value dashed."""
    plt = pyplot()
    shown = slices[:60]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(shown) + 1)))
    y = np.arange(len(shown))
    colours = ["tab:red" if s["flagged"] else "tab:blue" for s in shown]
    ax.barh(y, [s[metric] for s in shown], color=colours, alpha=0.8,
            xerr=[[max(0.0, s[metric] - s["ci_low"]) for s in shown],
                  [max(0.0, s["ci_high"] - s[metric]) for s in shown]],
            error_kw={"elinewidth": 0.6, "ecolor": "grey"})
    ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"{overall_name} {overall:.3f}")
    ax.set_yticks(y, [f"{s['slice']} (n={s['rows']})" for s in shown], fontsize=6)
    ax.invert_yaxis()
    low = min([s["ci_low"] for s in shown] + [overall]) if shown else 0
    ax.set_xlim(max(0.0, low - 0.05), 1.0)
    ax.set_xlabel(f"{axis} (bars: 95% Wilson interval; red: flagged)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_robustness(robust: dict, path: Path, metric: str = "accuracy", axis: str = "test accuracy"):
    """The clean `metric` and its value under each perturbation (rows keyed `metric`, `clean_<metric>`)."""
    plt = pyplot()
    rows = robust["perturbations"]
    names = ["clean"] + [r["perturbation"] for r in rows]
    values = [robust[f"clean_{metric}"]] + [r[metric] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    ax.barh(names, values, color=["tab:green"] + ["tab:orange"] * len(rows))
    for i, v in enumerate(values):
        ax.text(min(v, 0.98), i, f" {v:.3f}", va="center", ha="right", fontsize=8, color="white")
    ax.invert_yaxis()
    ax.set_xlim(max(0.0, min(values) - 0.1), 1.0)
    ax.set_xlabel(axis)
    ax.set_title(f"Robustness: {axis.removeprefix('test ')} on perturbed test texts")
    return _save(fig, path)


def plot_out_of_scope(test_conf: np.ndarray, oos: dict[str, np.ndarray], threshold: float | None, path: Path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(0, 1, 26)
    ax.hist(test_conf, bins=bins, density=True, alpha=0.5, label="test split (in scope)", color="tab:blue")
    for colour, (name, conf) in zip(("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:olive"), oos.items()):
        ax.hist(conf, bins=bins, density=True, alpha=0.6, label=f"out of scope: {name}", color=colour)
    if threshold:
        ax.axvline(threshold, color="black", linestyle="--", label=f"recommended threshold {threshold:.3f}")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("density")
    ax.set_title("In-scope vs out-of-scope confidence")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_all(result: dict, conf: np.ndarray, correct: np.ndarray, oos_conf: dict[str, np.ndarray],
             paths: dict[str, Path]) -> dict:
    """Every figure of failure_analysis.md, to `paths` (FIGURES key -> file); returns the figures."""
    slices = sorted(result["slices"], key=lambda s: (not s["flagged"], s["accuracy"]))
    return {
        "confidence": plot_confidence(conf, correct, paths["confidence"]),
        "reliability": plot_reliability(result["confidence"]["reliability"], result["confidence"]["ece"],
                                        paths["reliability"]),
        "slices": plot_slices(slices, result["confidence"]["accuracy"], paths["slices"]),
        "robustness": plot_robustness(result["robustness"], paths["robustness"]),
        "out_of_scope": plot_out_of_scope(conf, oos_conf, result["out_of_scope"]["recommended"]["threshold"],
                                          paths["out_of_scope"]),
    }


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def markdown(result: dict, figures_rel: str = "figures") -> str:
    conf, robust, oos = result["confidence"], result["robustness"], result["out_of_scope"]
    slices = result["slices"]
    flagged = [s for s in slices if s["flagged"]]
    worst = max(robust["perturbations"], key=lambda r: r["drop_points"], default=None)
    lines = ["# Failure analysis", "",
             f"Model `{result['model']}` on the test split ({conf['rows']} rows, accuracy "
             f"{conf['accuracy']:.4f}). Suggestions derived from these numbers: [improvements.md](improvements.md).", "",
             "## Summary", "",
             f"- **Calibration**: expected calibration error {conf['ece']:.4f}; the model is "
             f"{'under' if conf['mean_confidence'] < conf['accuracy'] else 'over'}confident (mean confidence "
             f"{conf['mean_confidence']:.4f} vs accuracy {conf['accuracy']:.4f})." + _temperature_line(conf),
             f"- **Slices**: {len(flagged)} of {len(slices)} slices flagged (accuracy more than "
             f"{result['settings']['flag_below'] * 100:.1f} points under average).",
             (f"- **Robustness**: worst perturbation `{worst['perturbation']}` costs "
              f"{worst['drop_points']:.1f} accuracy points." if worst else "- **Robustness**: not run."),
             _oos_summary(oos)]
    if result.get("challenge"):
        c = result["challenge"]
        lines.append(f"- **Challenge set**: accuracy {c['accuracy']:.4f}, macro-F1 {c['macro_f1']:.4f} on {c['rows']} rows.")
    lines += ["", "## Confidence and calibration", "",
              f"Expected calibration error (ECE, {len(conf['reliability'])} non-empty bins): **{conf['ece']:.4f}**. "
              "Mean confidence of correct predictions: "
              f"{conf['mean_confidence_correct'] or 0:.4f}; of wrong ones: "
              + (f"{conf['mean_confidence_wrong']:.4f}." if conf["mean_confidence_wrong"] is not None else "— (no errors)."),
              "", f"![confidence histogram]({figures_rel}/{FIGURES['confidence']}) "
              f"![reliability diagram]({figures_rel}/{FIGURES['reliability']})", "",
              "### Most confident errors", ""]
    hard = result["hard_examples"]
    lines += [_examples(hard["confident_errors"]) if hard["confident_errors"] else "No errors on the test split.", "",
              "### Least confident correct predictions", "", _examples(hard["unsure_correct"]), "",
              "## Slices", "",
              "Accuracy by text length (word-count quantiles) and by the extra columns of the data. A slice is "
              f"**flagged** when its accuracy is more than {result['settings']['flag_below'] * 100:.1f} points under "
              f"the overall {conf['accuracy']:.4f}; the interval is a 95% Wilson interval (small slices are noisy). "
              f"Slices under {result['settings']['min_rows']} rows are not shown.", "",
              md_table(["slice", "rows", "accuracy", "95% CI", "vs overall (points)", "flag"],
                       [(s["slice"], s["rows"], s["accuracy"], f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]",
                         f"{-s['drop_points']:+.1f}", "⚠️ below" if s["flagged"] else "")
                        for s in _table_slices(slices)]), "",
              (f"{len(slices) - len(_table_slices(slices))} more slices, all at or above "
               f"{_table_slices(slices)[-1]['accuracy']:.3f}: reports/failure_analysis.json."
               if len(_table_slices(slices)) < len(slices) else ""), "",
              f"![slices]({figures_rel}/{FIGURES['slices']})", "",
              "## Robustness", "",
              f"The test texts ({robust['rows']} rows) perturbed, seeded; accuracy under each and the drop from clean.", "",
              md_table(["perturbation", "accuracy", "drop (points)", "texts changed", "tokens changed", "newly wrong",
                        "newly right"],
                       [(r["perturbation"], r["accuracy"], f"{r['drop_points']:.1f}", _pct(r["texts_changed"]),
                         _pct(r["inputs_changed"]), r["broken"], r["fixed"]) for r in robust["perturbations"]]), "",
              "*Tokens changed*: texts whose token ids differ from the clean ones (an uncased tokenizer ignores "
              "casing); only those are predicted again.", "",
              f"![robustness]({figures_rel}/{FIGURES['robustness']})", ""]
    for name, examples in robust["examples"].items():
        if examples:
            lines.append(f"- `{name}` broke: " + " · ".join(
                f"“{_short(e['perturbed'], 60)}” → {e['predicted']} (is {e['actual']})" for e in examples[:2]))
    lines += ["", "## Out of scope", "", _oos_markdown(oos, figures_rel)]
    if result.get("challenge"):
        c = result["challenge"]
        lines += ["## Challenge set", "",
                  f"`{result['settings']['challenge']}`: {c['rows']} rows, accuracy **{c['accuracy']:.4f}**, "
                  f"macro-F1 {c['macro_f1']:.4f}.", "",
                  _examples(c["errors"]) if c["errors"] else "No errors on the challenge set.", ""]
    return "\n".join(lines) + "\n"


def _table_slices(slices: list[dict], limit: int = 20) -> list[dict]:
    """Flagged slices, then the worst others (length buckets always shown), at most `limit` unless flagged."""
    ordered = sorted(slices, key=lambda s: (not s["flagged"], s["accuracy"]))
    shown = [s for s in ordered if s["flagged"]]
    shown += [s for s in ordered if not s["flagged"]][: max(0, limit - len(shown))]
    shown += [s for s in ordered if s["kind"] == "length" and s not in shown]
    return sorted(shown, key=lambda s: (not s["flagged"], s["accuracy"]))


def _examples(rows: list[dict]) -> str:
    return md_table(["text", "actual", "predicted", "confidence"],
                    [(_short(r["text"]), r["actual"], r["predicted"], r["confidence"]) for r in rows])


def _oos_summary(oos: dict) -> str:
    sets = oos["sets"]
    over = np.mean([s["share_confidence_over_0.5"] for s in sets.values()]) if sets else 0.0
    rec = oos["recommended"]
    if rec["threshold"] is None:
        tail = f"target precision {rec['target_precision']:.3f} is out of reach on validation."
    else:
        rejected = rec["out_of_scope_rejected"] or {}
        tail = (f"an abstain threshold of {rec['threshold']:.3f} (validation precision ≥ {rec['target_precision']:.3f}) "
                f"keeps {_pct(rec['coverage'])} of validation rows and rejects "
                f"{_pct(float(np.mean(list(rejected.values()))) if rejected else None)} of off-topic texts.")
    return f"- **Out of scope**: {_pct(over)} of off-topic texts get a class with confidence > 0.5; " + tail


def _oos_markdown(oos: dict, figures_rel: str) -> str:
    rec = oos["recommended"]
    sets = oos["sets"]
    lines = ["Texts that belong to no class, and how confidently the model still assigns one. "
             + ("The model has an `UNKNOWN` class (trained from `data.out_of_scope`)."
                if oos["model_has_unknown_class"] else
                "The model has no `UNKNOWN` class: without a threshold every text gets one of the known labels."), "",
             md_table(["set", "texts", "mean confidence", "> 0.5", "> 0.9", "predicted UNKNOWN", "most assigned"],
                      [(name, s["texts"], s["mean_confidence"], _pct(s["share_confidence_over_0.5"]),
                        _pct(s["share_confidence_over_0.9"]), _pct(s["share_predicted_unknown"]),
                        ", ".join(f"{k} ({v})" for k, v in list(s["top_predicted"].items())[:3]))
                       for name, s in sets.items()]), "",
             f"![out of scope]({figures_rel}/{FIGURES['out_of_scope']})", "",
             "### Abstain threshold", ""]
    if rec["threshold"] is None:
        lines.append(f"No threshold reaches precision {rec['target_precision']:.3f} on the validation split "
                     f"(best reachable: {rec['precision']:.4f}). Lower `analyze.out_of_scope.target_precision`.")
    else:
        lines.append(
            f"Recommended: **{rec['threshold']:.4f}**, the lowest threshold whose kept validation predictions reach "
            f"precision {rec['target_precision']:.3f} ({rec['precision']:.4f} at coverage {_pct(rec['coverage'])}; "
            f"without a threshold {rec['baseline_precision']:.4f}). On the test split it keeps "
            f"{_pct(rec['test_coverage'])} of rows at precision {rec['test_precision']:.4f}: "
            f"**the cost is {_pct(1 - rec['test_coverage'])} of in-scope tickets answered UNKNOWN**.")
    saved = oos["saved_threshold"]
    lines += ["", ("The model was saved with abstain threshold "
                   f"**{saved:.4f}** (`train.abstain.target_precision`): prediction answers UNKNOWN below it."
                   if saved else "The model was saved without an abstain threshold (`train.abstain.target_precision: null`)."),
              "", md_table(["threshold", "validation coverage", "validation precision", "test coverage", "test precision",
                            *[f"rejected: {n}" for n in sets], "note"],
                           [(f"{t['threshold']:.4f}", _pct(t["validation_coverage"]), t["validation_precision"],
                             _pct(t["test_coverage"]), t["test_precision"],
                             *[_pct(t["out_of_scope_rejected"][n]) for n in sets],
                             " ".join(x for x, on in (("recommended", t["recommended"]), ("saved", t["saved"])) if on))
                            for t in oos["thresholds"]]), ""]
    for name, s in sets.items():
        lines.append(f"Most confident off-topic texts in `{name}`: " + " · ".join(
            f"“{_short(e['text'], 60)}” → {e['predicted']} ({e['confidence']:.2f})" for e in s["most_confident"][:3]))
        lines.append("")
    return "\n".join(lines)
