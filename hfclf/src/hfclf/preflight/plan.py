"""The training plan and its approval.

`plan` turns the data profile, the review and the smoke test's measured throughput into what
training will do and cost: sizes, model, max_length against the token-length distribution (for
model.max_length=auto, the longest length the smoke test timed at which plan.length_min_epochs epochs fit),
epochs/steps/learning rate/batch, device and precision, estimated time against the budget, and
the risks. With plan.require_approval=true, `train` starts only once `make approve` has recorded
the SHA-256 of this exact plan (reports/plan_approval.json); any change needs a new approval.

Outputs of the `plan` stage: reports/training_plan.{md,json} and reports/gates/plan.json (settings + approval state, no
estimates: train's gate). `make approve` records approval of this exact plan and refreshes the gate.
"""
from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hfclf.infra.errors import UserError
from hfclf.data import processed
from hfclf.infra.cli import stage
from hfclf.infra.render import md_table, write_json
from hfclf.infra.settings import whole_or_auto
from hfclf.train import convergence, lengths

PLAN_MD, PLAN_JSON, APPROVAL = "training_plan.md", "training_plan.json", "plan_approval.json"


def plan_settings(cfg: DictConfig, data_fingerprint: str) -> dict:
    """What an approval covers: train must run with exactly these, or the plan is stale."""
    return {"data_fingerprint": data_fingerprint, "model": cfg.model.name, "max_length": cfg.model.max_length,
            "freeze_embeddings": cfg.model.freeze_embeddings, "max_epochs": cfg.train.max_epochs,
            "min_steps": convergence.min_steps(cfg.train.get("min_steps")),
            "evals_per_epoch": cfg.train.get("evals_per_epoch", 1), "eval_max_rows": cfg.train.get("eval_max_rows"),
            "early_stopping_patience": cfg.train.early_stopping_patience, "min_delta": cfg.train.get("min_delta", 0.0),
            "loss_min_delta": cfg.train.get("loss_min_delta", 0.0), "cooldown": cfg.train.get("cooldown", 0.0),
            "stop_at_score": cfg.train.get("stop_at_score"),
            "patience_window": convergence.patience_window(cfg.train.get("patience_window")),
            "batch_size": cfg.train.batch_size, "learning_rate": cfg.train.learning_rate,
            "device": cfg.compute.device, "precision": cfg.compute.precision, "max_minutes": cfg.compute.max_minutes}


def choose_length(cfg: DictConfig, tokens: dict | None, smoke: dict, epoch_cost) -> dict:
    """model.max_length for this plan: the number set, or for auto the longest length the smoke test
    timed at which plan.length_min_epochs epochs fit in the budget (train/lengths.py), with the smoke
    test's clock at that length. `epoch_cost`: (train examples/s, inference examples/s) -> seconds per
    epoch."""
    setting = cfg.model.max_length
    positions = tokens.get("model_max_positions") if tokens else None
    number = lengths.fixed(setting)
    if number is not None and positions and number > positions:
        raise UserError(f"model.max_length={number} is more than {cfg.model.name} can take ({positions} "
                        f"positions): set model.max_length in conf/model/default.yaml to at most {positions}.")
    timed = smoke.get("by_length") or {str(smoke.get("max_length") or lengths.data_length(setting, tokens)): smoke}
    seconds = {int(k): epoch_cost(v["train_examples_per_second"], v["inference_examples_per_second"])
               for k, v in timed.items()}
    fitting = {k: math.floor(convergence.epochs_in_budget(v, cfg.compute.max_minutes, cfg.plan.overhead_seconds) * 10)
               / 10 for k, v in seconds.items()}   # to 0.1 epoch, as the plan states them
    if number is None and len(seconds) > 1:
        chosen, why = lengths.budget_length(fitting, float(cfg.plan.get("length_min_epochs", 1)))
    else:
        chosen = number if number is not None else max(seconds)
        why = "set in conf/model/default.yaml" if number is not None else "the data's length"
    key = str(chosen) if str(chosen) in timed else next(iter(timed))   # a smoke report from before the length changed
    return {"max_length": chosen, "setting": setting, "why": why, "clock": timed[key],
            "seconds_per_epoch": seconds[int(key)],
            "epochs_fitting": {str(k): v for k, v in sorted(fitting.items(), reverse=True)}}


def truncated_share(review: dict, tokens: dict | None, max_length: int) -> float:
    """The share of texts longer than `max_length` tokens: the review's count where it checked this
    length (all rows), else the token profile's (a sample)."""
    long = review["lengths"]["long"]
    if long.get("max_length") == max_length or not tokens:
        return long["fraction"]
    return float(tokens.get("longer_than", {}).get(str(max_length), long["fraction"]))


def make_plan(cfg: DictConfig, profile: dict, review: dict, smoke: dict, fingerprint: str) -> dict:
    t, p = cfg.train, cfg.plan
    rows = profile["rows"]
    tokens = profile.get("text_tokens")
    positions = tokens.get("model_max_positions") if tokens else None
    batch = t.batch_size
    steps_per_epoch = math.ceil(rows["train"] / batch)
    evals, patience = int(t.get("evals_per_epoch", 1)), int(t.early_stopping_patience)
    eval_rows = convergence.eval_rows(rows["validation"], t.get("eval_max_rows"))
    # rounded as recorded: train resolves max_epochs=auto from the recorded figure (epoch_bound) alike
    length = choose_length(cfg, tokens, smoke, lambda train_eps, infer_eps: round(
        rows["train"] / max(train_eps, 1e-9) + evals * eval_rows / max(infer_eps, 1e-9), 1))
    max_length, epoch_seconds = length["max_length"], length["seconds_per_epoch"]
    train_eps, infer_eps = length["clock"]["train_examples_per_second"], length["clock"]["inference_examples_per_second"]
    timed = smoke.get("timing") or {}   # what the smoke test timed them on (train/timing.py)
    budget_seconds = cfg.compute.max_minutes * 60
    epochs_in_budget = convergence.epochs_in_budget(epoch_seconds, cfg.compute.max_minutes, p.overhead_seconds)
    least_steps = convergence.min_steps(t.get("min_steps"))
    cap = convergence.auto_max_epochs(steps_per_epoch, least_steps)
    # auto: the whole epochs that fit, at least 2, at most 10 or the epochs that make train.min_steps steps
    bound = convergence.max_epochs(t.max_epochs, epochs_in_budget, cap)
    cooldown = float(t.get("cooldown", 0.0) or 0.0)
    target = t.get("stop_at_score")
    first_stop = convergence.first_stop_epochs(evals, patience, bound, cooldown)
    # the range: early stopping at its first chance .. the epoch bound (or the budget, if it bites first)
    total_seconds = min(bound * epoch_seconds, max(0.0, budget_seconds - p.overhead_seconds)) + p.overhead_seconds
    min_seconds = min(first_stop * epoch_seconds, total_seconds - p.overhead_seconds) + p.overhead_seconds
    target_stop = convergence.target_stop_epochs(evals, bound, cooldown)   # a first pass at train.stop_at_score
    fits = bound * epoch_seconds + p.overhead_seconds <= budget_seconds
    truncated = truncated_share(review, tokens, max_length)
    covering = lengths.covering(tokens, positions) if tokens else None

    risks = list(review.get("risks", []))
    if not fits:
        risks.insert(0, f"the estimate ({total_seconds / 60:.1f} min) exceeds compute.max_minutes="
                        f"{cfg.compute.max_minutes} if it does not converge sooner: training stops at the budget "
                        f"after about {epochs_in_budget:.1f} of at most {bound} epochs. Raise the budget, lower "
                        "train.max_epochs, or train on a GPU.")
    if truncated > p.max_truncated_share:
        longest = max(int(k) for k in length["epochs_fitting"])
        if lengths.fixed(length["setting"]) is None and max_length < longest:
            risks.append(f"model.max_length=auto keeps {max_length} tokens, which truncates {truncated:.1%} of texts: at "
                         f"{longest}, only {length['epochs_fitting'][str(longest)]:g} epochs fit in the budget "
                         f"(plan.length_min_epochs={p.get('length_min_epochs', 1)}). Raise compute.max_minutes or "
                         "train on a GPU to keep more of each text.")
        elif covering is not None and covering <= max_length:
            risks.append(f"model.max_length={max_length} truncates {truncated:.1%} of texts: it is the most "
                         f"{cfg.model.name} takes ({positions} positions)")
        else:
            risks.append(f"model.max_length={max_length} truncates {truncated:.1%} of texts; "
                         f"{covering or 'a larger value'} would keep 99% whole (or set it to auto)")
    small = {k: v for k, v in profile["per_class"]["train"].items() if v < p.min_rows_per_class}
    if small:
        kind = "labels" if profile.get("task") == "multi_label" else "classes"
        risks.append(f"{len(small)} {kind} have fewer than {p.min_rows_per_class} training rows "
                     f"({', '.join(f'{k} ({v})' for k, v in small.items())}): expect unstable scores for them")
    risks += [f"device: {w}" for w in smoke.get("warnings", [])]

    return {
        "settings": plan_settings(cfg, fingerprint),
        "data": {"rows": rows, "classes": profile["num_classes"], "fingerprint": fingerprint,
                 "review_verdict": review["verdict"]},
        "model": {"name": cfg.model.name, "parameters": smoke["parameters"],
                  "trainable_parameters": smoke["trainable_parameters"],
                  "freeze_embeddings": cfg.model.freeze_embeddings, "max_length": max_length,
                  "max_length_setting": length["setting"], "max_length_choice": length["why"],
                  "epochs_fitting_by_length": length["epochs_fitting"],
                  "suggested_max_length": covering,
                  "token_p50": tokens["p50"] if tokens else None, "token_p99": tokens["p99"] if tokens else None,
                  "token_max": tokens["max"] if tokens else None, "truncated_share": truncated,
                  "max_positions": positions},
        "training": {"epochs": bound, "max_epochs_setting": t.max_epochs, "auto_max_epochs": cap,
                     "min_steps": least_steps, "batch_size": batch,
                     "steps_per_epoch": steps_per_epoch, "total_steps": steps_per_epoch * bound,
                     "learning_rate": t.learning_rate, "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay,
                     "early_stopping_patience": patience, "evals_per_epoch": evals, "eval_rows": eval_rows,
                     "first_stop_epochs": round(first_stop, 2), "stop_at_score": target,
                     "target_stop_epochs": round(target_stop, 2),
                     "stops_on": convergence.describe(evals, patience, eval_rows, bound, t.get("min_delta", 0.0),
                                                       t.get("loss_min_delta", 0.0),
                                                       "micro-F1" if profile.get("task") == "multi_label" else "macro-F1",
                                                       cooldown, target,
                                                       convergence.patience_window(t.get("patience_window")))},
        "compute": {"device": smoke["device"], "precision": smoke["precision"], "threads": smoke["threads"],
                    "openmp_wait": smoke.get("openmp_wait"), "requested_device": cfg.compute.device},
        "estimate": {"train_examples_per_second": train_eps, "inference_examples_per_second": infer_eps,
                     "timed_steps": timed.get("training", {}).get("steps_timed"),
                     "timed_validation_rows": timed.get("validation", {}).get("rows_timed"),
                     "seconds_per_epoch": epoch_seconds, "overhead_seconds": p.overhead_seconds,
                     "min_minutes": round(min_seconds / 60, 1), "total_minutes": round(total_seconds / 60, 1),
                     "target_stop_minutes": round((target_stop * epoch_seconds + p.overhead_seconds) / 60, 1),
                     "budget_minutes": cfg.compute.max_minutes,
                     "fits_budget": fits, "epochs_within_budget": math.floor(epochs_in_budget * 10) / 10},
        "risks": risks,
    }


def auto_cap_note(training: dict) -> str:
    """The upper end of max_epochs=auto's range, and why where train.min_steps raised it."""
    cap = training.get("auto_max_epochs", convergence.AUTO_MAX_EPOCHS)
    if cap <= convergence.AUTO_MAX_EPOCHS:
        return str(cap)
    return (f"{cap}: a small set, so the {cap} epochs that make train.min_steps={training['min_steps']} steps "
            f"rather than {convergence.AUTO_MAX_EPOCHS}")


def plan_markdown(plan: dict) -> str:
    d, m, t, c, e = plan["data"], plan["model"], plan["training"], plan["compute"], plan["estimate"]
    rows = d["rows"]
    fit = ("✅ fits" if e["fits_budget"] else f"⚠️ **does not fit**: about {e['epochs_within_budget']} epochs "
           "fit before training stops at the budget")
    fitting = m.get("epochs_fitting_by_length") or {}
    choice = (f"auto → {m['max_length']}, {m['max_length_choice']} (epochs that fit in the budget: "
              + ", ".join(f"{k} tokens {v:g}" for k, v in fitting.items()) + "); "
              if str(m.get("max_length_setting")) == "auto" else "")
    if m["suggested_max_length"] is None:
        length_note = choice + "token lengths unknown (no token profile)"
    else:
        whole = (f"99% fit in {m['suggested_max_length']}" if m["suggested_max_length"] >= m["token_p99"] else
                 f"the model takes at most {m['suggested_max_length']}")
        length_note = (choice + f"tokens per text: median {m['token_p50']:g}, p99 {m['token_p99']:g}, max "
                       f"{m['token_max']}; {m['truncated_share']:.1%} truncated at {m['max_length']}; {whole} "
                       "(batches pad only to their longest text, so a longer limit costs time only on long texts)")
    lines = [
        "# Training plan", "",
        md_table(["", "plan"], [
            ("data", f"{rows['train']} train · {rows['validation']} validation · {rows['test']} test rows, "
                     f"{d['classes']} classes (fingerprint `{d['fingerprint']}`, review: {d['review_verdict']})"),
            ("model", f"`{m['name']}`: {m['parameters']:,} parameters, {m['trainable_parameters']:,} trained"
                      + (" (word embeddings frozen)" if m["freeze_embeddings"] else "")),
            ("max_length", f"{m['max_length']} — {length_note}"),
            ("schedule", f"at most {t['epochs']} epoch{'s' if t['epochs'] != 1 else ''} × {t['steps_per_epoch']} "
                         f"steps = {t['total_steps']} steps of batch {t['batch_size']} (train.max_epochs: "
                         f"{t.get('max_epochs_setting', t['epochs'])}"
                         + (f" — {e['epochs_within_budget']:g} epochs fit in the budget: "
                            f"{math.floor(e['epochs_within_budget'])}, kept within "
                            f"{convergence.AUTO_MIN_EPOCHS}–{auto_cap_note(t)}"
                            if str(t.get('max_epochs_setting')) == "auto" else "") + f"); learning rate {t['learning_rate']:g} (warmup "
                         f"{t['warmup_ratio']:.0%} of the first epoch, linear decay to the bound), weight decay "
                         f"{t['weight_decay']:g}"),
            ("stops on", t.get("stops_on", f"{t['early_stopping_patience']} validation pass(es) without a better "
                                           "macro-F1")),
            ("device", f"`{c['device']}` ({c['precision']}, {c['threads']} threads"
                       + (f", OpenMP wait: {c['openmp_wait']}" if c.get("openmp_wait") else "")
                       + f"; requested `{c['requested_device']}`)"),
            ("throughput", f"{e['train_examples_per_second']:g} train / {e['inference_examples_per_second']:g} "
                           "inference examples per second, measured by the smoke test on this device"
                           + (f" ({e['timed_steps']} training steps on the training split's own batches, a "
                              f"validation pass over {e['timed_validation_rows']} rows)" if e.get("timed_steps") else "")),
            ("estimate", f"{e.get('min_minutes', e['total_minutes'])}–{e['total_minutes']} min: "
                         f"{e.get('min_minutes', e['total_minutes'])} min if it converges at the first chance "
                         f"({t.get('first_stop_epochs', t['epochs'])} epoch), {e['total_minutes']} min at the "
                         f"{'epoch bound' if e['fits_budget'] else 'time budget'} ({e['seconds_per_epoch']:.0f} s per "
                         f"epoch, validation passes included, + {e['overhead_seconds']} s start-up); "
                         + (f"easy data stops sooner, once a pass scores {t['stop_at_score']:g} (train.stop_at_score; "
                            f"from {t['target_stop_epochs']:g} epoch, {e['target_stop_minutes']} min), "
                            if t.get("stop_at_score") is not None else "easy data stops near the low end, ")
                         + "harder data uses what it needs"),
            ("budget", f"compute.max_minutes = {e['budget_minutes']}: {fit}"),
        ]), "", "## Risks", ""]
    lines += [f"- {risk}" for risk in plan["risks"]] or ["- none found"]
    return "\n".join(lines) + "\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- approval

def approve(reports: Path, settings: dict | None = None) -> dict:
    """Record approval of the plan as it is on disk now (and of the settings it was made for)."""
    from hfclf.preflight.gates import gate_digest

    plan_md = reports / PLAN_MD
    if not plan_md.exists():
        raise UserError(f"'{plan_md}' is missing: run `make plan` first, read it, then `make approve`.")
    record = {"plan": str(plan_md), "plan_sha256": digest(plan_md.read_text(encoding="utf-8")),
              "settings_sha256": gate_digest(settings) if settings is not None else None,
              "approved_by": _who(), "approved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (reports / APPROVAL).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def approval_required(conf_dir: Path) -> bool:
    """plan.require_approval from conf/plan.yaml. It gates starting training and is not part of the
    plan, so toggling it does not make DVC retrain a model that is up to date."""
    conf = conf_dir / "plan.yaml"
    return bool(OmegaConf.select(OmegaConf.load(conf), "plan.require_approval", default=False)) if conf.exists() \
        else False


def gate(reports: Path, settings: dict, epoch_bound: int, max_length: int) -> dict:
    """What train waits for (reports/gates/plan.json): the settings train must run with, their digest,
    the epoch bound and max_length they resolve to, and whether the plan on disk is approved - no
    estimates or measured throughput, so re-planning after a new smoke test writes the same bytes
    (unless the approval no longer matches the plan, or an auto setting now resolves to another
    bound or length: that changes training, so train must re-run)."""
    from hfclf.preflight.gates import gate_digest

    approval_path = reports / APPROVAL
    approval = json.loads(approval_path.read_text(encoding="utf-8")) if approval_path.exists() else {}
    settings_sha256 = gate_digest(settings)
    # approved: an approval on record covers these settings. Not the plan text's hash, which holds the
    # smoke test's measured throughput: a re-measured plan must not change what train waits for.
    # (Whether that approval still matches the plan text is checked when train starts.)
    return {"settings": settings, "settings_sha256": settings_sha256, "epoch_bound": int(epoch_bound),
            "max_length": int(max_length), "approved": approval.get("settings_sha256") == settings_sha256}


def write_gate(reports: Path, plan: dict) -> Path:
    """The gate of `plan` (make_plan's, or the one on disk): its settings, epoch bound and max_length."""
    from hfclf.preflight.gates import write_gate as write

    path = reports / "gates" / "plan.json"   # gates.PLAN_GATE
    write(path, gate(reports, plan["settings"], plan["training"]["epochs"], plan["model"]["max_length"]))
    return path


def epoch_bound(setting, planned: dict | None, max_minutes: float, least_steps: int = 0) -> int:
    """train.max_epochs as train runs it: the number set, or for auto the bound that make_plan's rule
    gives under this budget (and train.min_steps: `least_steps`) from the plan's measured seconds per
    epoch, start-up cost and steps per epoch (the plan's own bound when the budget is the planned one).
    Auto without a plan is an error: the bound comes from the smoke test's measured speed."""
    fixed = whole_or_auto(setting, "train.max_epochs", 1)
    if fixed is not None:
        return fixed
    if planned is None:
        raise UserError("train.max_epochs=auto is resolved by the plan from the smoke test's measured speed and "
                        f"compute.max_minutes, but '{PLAN_JSON}' is missing: run `make plan` (dvc repro plan) first, "
                        "or set train.max_epochs to a number.")
    e = planned["estimate"]
    cap = convergence.auto_max_epochs(planned["training"]["steps_per_epoch"], least_steps)
    bound = convergence.max_epochs(setting, convergence.epochs_in_budget(e["seconds_per_epoch"], max_minutes,
                                                                         e["overhead_seconds"]), cap)
    log.info("train.max_epochs=auto: at most %d epochs, what fits in compute.max_minutes=%g at the plan's "
             "measured speed, within %d-%d (reports/training_plan.md)", bound, max_minutes,
             convergence.AUTO_MIN_EPOCHS, cap)
    return bound


def max_length(setting, planned: dict | None, reports: Path) -> int:
    """model.max_length as train runs it: the number set, or for auto the plan's choice (logged);
    without a plan, the data's length (train/lengths.py), with a warning that nothing checked it
    against the budget."""
    number = lengths.fixed(setting)
    if number is not None:
        return number
    # the profile is read only when there is no plan to take the length from
    length = lengths.for_training(setting, planned, lengths.profile_tokens(reports) if planned is None else None)
    if planned is not None:
        log.info("model.max_length=auto: %d tokens, %s (reports/training_plan.md)", length,
                 planned["model"].get("max_length_choice", "the plan's choice"))
    else:
        log.warning("model.max_length=auto without a plan: %d tokens, the data's length, not checked against "
                    "compute.max_minutes (`make plan` chooses it by the budget too)", length)
    return length


def load_plan(reports: Path) -> dict | None:
    path = reports / PLAN_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def in_multirun() -> bool:
    """True inside a Hydra multirun (a sweep trial): trials explore, they never replace models/model."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError):
        return False


def check_before_training(reports: Path, conf_dir: Path, current: dict, plan: dict | None,
                          enforce: bool = True) -> dict:
    """Refuse to train when approval is required and missing, stale or for another plan (`plan`:
    load_plan's, read once by train).

    Returns what MLflow should record: whether a plan existed, matched and was approved.
    `enforce=False` (sweep trials) only reports.
    """
    required = approval_required(conf_dir) and enforce
    approval_path = reports / APPROVAL
    approval = json.loads(approval_path.read_text(encoding="utf-8")) if approval_path.exists() else None
    status = {"found": plan is not None, "approval_required": required, "approved": False, "matches_config": None}
    if plan is None:
        if required:
            raise UserError(f"plan.require_approval=true but '{reports / PLAN_JSON}' is missing: run `make plan`, "
                            f"read {reports / PLAN_MD}, then `make approve`.")
        return status
    differences = [f"{key}={plan['settings'].get(key)!r} in the plan, {value!r} now"
                   for key, value in current.items() if plan["settings"].get(key) != value]
    status["matches_config"] = not differences
    current_hash = digest((reports / PLAN_MD).read_text(encoding="utf-8")) if (reports / PLAN_MD).exists() else None
    status["approved"] = bool(approval and approval.get("plan_sha256") == current_hash and not differences)
    if not required:
        return status
    if differences:
        raise UserError("the training plan is stale: " + "; ".join(differences) + ". Run `make plan` to "
                        "re-plan, read reports/training_plan.md, then `make approve`.")
    if approval is None:
        raise UserError(f"training needs an approved plan (plan.require_approval=true): read {reports / PLAN_MD}, "
                        "then run `make approve`.")
    if approval.get("plan_sha256") != current_hash:
        raise UserError(f"the training plan changed since it was approved by {approval.get('approved_by')} at "
                        f"{approval.get('approved_at')} (approved sha256 {str(approval.get('plan_sha256'))[:12]}, "
                        f"now {str(current_hash)[:12]}): read {reports / PLAN_MD} again and run `make approve`.")
    return status


log = logging.getLogger(__name__)


def read_report(reports: Path, name: str, stage_name: str) -> dict:
    path = reports / name
    if not path.exists():
        raise UserError(f"'{path}' is missing: run `make {stage_name}` (or `dvc repro {stage_name}`) first.")
    return json.loads(path.read_text(encoding="utf-8"))


@stage("plan")
def main(cfg: DictConfig) -> None:
    reports = Path(cfg.paths.reports)
    fingerprint = processed.read_labels(Path(cfg.paths.processed))["fingerprint"]
    profile = read_report(reports, "data_profile.json", "prepare")
    review = read_report(reports, "review.json", "review")
    smoke = read_report(reports, "smoke.json", "smoke")
    plan = make_plan(cfg, profile, review, smoke, fingerprint)
    markdown = plan_markdown(plan)
    plan["plan_sha256"] = digest(markdown)
    (reports / "gates" / "plan.json").unlink(missing_ok=True)   # no gate from an older plan while this one is written
    (reports / PLAN_MD).write_text(markdown, encoding="utf-8")
    write_json(reports / PLAN_JSON, plan)
    write_gate(reports, plan)
    for risk in plan["risks"]:
        log.warning("risk: %s", risk)
    e = plan["estimate"]
    log.info("plan: at most %d steps on %s, %.1f-%.1f min (budget %s min: %s)%s", plan["training"]["total_steps"],
             plan["compute"]["device"], e["min_minutes"], e["total_minutes"], e["budget_minutes"],
             "fits" if e["fits_budget"] else "does NOT fit",
             "; plan.require_approval=true: read it, then `make approve`" if cfg.plan.require_approval else "")
