"""train/optimizer.py against torch.optim, which it stands in for: the same weights and learning
rates bit for bit, state_dicts that load either way, and a training process that never imports
torch._dynamo (the 1.1 s it exists to save)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hfclf.train import loop
from hfclf.train.optimizer import AdamW, LambdaSchedule, make_adamw


def model_and_data(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
    return model, torch.randn(64, 12), torch.randint(0, 3, (64,))


def groups(model):
    matrices = [p for p in model.parameters() if p.ndim == 2]
    return [{"params": matrices, "weight_decay": 0.01},
            {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]


def factor(step: int) -> float:
    return min(1.0, (step + 1) / 3) * max(0.0, (20 - step) / 20)


def train(model, inputs, targets, optimizer, scheduler, steps: int) -> list[float]:
    rates = []
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs[step % 4::4]), targets[step % 4::4])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    return rates


def test_the_same_weights_and_learning_rates_as_torch_fused_adamw_and_lambda_lr():
    ours, inputs, targets = model_and_data()
    theirs, _, _ = model_and_data()
    optimizer = AdamW(groups(ours), lr=3e-3)
    reference = torch.optim.AdamW(groups(theirs), lr=3e-3, fused=True)
    assert train(ours, inputs, targets, optimizer, LambdaSchedule(optimizer, factor), 15) == \
        train(theirs, inputs, targets, reference, torch.optim.lr_scheduler.LambdaLR(reference, factor), 15)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("saved_by", ["hfclf", "torch"])
def test_a_resumed_run_goes_on_as_if_never_stopped_whichever_optimizer_saved_it(saved_by):
    """Checkpoints written before this optimizer (torch's AdamW and LambdaLR) resume too."""
    straight, inputs, targets = model_and_data()
    optimizer = AdamW(groups(straight), lr=3e-3)
    train(straight, inputs, targets, optimizer, LambdaSchedule(optimizer, factor), 12)

    first, _, _ = model_and_data()
    if saved_by == "torch":
        before = torch.optim.AdamW(groups(first), lr=3e-3, fused=True)
        before_schedule = torch.optim.lr_scheduler.LambdaLR(before, factor)
    else:
        before = AdamW(groups(first), lr=3e-3)
        before_schedule = LambdaSchedule(before, factor)
    train(first, inputs, targets, before, before_schedule, 7)
    saved = {"model": first.state_dict(), "optimizer": before.state_dict(), "scheduler": before_schedule.state_dict()}

    resumed, _, _ = model_and_data(seed=1)   # other initial weights: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    optimizer = AdamW(groups(resumed), lr=3e-3)
    schedule = LambdaSchedule(optimizer, factor)   # the loop's order: both made, then both loaded
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["scheduler"])
    for step in range(7, 12):   # the loop of `train` from step 7 on
        loss = torch.nn.functional.cross_entropy(resumed(inputs[step % 4::4]), targets[step % 4::4])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
    for (name, a), b in zip(resumed.named_parameters(), straight.parameters()):
        assert torch.equal(a, b), name
    assert schedule.get_last_lr() == [3e-3 * factor(12)] * 2


def test_a_state_for_other_parameters_is_refused():
    model, _, _ = model_and_data()
    optimizer = AdamW(groups(model), lr=1e-3)
    with pytest.raises(ValueError, match="other parameter groups"):
        optimizer.load_state_dict({"state": {}, "param_groups": [{"params": [0]}]})


def test_devices_without_the_fused_kernel_get_torch_foreach_adamw():
    model, _, _ = model_and_data()
    assert isinstance(make_adamw(groups(model), 1e-3, torch.device("cpu")), AdamW)
    fallback = make_adamw(groups(model), 1e-3, torch.device("meta"))
    assert isinstance(fallback, torch.optim.AdamW)


def test_training_never_imports_torch_dynamo(tiny_model_dir, tickets):
    """A fresh interpreter trains the tiny model for an epoch and predicts: torch._dynamo (1.1 s of
    imports for torch.compile) stays out, and transformers too where train/bert.py covers the model."""
    script = f"""
import sys
import numpy as np
from hfclf.infra import compute
from hfclf.train import loop, modeling
texts = {tickets["instruction"].tolist()[:40]!r}
y = np.arange(len(texts)) % 3
tokenizer, model, _ = modeling.load_for_training({str(tiny_model_dir)!r}, ["a", "b", "c"], seed=0)
settings = loop.TrainSettings(epochs=1, batch_size=8, evals_per_epoch=2)
loop.train(model, tokenizer, texts, y, texts, y, settings, compute.select("cpu", "auto", 1))
modeling.Predictor(model, tokenizer, 64).predict(texts[:3])
print(sorted(m for m in ("torch._dynamo", "transformers") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]


def test_the_loop_uses_it():
    model, _, _ = model_and_data()
    assert isinstance(loop.make_optimizer(model, loop.TrainSettings(), torch.device("cpu")), AdamW)
