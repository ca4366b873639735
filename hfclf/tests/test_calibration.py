"""Temperature scaling and the abstain-coverage rule (issue #14): calibration that helps, and an
abstain threshold suggested only when it keeps enough in-scope rows."""
from __future__ import annotations

import numpy as np
import pytest

from hfclf.analyze import failures, improvements
from hfclf.train import calibration


def miscalibrated(n=4000, classes=5, scale=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports z * scale: overconfident by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, classes))
    p = calibration.softmax(z)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return z * scale, y


@pytest.mark.parametrize("scale", [3.0, 0.4])     # over- and underconfident
def test_temperature_scaling_lowers_ece(scale):
    logits, y = miscalibrated(scale=scale)
    t = calibration.fit_temperature(logits, y)
    assert t == pytest.approx(scale, rel=0.15)
    report = calibration.temperature_report(logits, y, t)
    assert report["ece_after"] < report["ece_before"] / 2 and report["nll_after"] < report["nll_before"]
    # a temperature never changes the predicted class
    assert (calibration.softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_uncalibrate_inverts_the_temperature():
    logits, _ = miscalibrated(n=50)
    raw = calibration.softmax(logits)
    assert np.allclose(calibration.uncalibrate(calibration.softmax(logits, 2.5), 2.5), raw, atol=1e-6)


class _Stub:
    labels = ["a", "b"]
    threshold = None


def _analysis(oos: dict) -> dict:
    return {"robustness": {"perturbations": [], "rows": 0}, "confidence": {"ece": 0.01, "accuracy": 0.9},
            "out_of_scope": oos, "slices": []}


def test_abstain_threshold_keeps_the_required_coverage():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 1000)
    correct = rng.uniform(0, 1, 1000) < conf          # precision 0.999 only at the very top
    strict = failures.out_of_scope(_Stub(), {}, conf, correct, conf, correct, 0.999, [], 64, min_coverage=0.0)
    assert strict["recommended"]["rule"] == "target_precision" and strict["recommended"]["coverage"] < 0.2
    kept = failures.out_of_scope(_Stub(), {}, conf, correct, conf, correct, 0.999, [], 64, min_coverage=0.9)
    rec = kept["recommended"]
    assert rec["rule"] == "min_coverage" and 0.9 <= rec["coverage"] < 0.92
    assert rec["precision"] == pytest.approx(correct[conf >= rec["threshold"]].mean())


def test_an_abstain_threshold_below_the_coverage_floor_is_not_suggested():
    sets = {"default": {"share_confidence_over_0.5": 0.9}}
    rec = {"threshold": 0.99, "coverage": 0.016, "precision": 1.0, "baseline_precision": 0.9, "rule": "target_precision",
           "min_coverage": 0.9, "out_of_scope_rejected": {"default": 0.95}}
    oos = {"recommended": rec, "saved_threshold": None, "sets": sets, "model_has_unknown_class": False}
    limits = improvements.Limits()
    switches = [s.switch for s in improvements.suggest(_analysis(oos), {}, {}, limits, 0.999, {})]
    assert not any(s.startswith("train.abstain") for s in switches)
    rec |= {"threshold": 0.6, "coverage": 0.91, "precision": 0.97, "rule": "min_coverage"}
    found = [s for s in improvements.suggest(_analysis(oos), {}, {}, limits, 0.999, {})
             if s.switch.startswith("train.abstain")]
    assert found and found[0].switch == "train.abstain.target_precision=0.97"
    assert "91.0% of in-scope validation rows" in found[0].effect and "rejects 95%" in found[0].effect
