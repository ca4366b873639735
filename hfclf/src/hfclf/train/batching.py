"""Tokenize once, then batch by similar length so padding (wasted compute) stays small."""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to max_length, no padding (batches pad themselves)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; returns input_ids and attention_mask."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def training_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                     pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar length: shuffle, sort within pools of `pool` batches, shuffle batches.

    Keeps the randomness SGD needs while cutting padding; the last partial batch is kept.
    """
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def inference_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Batches of batch_size texts in length order, however much they pad (`length_batches` without
    a padding budget); callers scatter results back by index."""
    return iter(length_batches(lengths, batch_size, pad_budget=math.inf))


# Padding a batch may add, in tokens: about what one more forward pass costs in fixed overhead on a CPU
# (a 1-token and a 32-token forward of MiniLM take about the same time there: reading the weights).
PAD_BUDGET = 32


def length_batches(lengths: Sequence[int], batch_size: int, pad_budget: float = PAD_BUDGET) -> list[np.ndarray]:
    """Prediction batches in length order that pad next to nothing: a batch holds texts of one length
    (at most batch_size of them) and takes in longer ones only while the padding that adds stays
    within `pad_budget` tokens, so a length shared by few texts does not cost a forward pass of its
    own. Callers scatter results back by index."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches, start, tokens = [], 0, 0
    for end, i in enumerate(order):
        rows, width = end - start, int(lengths[i])   # sorted: text i is the widest so far
        if rows and (rows == batch_size or width * (rows + 1) - tokens - width > pad_budget):
            batches.append(order[start:end])
            start, tokens = end, 0
        tokens += width
    if start < len(order):
        batches.append(order[start:])
    return batches
