"""LoRA (PEFT) on every registered model: documented targets, clear errors, only adapters train,
save/load round trip, merge, and generation through the adapted model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import PeftModel
from torch import nn
from transformers import AutoModel, Trainer, TrainingArguments

from hf_ddlm.peft_utils import (
    LORA_GROUPS,
    check_target_modules,
    get_lora_model,
    load_lora_model,
    lora_config,
    lora_target_modules,
    merge_lora,
)

from .common import clean_ids, find_model, model_params, noisy_inputs, tiny_model

REPO = Path(__file__).resolve().parents[2]


def _logits(model, x_t, timesteps, x0):
    with torch.no_grad():
        # a seeded generator: some losses draw more than t and x_t (CSM samples neighbours)
        out = model(input_ids=x_t, timesteps=timesteps, labels=x0, generator=torch.Generator().manual_seed(0))
    return out.logits, out.loss


@pytest.mark.parametrize("config_class,model_class", model_params())
def test_default_targets_are_the_block_projections(config_class, model_class):
    model = tiny_model(model_class)
    names = lora_target_modules(model)
    modules = dict(model.named_modules())
    assert names and all(isinstance(modules[n], nn.Linear) for n in names)
    head = model.get_output_embeddings()
    assert all(modules[n] is not head for n in names), "the output head must not be a LoRA target"
    assert not any("sigma_map" in n or "adaLN" in n for n in names), names
    # every block contributes its attention and MLP projections
    blocks = {re.search(r"blocks\.(\d+)\.", n).group(1) for n in names if "blocks." in n}
    assert len(blocks) == model.config.num_hidden_layers
    everything = lora_target_modules(model, LORA_GROUPS)
    assert set(names) < set(everything)
    assert any("adaLN" in n for n in everything) and any("sigma_map" in n for n in everything)
    assert check_target_modules(model, names) == sorted(names)


def test_bad_targets_raise_clear_errors():
    _, model_class = find_model("mdlm")
    model = tiny_model(model_class)
    with pytest.raises(ValueError, match=r"\['nope'\] match no module"):
        check_target_modules(model, ["attn_qkv", "nope"])  # PEFT itself would silently ignore 'nope'
    with pytest.raises(ValueError, match="regex .* matches no module"):
        check_target_modules(model, r"blocks\.9\..*")
    with pytest.raises(ValueError, match="cannot wrap.*norm1"):
        check_target_modules(model, ["norm1"])
    with pytest.raises(ValueError, match="groups must be taken from"):
        lora_target_modules(model, ["attention", "heads"])
    with pytest.raises(ValueError, match="task_type must be left unset"):
        lora_config(model, task_type="CAUSAL_LM")
    with pytest.raises(ValueError, match="match no module"):
        get_lora_model(model, target_modules=["attn_qkv", "q_proj"])
    # the message names the modules that do exist, with block indices collapsed
    with pytest.raises(ValueError, match=r"backbone\.blocks\.\*\.attn_qkv"):
        check_target_modules(model, ["q_proj"])


@pytest.mark.parametrize("config_class,model_class", model_params())
def test_only_adapter_weights_train(config_class, model_class):
    model = tiny_model(model_class).train()
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = get_lora_model(model, r=4, lora_alpha=8)
    assert isinstance(peft_model, PeftModel) and peft_model.peft_config["default"].task_type is None
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # the optimizer is handed every parameter: freezing, not the optimizer, keeps the base fixed
    opt = torch.optim.AdamW(peft_model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = clean_ids(model, batch=8, seed=1)
    for step in range(3):
        loss = peft_model(input_ids=ids, labels=ids, generator=torch.Generator().manual_seed(step)).loss
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        opt.zero_grad()
    base = peft_model.get_base_model()
    for name, p in base.named_parameters():
        if "lora_" in name:
            continue
        clean_name = name.replace(".base_layer", "")
        assert torch.equal(p, base_before[clean_name]), f"base weight {clean_name} changed"
    lora_b = [p for n, p in base.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero and must have moved"


def test_trainer_trains_a_peft_model(tmp_path):
    _, model_class = find_model("mdlm")
    peft_model = get_lora_model(tiny_model(model_class).train(), r=4, lora_alpha=8)
    ids = clean_ids(peft_model.get_base_model(), batch=16, seed=1).tolist()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        label_names=["labels"],
        logging_steps=1,
    )
    trainer = Trainer(model=peft_model, args=args, train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids}))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    # Trainer.save_model on a PeftModel writes the adapter only
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "adapter_config.json").is_file()
    assert not (tmp_path / "saved" / "model.safetensors").exists()


def _adapted(model_class, seed=0):
    """A tiny model with a non-trivial (randomly initialised) adapter."""
    model = tiny_model(model_class, seed=seed)
    return get_lora_model(model, r=4, lora_alpha=8, init_lora_weights=False)


@pytest.mark.parametrize("config_class,model_class", model_params())
def test_adapter_round_trip_merge_and_generate(config_class, model_class, tmp_path):
    base = tiny_model(model_class)
    base.save_pretrained(tmp_path / "base")
    x_t, timesteps, x0 = noisy_inputs(base)
    base_logits, _ = _logits(base, x_t, timesteps, x0)

    peft_model = get_lora_model(base, r=4, lora_alpha=8, init_lora_weights=False).eval()
    adapted_logits, adapted_loss = _logits(peft_model, x_t, timesteps, x0)
    assert not torch.allclose(adapted_logits, base_logits), "the adapter changes nothing"
    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    # round trip: a fresh copy of the base + the saved adapter gives identical outputs
    fresh = AutoModel.from_pretrained(tmp_path / "base")
    loaded = load_lora_model(fresh, tmp_path / "adapter").eval()
    loaded_logits, loaded_loss = _logits(loaded, x_t, timesteps, x0)
    assert torch.equal(loaded_logits, adapted_logits) and torch.equal(loaded_loss, adapted_loss)

    # generation goes through the adapter, reproducibly, and disable_adapter gives the base back
    kw = {"max_length": base.config.max_position_embeddings, "num_inference_steps": 6, "seed": 3}
    sample = peft_model.generate(**kw)
    assert torch.equal(loaded.generate(**kw), sample)
    with peft_model.disable_adapter():
        no_adapter = peft_model.generate(**kw)
    plain = AutoModel.from_pretrained(tmp_path / "base").eval()
    assert torch.equal(no_adapter, plain.generate(**kw))

    # merged equals unmerged (up to float rounding of W + BA)
    merged = merge_lora(loaded)
    assert not isinstance(merged, PeftModel) and not any("lora_" in n for n, _ in merged.named_parameters())
    merged_logits, merged_loss = _logits(merged, x_t, timesteps, x0)
    torch.testing.assert_close(merged_logits, adapted_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged_loss, adapted_loss, rtol=1e-5, atol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModel.from_pretrained(tmp_path / "merged")
    assert torch.equal(_logits(reloaded, x_t, timesteps, x0)[0], merged_logits)


def test_example_finetunes_on_a_local_text_file(tmp_path):
    spec = importlib.util.spec_from_file_location("finetune_lora", REPO / "examples" / "finetune_lora.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    text = tmp_path / "corpus.txt"
    text.write_text(
        " ".join(f"the {w} sat on the mat and the dog barked at the {w}." for w in ("cat", "fox", "owl", "bee") * 60)
    )
    out = tmp_path / "out"
    result = example.main(
        [
            "--text",
            str(text),
            "--output-dir",
            str(out),
            "--seq-len",
            "16",
            "--steps",
            "3",
            "--pretrain-steps",
            "3",
            "--batch-size",
            "4",
            "--eval-samples",
            "1",
            "--sample-steps",
            "4",
        ]
    )
    assert 0 < result["trainable"] < result["total"] / 5
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = AutoModel.from_pretrained(out / "merged")
    assert merged.config.max_position_embeddings == 16
    assert torch.isfinite(torch.tensor([result["perplexity_before"], result["perplexity_after"]])).all()
