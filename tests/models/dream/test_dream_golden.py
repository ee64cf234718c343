"""Dream checkpoints load as MDLM on a Qwen2 backbone with shifted prediction, with the official
code's logits and generations.

Goldens: ``tests/fixtures/dream`` (how they were made: ``tests/fixtures/README.md``) is a Dream folder
in the official on-disk format (config.json, generation_config.json and bf16 safetensors written by
the official classes: a random 2-layer hidden=64 GQA model, vocabulary 300, mask 288 inside it).
``golden.safetensors`` holds what the official code computed in fp32 on CPU: ``modeling_dream.py``,
``configuration_dream.py`` and ``generation_utils.py`` of the Hub's Dream-org/Dream-v0-Base-7B as
vendored unchanged in megumi-ben/dlm-infra-rag @ 69efbab2da8428895fed390d0a29047563c1fea0
(``dream/model_origin``), transformers 4.46.2: the (unshifted) logits of ``DreamModel`` at
``input_ids`` holding masks, and ``diffusion_generate`` with ``alg="entropy"`` and
``alg="maskgit_plus"``, temperature 0, ``alg_temp=0``.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.models.mdlm import convert_official_mdlm

FOLDER = Path(__file__).parents[2] / "fixtures" / "dream"
MASK = 288


@pytest.fixture(scope="module")
def golden():
    return load_file(FOLDER / "golden.safetensors")


@pytest.fixture(scope="module")
def model():
    return AutoModel.from_pretrained(FOLDER, dtype=torch.float32).eval()


def shifted(logits):
    """Dream's generation reads position i's prediction from the logits at i - 1 (0 from its own)."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def test_config_maps_to_mdlm_on_qwen2():
    config = MDLMConfig.from_pretrained(FOLDER)
    backbone = config.backbone_config
    assert backbone.model_type == "qwen2" and config.shifted_prediction
    assert (config.vocab_size, config.mask_token_id, backbone.hidden_size) == (300, MASK, 64)
    assert (backbone.num_attention_heads, backbone.num_key_value_heads, backbone.intermediate_size) == (4, 2, 96)
    assert backbone.rope_parameters["rope_theta"] == 1e6 and backbone.rms_norm_eps == 1e-6
    assert config.pad_token_id == 290 and config.eos_token_id == 290


def test_logits_equal_the_official_shifted(model, golden):
    """The backbone's logits are the official DreamModel logits shifted by one position (bitwise here;
    1e-5 asserted); the model's output is their log-softmax over clean tokens at masked positions."""
    assert type(model) is MDLMForDiffusionLM
    ids = golden["input_ids"]
    with torch.no_grad():
        raw = model.backbone(ids)
        out = model(input_ids=ids, timesteps=torch.full((ids.shape[0],), 0.5)).logits
    expected_raw = shifted(golden["logits"])
    torch.testing.assert_close(raw, expected_raw, rtol=0, atol=1e-5)
    clean = torch.arange(300) != MASK
    masked = ids == MASK
    expected = expected_raw[..., clean].log_softmax(-1)
    torch.testing.assert_close(out[..., clean][masked], expected[masked], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "case, ordering, steps",
    [
        ("generate_entropy", "entropy", 6),
        ("generate_maskgit_plus", "top_prob", 6),
        ("generate_entropy_steps12", "entropy", 12),
    ],
)
def test_generate_equals_official_diffusion_generate(model, golden, case, ordering, steps):
    """``alg="entropy"`` / ``"maskgit_plus"`` at temperature 0 are the confidence sampler with the entropy /
    top-probability ordering, argmax proposals and Dream's count per step, int(n (1 - s / t)), on the
    grid linspace(1, 1e-3)."""
    kwargs = {"ordering": ordering, "deterministic": True, "allocation": "linear"}
    out = model.generate(golden["prompt"], max_new_tokens=12, num_inference_steps=steps, sampler_kwargs=kwargs)
    assert torch.equal(out, golden[case])


def test_default_generation_is_entropy_ordered(model, golden):
    gc = model.generation_config
    assert gc.sampler == "confidence"
    assert gc.sampler_kwargs == {"ordering": "entropy", "deterministic": True, "allocation": "linear"}
    assert (gc.num_inference_steps, gc.t_min, gc.max_new_tokens) == (512, 1e-3, 512)
    assert (gc.bos_token_id, gc.eos_token_id, gc.pad_token_id) == (289, 290, 290)
    # the defaults with the golden's length and steps: the official entropy run
    assert torch.equal(
        model.generate(golden["prompt"], max_new_tokens=12, num_inference_steps=6), golden["generate_entropy"]
    )


def test_convert_writes_our_layout(tmp_path, golden):
    out = convert_official_mdlm(FOLDER, tmp_path / "converted")
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "mdlm" and saved["shifted_prediction"] is True
    model = AutoModel.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(golden["input_ids"]), shifted(golden["logits"]), rtol=0, atol=1e-5)


def test_missing_and_misshaped_weights_are_named(tmp_path):
    folder = tmp_path / "dream"
    shutil.copytree(FOLDER, folder)
    state = load_file(folder / "model.safetensors")
    del state["lm_head.weight"]
    state["model.layers.1.self_attn.v_proj.bias"] = torch.zeros(64, dtype=torch.bfloat16)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError) as error:
        AutoModel.from_pretrained(folder)
    message = str(error.value)
    assert "not a valid Dream checkpoint" in message and "missing keys: lm_head.weight" in message
    assert "model.layers.1.self_attn.v_proj.bias (checkpoint (64,), config (32,))" in message


def test_unsupported_options_are_named():
    official = json.loads((FOLDER / "config.json").read_text())
    with pytest.raises(ValueError, match=r"Dream config: use_sliding_window=True is not supported"):
        MDLMConfig.from_dict({**official, "use_sliding_window": True})
    with pytest.raises(ValueError, match=r"Dream config: rope_scaling="):
        MDLMConfig.from_dict({**official, "rope_scaling": {"type": "linear", "factor": 2.0}})


def test_trust_remote_code_is_not_intercepted(tmp_path):
    """With trust_remote_code=True the official code is what the user asked for: MDLM does not
    read the folder as its own."""
    with pytest.raises(ValueError, match="model_type 'Dream'"):
        MDLMForDiffusionLM.from_pretrained(FOLDER, trust_remote_code=True)


# generation_config.json as the official DreamGenerationConfig(alg="maskgit_plus", steps=6,
# max_new_tokens=12, special tokens).save_pretrained writes it (transformers 4.46.2)
OFFICIAL_GENERATION_CONFIG = {
    "alg": "maskgit_plus",
    "alg_temp": None,
    "bos_token_id": 289,
    "eos_token_id": 290,
    "eps": 0.001,
    "mask_token_id": 288,
    "max_new_tokens": 12,
    "output_history": False,
    "pad_token_id": 290,
    "steps": 6,
    "temperature": 0.0,
    "top_k": None,
    "top_p": None,
    "transformers_version": "4.46.2",
}


def _with_generation_config(tmp_path, config):
    folder = tmp_path / "dream"
    shutil.copytree(FOLDER, folder)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


def test_dream_generation_config_is_read(tmp_path, golden):
    """A folder's DreamGenerationConfig (alg, steps, eps, max_new_tokens, temperature) becomes ours: here
    maskgit_plus over 6 steps, which then reproduces the official run with no argument."""
    model = AutoModel.from_pretrained(
        _with_generation_config(tmp_path, OFFICIAL_GENERATION_CONFIG), dtype=torch.float32
    )
    gc = model.generation_config
    assert gc.sampler_kwargs == {"ordering": "top_prob", "deterministic": True, "allocation": "linear"}
    assert (gc.num_inference_steps, gc.t_min, gc.max_new_tokens) == (6, 0.001, 12)
    assert torch.equal(model.generate(golden["prompt"]), golden["generate_maskgit_plus"])


def test_dream_generation_config_origin_and_errors(tmp_path):
    origin = MDLMForDiffusionLM.from_pretrained(
        _with_generation_config(tmp_path, {**OFFICIAL_GENERATION_CONFIG, "alg": "origin", "temperature": 0.2})
    )
    gc = origin.generation_config
    assert gc.sampler == "ancestral" and gc.sampler_kwargs == {"move_chance": "linear"} and gc.temperature == 0.2
    with pytest.raises(ValueError, match=r"Dream generation config: alg_temp=0\.5 .* is not supported"):
        MDLMForDiffusionLM.from_pretrained(
            _with_generation_config(tmp_path / "b", {**OFFICIAL_GENERATION_CONFIG, "alg_temp": 0.5})
        )
    with pytest.raises(ValueError, match=r"Dream generation config: alg must be one of .*got 'beam'"):
        MDLMForDiffusionLM.from_pretrained(
            _with_generation_config(tmp_path / "c", {**OFFICIAL_GENERATION_CONFIG, "alg": "beam"})
        )
