"""AdamW and the learning-rate schedule for the training loop, without torch.optim.

torch.optim's `Optimizer.step` imports torch._dynamo on its first call (for torch.compile, which a
plain loop never uses): 1.1 s of every training process's start-up on 2 cores, a quarter of all it
spends outside its loop. `AdamW` here is `torch.optim.AdamW(fused=True)`'s arithmetic - the same
kernel, `torch._fused_adamw_`, called the same way, so the weights are the same bit for bit
(tests/test_optimizer.py) - and its `state_dict` has torch's layout, so a checkpoint reads either way.
`LambdaSchedule` is torch's LambdaLR (which accepts only torch.optim's optimizers): each group's
learning rate is its initial one times `factor(step)`.

Where the fused kernel is missing (a device or build without it), `make_adamw` returns
torch.optim.AdamW with its multi-tensor (foreach) implementation instead.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

FUSED_DEVICES = {"cpu", "cuda", "xpu", "mps"}   # where torch builds _fused_adamw_ (torch.optim's own list)


def make_adamw(groups: list[dict], lr: float, device: torch.device):
    """AdamW over parameter `groups` (each with its `weight_decay`): the fused kernel where the device has it."""
    if device.type in FUSED_DEVICES and hasattr(torch, "_fused_adamw_"):
        return AdamW(groups, lr)
    return torch.optim.AdamW(groups, lr=lr, foreach=device.type != "cpu")


class AdamW:
    """torch.optim.AdamW(fused=True): betas (0.9, 0.999), eps 1e-8, decoupled weight decay, no amsgrad."""

    def __init__(self, groups: Iterable[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.01, **group,
                              "params": list(group["params"])} for group in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def step(self) -> None:
        with torch.no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                states = [self.state.get(p) or self._new_state(p) for p in params]
                steps = [s["step"] for s in states]
                torch._foreach_add_(steps, 1)
                beta1, beta2 = group["betas"]
                torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                    [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"],
                                    beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                    maximize=False, grad_scale=None, found_inf=None)

    def _new_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                         "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                         "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return self.state[p]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        """torch.optim's layout: parameters numbered across the groups in order."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            numbers = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({key: value for key, value in group.items() if key != "params"} | {"params": numbers})
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        """A state_dict of this class or of torch.optim.AdamW over the same parameter groups."""
        if len(saved["param_groups"]) != len(self.param_groups) or any(
                len(mine["params"]) != len(theirs["params"]) for mine, theirs in zip(self.param_groups, saved["param_groups"])):
            raise ValueError("the saved optimizer state has other parameter groups than this model's")
        by_number = {}
        for mine, theirs in zip(self.param_groups, saved["param_groups"]):
            mine.update({key: theirs[key] for key in ("lr", "betas", "eps", "weight_decay", "initial_lr") if key in theirs})
            by_number.update(zip(theirs["params"], mine["params"]))
        self.state = {}
        for number, values in saved["state"].items():
            p = by_number[int(number)]
            self.state[p] = {"step": values["step"].to(p.device, torch.float32).reshape(()),
                             "exp_avg": values["exp_avg"].to(p.device, p.dtype),
                             "exp_avg_sq": values["exp_avg_sq"].to(p.device, p.dtype)}


class LambdaSchedule:
    """torch's LambdaLR for any optimizer with `param_groups`: at step n every group's learning rate
    is its initial one times factor(n); `step()` moves to the next step."""

    def __init__(self, optimizer, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor = optimizer, factor
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1   # LambdaLR's name for the step count
        self.step()

    def step(self) -> None:
        self.last_epoch += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.factor(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, saved: dict) -> None:
        """Also a LambdaLR's state_dict; the learning rates themselves come back with the optimizer's."""
        self.base_lrs, self.last_epoch = list(saved["base_lrs"]), saved["last_epoch"]
