"""hfclf: fine-tune a lightweight Hugging Face transformer as a text classifier, as a DVC pipeline
of Hydra-configured stages recorded in MLflow. Generated projects pin this library exactly.

Phases: data/ (load, validate, split, profile) · preflight/ (review, smoke, plan, approve) ·
train/ (loop, model, compute, sweeps, distributed) · evaluate/ (metrics, bootstrap, baselines) ·
analyze/ (failures, robustness, out-of-scope, improvements) · ship/ (card, register, publish,
predict, demo) · research/ (Hub dataset search and pinning) · infra/ (cli, tracking, render,
files, errors, user_code). `pipeline` is the DVC contract's stage table and `contract` renders and
checks dvc.yaml from it (`hfclf contract`); `bake/` holds the cookiecutter hooks' logic.
"""
from hfclf.infra import openmp as _openmp

# How PyTorch's OpenMP threads wait between operations (infra/openmp.py): a brief spin on an idle
# CPU, passive on a busy one, so a shared CPU (a laptop, a CI runner) is not starved by spinning
# threads. Must be decided before torch is imported, hence here; values the user set win.
OPENMP_WAIT = _openmp.configure()

__version__ = "0.5.1"
