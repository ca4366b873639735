"""hfclf: fine-tune a lightweight Hugging Face transformer as a text classifier, as a DVC pipeline
of Hydra-configured stages recorded in MLflow. Generated projects pin this library exactly.

Phases: data/ (load, validate, split, profile) · preflight/ (review, smoke, plan, approve) ·
train/ (loop, model, compute, sweeps, distributed) · evaluate/ (metrics, bootstrap, baselines) ·
analyze/ (failures, robustness, out-of-scope, improvements) · ship/ (card, register, publish,
predict, demo) · research/ (Hub dataset search and pinning) · infra/ (cli, tracking, render,
files, errors, user_code). `pipeline` is the DVC contract's stage table and `contract` renders and
checks dvc.yaml from it (`hfclf contract`); `bake/` holds the cookiecutter hooks' logic.
"""
import os as _os

# PyTorch's OpenMP threads otherwise spin between operations; on a CPU shared with other work (a
# laptop, a CI runner) the spinning starves the very thread being waited for and makes training
# up to 10x slower (bench/ in the template). Must be set before torch is imported, hence here;
# OMP_WAIT_POLICY=ACTIVE in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.4.5"
