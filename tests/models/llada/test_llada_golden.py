"""LLaDA checkpoints load as MDLM on a Llama backbone, with the official code's logits and generations.

Goldens: ``tests/fixtures/llada`` (how they were made: ``tests/fixtures/README.md``) is a LLaDA folder
in the official on-disk format (config.json and bf16 safetensors written by the official
``LLaDAModelLM.save_pretrained``, a random 2-layer d_model=64 GQA model, vocabulary 300, mask 288
inside it). ``golden.safetensors`` holds what the official code computed in fp32 on CPU:
``modeling_llada.py`` of ML-GSAI/LLaDA @ 59750478f2aa17978d636bc61dd00b1574986b4a (the repo's copy of
the Hub file) with ``configuration_llada.py`` as vendored in ZHZisZZ/dllm @ 03270de7 (the Hub copy),
``generate.py`` of ML-GSAI/LLaDA @ b7e6c3565f194352da44b38dd12b6970597309f3, transformers 4.46.2:
the logits of ``LLaDAModelLM`` at ``input_ids`` holding masks, and ``generate()`` (low-confidence
remasking, temperature 0) with semi-autoregressive blocks.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.generation import DiffusionGenerationConfig
from hf_ddlm.models.mdlm import convert_official_mdlm

FOLDER = Path(__file__).parents[2] / "fixtures" / "llada"
MASK = 288


@pytest.fixture(scope="module")
def golden():
    return load_file(FOLDER / "golden.safetensors")


@pytest.fixture(scope="module")
def model():
    return MDLMForDiffusionLM.from_pretrained(FOLDER, dtype=torch.float32).eval()


def test_config_maps_to_mdlm_on_llama():
    config = MDLMConfig.from_pretrained(FOLDER)
    backbone = config.backbone_config
    assert backbone.model_type == "llama" and not config.shifted_prediction
    assert (config.vocab_size, config.mask_token_id, backbone.hidden_size) == (300, MASK, 64)
    assert (backbone.num_attention_heads, backbone.num_key_value_heads, backbone.intermediate_size) == (4, 2, 96)
    assert backbone.rope_parameters["rope_theta"] == 500000.0 and backbone.rms_norm_eps == 1e-5
    assert not backbone.tie_word_embeddings and not config.time_conditioning
    assert type(AutoConfig.from_pretrained(FOLDER)) is MDLMConfig  # no remote code


def test_logits_equal_the_official(model, golden):
    """The backbone's logits are the official LLaDAModelLM logits (bitwise here; 1e-5 asserted), and
    the model's output is their log-softmax over clean tokens at masked positions (SUBS)."""
    ids = golden["input_ids"]
    with torch.no_grad():
        raw = model.backbone(ids)
        out = model(input_ids=ids, timesteps=torch.full((ids.shape[0],), 0.5)).logits
    torch.testing.assert_close(raw, golden["logits"], rtol=0, atol=1e-5)
    clean = torch.arange(300) != MASK
    expected = golden["logits"][..., clean].log_softmax(-1)
    masked = ids == MASK
    torch.testing.assert_close(out[..., clean][masked], expected[masked], rtol=0, atol=1e-5)
    assert (out[..., MASK] < -1e5).all()


def test_auto_model_loads_without_remote_code(golden):
    model = AutoModel.from_pretrained(FOLDER, dtype=torch.float32)
    assert type(model) is MDLMForDiffusionLM
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(golden["input_ids"]), golden["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("case, steps, block_length", [("generate_blocks", 8, 8), ("generate_one_block", 16, 16)])
def test_generate_equals_official_low_confidence_remasking(model, golden, case, steps, block_length):
    """The published default (confidence sampler, top_prob ordering, argmax proposals, even counts per
    block) equals ``generate.py``'s ``generate(..., remasking="low_confidence", temperature=0)``."""
    out = model.generate(golden["prompt"], num_inference_steps=steps, max_new_tokens=16, block_length=block_length)
    assert torch.equal(out, golden[case])


def test_default_generation_config_is_the_published_sampler(model):
    gc = model.generation_config
    assert isinstance(gc, DiffusionGenerationConfig)
    assert gc.sampler == "confidence" and gc.sampler_kwargs == {"ordering": "top_prob", "deterministic": True}
    assert (gc.num_inference_steps, gc.block_length, gc.max_new_tokens) == (128, 32, 128)
    assert gc.eos_token_id == 290 and gc.pad_token_id == 290


def test_convert_writes_our_layout(tmp_path, golden):
    out = convert_official_mdlm(FOLDER, tmp_path / "converted")
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "mdlm" and saved["backbone_config"]["model_type"] == "llama"
    assert "auto_map" not in saved or "configuration_llada" not in json.dumps(saved["auto_map"])
    model = AutoModel.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(golden["input_ids"]), golden["logits"], rtol=0, atol=1e-5)
    assert model.generation_config.sampler == "confidence" and model.generation_config.block_length == 32


def _copy_with(tmp_path, edit):
    folder = tmp_path / "llada"
    shutil.copytree(FOLDER, folder)
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_missing_weight_is_named(tmp_path):
    folder = _copy_with(tmp_path, lambda s: s.pop("model.transformer.blocks.1.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing keys: model\.transformer\.blocks\.1\.up_proj\.weight"):
        MDLMForDiffusionLM.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"not a valid LLaDA checkpoint"):
        AutoModel.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"missing keys: model\.transformer\.blocks\.1\.up_proj\.weight"):
        convert_official_mdlm(folder, tmp_path / "out")


def test_misshaped_and_unexpected_weights_are_named(tmp_path):
    def edit(state):
        state["model.transformer.blocks.0.k_proj.weight"] = torch.zeros(64, 64, dtype=torch.bfloat16)
        state["model.transformer.extra.weight"] = torch.zeros(2, dtype=torch.bfloat16)

    folder = _copy_with(tmp_path, edit)
    with pytest.raises(ValueError) as error:
        MDLMForDiffusionLM.from_pretrained(folder)
    message = str(error.value)
    assert "unexpected keys: model.transformer.extra.weight" in message
    assert "model.transformer.blocks.0.k_proj.weight (checkpoint (64, 64), config (32, 64))" in message


@pytest.mark.parametrize(
    "field, value", [("block_type", "sequential"), ("alibi", True), ("include_qkv_bias", True), ("scale_logits", True)]
)
def test_unsupported_architecture_option_is_named(field, value):
    official = json.loads((FOLDER / "config.json").read_text())
    official[field] = value
    with pytest.raises(ValueError, match=rf"LLaDA config: {field}={value!r} is not supported"):
        MDLMConfig.from_dict(official)


def test_sharded_checkpoint_loads(tmp_path, golden):
    """The published 8B folders are sharded (model.safetensors.index.json): the check and the renaming
    read every shard."""
    folder = tmp_path / "sharded"
    shutil.copytree(FOLDER, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / file, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: file for file, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(golden["input_ids"]), golden["logits"], rtol=0, atol=1e-5)
    converted = AutoModel.from_pretrained(convert_official_mdlm(folder, tmp_path / "converted"), dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(converted.backbone(golden["input_ids"]), golden["logits"], rtol=0, atol=1e-5)


def test_tied_output_head(tmp_path):
    """weight_tying=True: no transformer.ff_out in the folder; the head is the embedding."""
    folder = tmp_path / "tied"
    shutil.copytree(FOLDER, folder)
    state = load_file(folder / "model.safetensors")
    del state["model.transformer.ff_out.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "weight_tying": True}))
    model = MDLMForDiffusionLM.from_pretrained(folder, dtype=torch.float32)
    assert model.backbone.lm_head.weight is model.backbone.get_input_embeddings().weight
    torch.testing.assert_close(model.backbone.lm_head.weight, state["model.transformer.wte.weight"].float())


def test_save_pretrained_round_trip(model, golden, tmp_path):
    model.save_pretrained(tmp_path / "ours")
    again = AutoModel.from_pretrained(tmp_path / "ours", dtype=torch.float32)
    assert again.config.mask_token_id == MASK and again.generation_config.block_length == 32
    with torch.no_grad():
        torch.testing.assert_close(again.backbone(golden["input_ids"]), golden["logits"], rtol=0, atol=1e-5)
