"""The tokenizer of the models train/bert.py covers, and which models those are: neither needs torch
or transformers (the prepare and review stages count tokens with it and import neither).

`Tokenizer` reads tokenizer.json with the `tokenizers` library, which transformers' own fast
tokenizers wrap, and gives the same ids (tests/test_bert.py); `load` falls back to transformers'
AutoTokenizer for every other model.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
# what save_pretrained copies of the tokenizer: the files transformers' fast BERT tokenizer reads
TOKENIZER_FILES = (TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "added_tokens.json")
# transformers' BertConfig defaults, for a config.json that leaves some out (transformers fills them in too)
BERT_DEFAULTS = {"hidden_act": "gelu", "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
                 "attention_probs_dropout_prob": 0.1, "layer_norm_eps": 1e-12, "type_vocab_size": 2,
                 "max_position_embeddings": 512, "initializer_range": 0.02, "pad_token_id": 0,
                 "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12, "intermediate_size": 3072}


def unsupported(folder: str | Path) -> str | None:
    """Why this module cannot stand in for transformers on the model in `folder`; None when it can."""
    folder = Path(folder)
    try:
        config = BERT_DEFAULTS | json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return f"no readable {CONFIG_FILE}"
    checks = [
        (config.get("model_type") == "bert", f"model_type {config.get('model_type')!r} is not bert"),
        (config.get("position_embedding_type") == "absolute",
         f"position_embedding_type {config.get('position_embedding_type')!r}"),
        (config.get("hidden_act") == "gelu", f"hidden_act {config.get('hidden_act')!r}"),
        (not config.get("is_decoder") and not config.get("add_cross_attention"), "a decoder"),
        (not config.get("chunk_size_feed_forward"), "chunk_size_feed_forward"),
        ("vocab_size" in config and config["hidden_size"] % config["num_attention_heads"] == 0,
         "no vocab_size, or hidden_size not a multiple of num_attention_heads"),
        ((folder / WEIGHTS_FILE).is_file(), f"no {WEIGHTS_FILE}"),
        ((folder / TOKENIZER_FILE).is_file(), f"no {TOKENIZER_FILE}"),
    ]
    return next((why for ok, why in checks if not ok), None)


def load(folder: str | Path):
    """The tokenizer of the model in `folder`: `Tokenizer` where train/bert.py covers the model, else
    transformers' AutoTokenizer."""
    if unsupported(folder) is None:
        return Tokenizer(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


class Tokenizer:
    """The model's fast tokenizer as training and prediction call it - `tokenizer(texts, truncation=True,
    max_length=N)["input_ids"]`, `pad_token_id`, `save_pretrained` - read from tokenizer.json by the
    `tokenizers` library that transformers' own fast tokenizers wrap (same ids: tests/test_bert.py)."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer as Backend

        self.folder = Path(folder)
        self.backend = Backend.from_file(str(self.folder / TOKENIZER_FILE))
        self.backend.no_padding()
        self.backend.no_truncation()
        pad = self._setting("pad_token")
        pad_id = self.backend.token_to_id(pad) if isinstance(pad, str) else None
        self.pad_token_id = pad_id if pad_id is not None else self.backend.token_to_id("[PAD]")
        self.vocab_size = self.backend.get_vocab_size(with_added_tokens=False)
        limit = self._setting("model_max_length")   # what truncation=True without max_length keeps, as in transformers
        self.model_max_length = int(limit) if isinstance(limit, (int, float)) and limit < 10**9 else None

    def _setting(self, key: str):
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            try:
                value = json.loads((self.folder / name).read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError):
                continue
            value = value.get("content") if isinstance(value, dict) else value
            if value is not None:
                return value
        return None

    def __call__(self, texts: Sequence[str], truncation: bool = False, max_length: int | None = None,
                 padding: bool = False, **_options) -> dict[str, list[list[int]]]:
        if padding:
            raise ValueError("bert.Tokenizer does not pad: batches pad themselves (train/batching.py)")
        limit = (max_length or self.model_max_length) if truncation else None
        current = self.backend.truncation
        if limit is None and current is not None:
            self.backend.no_truncation()
        elif limit is not None and (current is None or current.get("max_length") != limit):
            self.backend.enable_truncation(limit)
        return {"input_ids": [encoding.ids for encoding in self.backend.encode_batch(list(texts))]}

    def save_pretrained(self, folder: str | Path) -> None:
        """The tokenizer's files, copied as they are (transformers reads them back unchanged)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            if (self.folder / name).is_file() and (self.folder / name).resolve() != (folder / name).resolve():
                shutil.copyfile(self.folder / name, folder / name)

