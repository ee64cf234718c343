"""transformers pipelines with hf_ddlm models: fill-mask (one denoising call on the masked
positions) for the absorbing-graph models, and text-generation without the "not supported" log."""

import pytest
import torch
from transformers import pipeline
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from hf_ddlm.data import train_bpe_tokenizer
from hf_ddlm.testing.models import tiny_model


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(["the cat sat on the mat. the dog sat on the log."] * 20, vocab_size=300)


@pytest.mark.parametrize("method", ["mdlm", "sedd", "bd3lm"])
def test_fill_mask_is_one_denoising_call_on_the_masked_positions(tokenizer, method):
    model = tiny_model(method, vocab_size=len(tokenizer))
    calls = []
    model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    text = f"the cat {tokenizer.mask_token} on the mat."
    top = fill(text, top_k=3)
    assert len(calls) == 1 and len(top) == 3
    ids = tokenizer(text, return_tensors="pt").input_ids
    where = (ids[0] == tokenizer.mask_token_id).nonzero()[0, 0]
    t = torch.tensor([1 / ids.shape[1]])
    with torch.no_grad():
        logits = model(input_ids=ids, timesteps=t).logits[0, where].float()
    logits[tokenizer.mask_token_id] = -torch.inf
    probs = logits.softmax(-1)  # p_theta(x0 | x_t) (for SEDD: p0 by RADD's theorem)
    expected = probs.topk(3)
    assert [r["token"] for r in top] == expected.indices.tolist()
    torch.testing.assert_close(torch.tensor([r["score"] for r in top]), expected.values, rtol=1e-5, atol=1e-6)
    assert all(r["token"] != tokenizer.mask_token_id for r in top)


def test_fill_mask_refuses_models_without_a_mask(tokenizer):
    model = tiny_model("sedd", graph="uniform", vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="fill-mask needs a model on the absorbing graph"):
        pipeline("fill-mask", model=model, tokenizer=tokenizer)


def test_fill_mask_refuses_a_tokenizer_with_another_mask(tokenizer):
    model = tiny_model("mdlm", vocab_size=len(tokenizer) + 1)
    with pytest.raises(ValueError, match="mask token is the model's"):
        pipeline("fill-mask", model=model, tokenizer=tokenizer)


@pytest.mark.parametrize("method", ["mdlm", "bd3lm"])
def test_text_generation_pipeline_without_the_not_supported_log(tokenizer, method):
    model = tiny_model(method, vocab_size=len(tokenizer))
    logger = logging.get_logger("transformers.pipelines.base")
    with CaptureLogger(logger) as captured:
        generate = pipeline("text-generation", model=model, tokenizer=tokenizer)
        out = generate("the cat", max_new_tokens=4, num_inference_steps=4)
    assert "not supported" not in captured.out
    assert out[0]["generated_text"].startswith("the cat")
    prompt_len = len(tokenizer("the cat").input_ids)
    assert len(tokenizer(out[0]["generated_text"]).input_ids) >= prompt_len


def test_the_stock_pipelines_still_serve_other_models():
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast  # noqa: F401
    from transformers.pipelines import PIPELINE_REGISTRY

    from hf_ddlm.pipelines import DiffusionFillMaskPipeline

    assert PIPELINE_REGISTRY.supported_tasks["fill-mask"]["impl"] == "hf_ddlm.pipelines.DiffusionFillMaskPipeline"
    config = BertConfig(
        vocab_size=len(_tok := train_bpe_tokenizer(["a b c"] * 5, vocab_size=260)),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
    )
    bert = BertForMaskedLM(config).eval()
    fill = pipeline("fill-mask", model=bert, tokenizer=_tok)
    assert isinstance(fill, DiffusionFillMaskPipeline)
    assert len(fill(f"a {_tok.mask_token} c", top_k=2)) == 2  # transformers' own forward
