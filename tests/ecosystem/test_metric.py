"""The ``evaluate`` metric ``metrics/nelbo_perplexity``: loadable offline with ``evaluate.load(path)``."""

from __future__ import annotations

import math
from pathlib import Path

import evaluate
import pytest
import torch

from hf_ddlm.likelihood import perplexity_bound

from .common import find_model, tiny_model, word_tokenizer

METRIC = str(Path(__file__).resolve().parents[2] / "metrics" / "nelbo_perplexity")


@pytest.fixture
def metric():
    # a local folder: no Hub access (the suite runs with HF_HUB_OFFLINE=1)
    return evaluate.load(METRIC)


def test_perplexity_is_exp_of_nats_per_token(metric):
    nelbo, tokens = [2.0, 4.0, 3.5], [2, 2, 3]
    result = metric.compute(nelbo=nelbo, num_tokens=tokens)
    assert result["num_tokens"] == 7 and result["nelbo"] == pytest.approx(9.5)
    assert result["nats_per_token"] == pytest.approx(9.5 / 7)
    assert result["perplexity"] == pytest.approx(math.exp(9.5 / 7))
    assert result["bits_per_token"] == pytest.approx(9.5 / 7 / math.log(2))
    # add_batch accumulates exactly like one call
    for n, k in zip(nelbo, tokens):
        metric.add_batch(nelbo=[n], num_tokens=[k])
    assert metric.compute() == result


def test_texts_scored_with_a_model_match_the_library(tmp_path):
    metric = evaluate.load(METRIC, "texts")
    _, mdlm = find_model("mdlm")
    model = tiny_model(mdlm)
    tokenizer = word_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    texts = ["w2 w3 w4 w5 w6 w7", "w8 w9 w10 w11 w2 w3", "w4 w4 w5 w5 w6 w6"]
    result = metric.compute(
        predictions=texts, model_id=str(tmp_path), num_samples=3, batch_size=2, seed=7, device="cpu"
    )
    ids = torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts])
    expected = perplexity_bound(model, ids, batch_size=2, num_samples=3, generator=torch.Generator().manual_seed(7))
    assert result["num_tokens"] == expected.num_tokens == 18
    assert result["perplexity"] == pytest.approx(expected.perplexity, rel=1e-5)


def test_bad_inputs(metric):
    with pytest.raises(ValueError, match="Mismatch in the number of nelbo"):
        metric.compute(nelbo=[1.0, 2.0], num_tokens=[3])
    with pytest.raises(ValueError, match="sums to 0"):
        metric.compute(nelbo=[0.0], num_tokens=[0])
    with pytest.raises(ValueError, match="model_id is required"):
        evaluate.load(METRIC, "texts").compute(predictions=["w2 w3"])
