"""BERT in plain PyTorch, for the BERT models it covers (the default base model among them): trained,
evaluated and served without importing transformers. Loading MiniLM's tokenizer and model through
transformers takes about 2.7 s in a fresh process that has imported torch (0.9 s and 1.8 s, 2 cores),
mostly imports a classifier never uses (torch._dynamo, torch.distributed, scipy); here, about 0.3 s.

It reads and writes transformers' own files - config.json, model.safetensors under
BertForSequenceClassification's parameter names, the tokenizer's files - so a model trained here is an
ordinary transformers model: `pipeline()`, the Hub and AutoModelForSequenceClassification read it as
they are. The arithmetic is transformers' BERT operation for operation (its SDPA attention with the same
mask rules by default, its eager attention when switched with `set_attn_implementation`, as
modeling.Predictor does for short batches), so the parameters, the dropout draws and the numbers are
the same: tests/test_bert.py compares logits, training steps and saved folders with transformers'.

Anything else - another architecture, a BERT variant this module does not cover (relative positions,
another activation, a decoder), a folder without model.safetensors or tokenizer.json, a user's
`model.builder` - goes through transformers (`unsupported` says why, train/modeling.py decides).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hfclf.infra.errors import UserError
from hfclf.train.bert_tokenizer import BERT_DEFAULTS, CONFIG_FILE, WEIGHTS_FILE, Tokenizer, unsupported

__all__ = ["Bert", "BertClassifier", "Config", "Tokenizer", "load_encoder", "unsupported"]

ARCHITECTURE = "BertForSequenceClassification"
ATTENTION = ("sdpa", "eager")   # transformers' names: PyTorch's fused kernel (the default), or matmul, softmax, matmul


class Config:
    """config.json as transformers writes it; keys read as attributes (`config.num_labels` and the
    label maps as transformers' PretrainedConfig gives them: integer ids)."""

    def __init__(self, values: dict) -> None:
        self.values = BERT_DEFAULTS | dict(values)
        self._attn_implementation = "sdpa"   # as transformers' config holds it; not saved

    def __getattr__(self, name: str):
        if name != "values" and name in self.__dict__.get("values", {}):
            return self.values[name]
        raise AttributeError(name)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in (self.values.get("id2label") or {}).items()}

    @property
    def label2id(self) -> dict[str, int]:
        return {k: int(v) for k, v in (self.values.get("label2id") or {}).items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label) or 2

    @property
    def problem_type(self) -> str | None:
        return self.values.get("problem_type")


class EncoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor


class Bert(nn.Module):
    """The encoder (transformers' BertModel, its parameters under the same names): embeddings,
    `num_hidden_layers` post-norm layers, the [CLS] pooler."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        d, inner = config.hidden_size, config.intermediate_size
        self.heads = config.num_attention_heads
        self.dropout, self.attention_dropout = config.hidden_dropout_prob, config.attention_probs_dropout_prob
        eps = config.layer_norm_eps
        self.embeddings = nn.ModuleDict({
            "word_embeddings": nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id),
            "position_embeddings": nn.Embedding(config.max_position_embeddings, d),
            "token_type_embeddings": nn.Embedding(config.type_vocab_size, d),
            "LayerNorm": nn.LayerNorm(d, eps=eps)})
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(nn.ModuleDict({
            "attention": nn.ModuleDict({
                "self": nn.ModuleDict({"query": nn.Linear(d, d), "key": nn.Linear(d, d), "value": nn.Linear(d, d)}),
                "output": nn.ModuleDict({"dense": nn.Linear(d, d), "LayerNorm": nn.LayerNorm(d, eps=eps)})}),
            "intermediate": nn.ModuleDict({"dense": nn.Linear(d, inner)}),
            "output": nn.ModuleDict({"dense": nn.Linear(inner, d), "LayerNorm": nn.LayerNorm(d, eps=eps)}),
        }) for _ in range(config.num_hidden_layers))})
        self.pooler = nn.ModuleDict({"dense": nn.Linear(d, d)})
        self.register_buffer("positions", torch.arange(config.max_position_embeddings)[None], persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> EncoderOutput:
        rows, width = input_ids.shape
        embeddings = self.embeddings
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = embeddings["word_embeddings"](input_ids) + embeddings["token_type_embeddings"](token_type_ids)
        x = x + embeddings["position_embeddings"](self.positions[:, :width])
        x = F.dropout(embeddings["LayerNorm"](x), self.dropout, self.training)
        eager = self.config._attn_implementation == "eager"
        mask = self._mask(attention_mask, rows, width, eager, x.dtype)
        for layer in self.encoder["layer"]:
            x = self._layer(layer, x, mask, eager)
        pooled = torch.tanh(self.pooler["dense"](x[:, 0]))
        return EncoderOutput(x, pooled)

    @staticmethod
    def _mask(attention_mask: torch.Tensor | None, rows: int, width: int, eager: bool,
              dtype: torch.dtype) -> torch.Tensor | None:
        """transformers' bidirectional mask: none without padding; for SDPA, True where a query may
        attend (rows x 1 x width x width); for eager attention, 0 there and the dtype's minimum elsewhere."""
        if attention_mask is None or bool(attention_mask.all()):
            return None
        allowed = attention_mask.bool()[:, None, None, :].expand(rows, 1, width, width)
        if not eager:
            return allowed
        return torch.zeros((), dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)

    def _layer(self, layer: nn.ModuleDict, x: torch.Tensor, mask: torch.Tensor | None, eager: bool) -> torch.Tensor:
        rows, width, d = x.shape
        attention = layer["attention"]
        shape = (rows, width, self.heads, d // self.heads)
        q, k, v = (attention["self"][name](x).view(shape).transpose(1, 2) for name in ("query", "key", "value"))
        scale = (d // self.heads) ** -0.5
        dropout = self.attention_dropout if self.training else 0.0
        if eager:
            scores = torch.matmul(q, k.transpose(2, 3)) * scale
            if mask is not None:
                scores = scores + mask
            context = torch.matmul(F.dropout(torch.softmax(scores, dim=-1), dropout, self.training), v)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
        context = context.transpose(1, 2).reshape(rows, width, d)
        out = attention["output"]
        x = out["LayerNorm"](F.dropout(out["dense"](context), self.dropout, self.training) + x)
        hidden = F.gelu(layer["intermediate"]["dense"](x))
        out = layer["output"]
        return out["LayerNorm"](F.dropout(out["dense"](hidden), self.dropout, self.training) + x)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings["word_embeddings"]

    def set_attn_implementation(self, name: str) -> None:
        """transformers' switch: "eager" or "sdpa" from the next forward pass on (modeling.Predictor runs
        short CPU batches on eager attention, which is faster there)."""
        if name not in ATTENTION:
            raise ValueError(f"attention {name!r}: one of {ATTENTION}")
        self.config._attn_implementation = name


class BertClassifier(nn.Module):
    """transformers' BertForSequenceClassification: the encoder, dropout on the pooled [CLS] vector
    and a linear head; `forward(...).logits`."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.bert = Bert(config)
        dropout = config.values.get("classifier_dropout")
        self.dropout = config.hidden_dropout_prob if dropout is None else dropout
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> ClassifierOutput:
        pooled = self.bert(input_ids, attention_mask, token_type_ids).pooler_output
        return ClassifierOutput(self.classifier(F.dropout(pooled, self.dropout, self.training)))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def set_attn_implementation(self, name: str) -> None:
        self.bert.set_attn_implementation(name)

    @classmethod
    def from_pretrained(cls, folder: str | Path, labels: Sequence[str] | None = None,
                        problem_type: str | None = None) -> "BertClassifier":
        """A fine-tuned classifier (labels None: its own head and label maps), or a base model with
        a new head for `labels`, initialised as transformers does (normal, std initializer_range; zero
        bias) from torch's current random state."""
        folder = Path(folder)
        values = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if labels is not None:
            values.update(architectures=[ARCHITECTURE], id2label={str(i): label for i, label in enumerate(labels)},
                          label2id={label: i for i, label in enumerate(labels)})
            values.pop("problem_type", None)
            if problem_type:
                values["problem_type"] = problem_type
        return _assemble(cls, folder, values, fine_tuned=labels is None)

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json and model.safetensors, as transformers' save_pretrained writes them."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().to("cpu", torch.float32).contiguous()
                 for name, tensor in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        values = dict(self.config.values, architectures=[ARCHITECTURE], dtype="float32")
        values.pop("torch_dtype", None)
        (folder / CONFIG_FILE).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_encoder(folder: str | Path) -> Bert:
    """The base model's encoder alone (transformers' BertModel: `last_hidden_state`, `pooler_output`)."""
    values = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    return _assemble(BertClassifier, Path(folder), values | {"id2label": {"0": "0"}}, head=False).bert


def _assemble(cls, folder: Path, values: dict, head: bool = True, fine_tuned: bool = False) -> "BertClassifier":
    """The model for config `values` with the checkpoint's tensors (`head`: its classifier's too, where
    it has one of the shape `values` asks for, as transformers keeps it); what the checkpoint lacks of
    the pooler and the head is initialised as transformers does (normal, std initializer_range; zero
    bias), in that order. `fine_tuned`: the head must be there."""
    # built on the CPU without its random initialisation (0.1 s; building on the meta device instead
    # imports torch._dynamo, 1.2 s): every tensor is the checkpoint's or initialised below. Nothing is
    # drawn from the run's random state.
    with torch.random.fork_rng(devices=[]), _uninitialised():
        model = cls(Config(values))
    state = _read_weights(folder)
    if not head or state.get("classifier.weight", torch.empty(0)).shape != model.classifier.weight.shape:
        state = {name: tensor for name, tensor in state.items() if not name.startswith("classifier.")}
    try:
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:
        raise UserError(f"{folder / WEIGHTS_FILE} does not fit its {CONFIG_FILE}: {str(err).splitlines()[-1].strip()}")
    missing = [name for name, _ in model.named_parameters() if name not in state]
    if fine_tuned and "classifier.weight" in missing:
        raise UserError(f"{folder / WEIGHTS_FILE} has no classification head for the labels of its {CONFIG_FILE}: "
                        "not a fine-tuned model folder (run `make train`).")
    new = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    if set(missing) - new:
        raise UserError(f"{folder / WEIGHTS_FILE} has no {sorted(set(missing) - new)[0]!r}: not a BERT "
                        "checkpoint this loader reads. Fix: set model.name to another model, or re-save it "
                        "with transformers' save_pretrained.")
    for name in sorted(missing, key=lambda n: (not n.startswith("bert."), n.endswith("bias"))):
        owner, attribute = model.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]
        shape = getattr(owner, attribute).shape
        value = torch.zeros(shape) if attribute == "bias" else torch.empty(shape).normal_(0.0, model.config.initializer_range)
        setattr(owner, attribute, nn.Parameter(value))
    return model


_INIT_FUNCTIONS = ("normal_", "uniform_", "kaiming_uniform_", "ones_", "zeros_")


@contextlib.contextmanager
def _uninitialised():
    """Modules built meanwhile keep the uninitialised memory torch allocates (as transformers'
    `no_init_weights`): torch.nn.init's functions, which nn.Linear, nn.Embedding and nn.LayerNorm
    call, do nothing."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    for name in saved:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under BertForSequenceClassification's names, in float32: a BertModel's
    (no prefix) or a Bert*For*'s (`bert.`); other heads' tensors (a pre-training head) and buffers are
    left out."""
    from safetensors.torch import load_file

    out = {}
    for name, tensor in load_file(str(folder / WEIGHTS_FILE)).items():
        if name.startswith(("embeddings.", "encoder.", "pooler.")):
            name = "bert." + name
        if name.endswith("position_ids") or not name.startswith(("bert.", "classifier.")):
            continue
        out[name] = tensor.float() if tensor.is_floating_point() else tensor
    return out
