"""Bad input fails early with a ValueError that names the argument (and nothing is silently
clamped, cast or ignored)."""

from __future__ import annotations

import pytest
import torch

import hf_ddlm  # noqa: F401
from hf_ddlm import DiffusionGenerationConfig, MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM
from hf_ddlm.testing import tiny_config

V = 13
MASK = V - 1


@pytest.fixture(scope="module")
def mdlm():
    torch.manual_seed(0)
    return MDLMForDiffusionLM(tiny_config(MDLMForDiffusionLM)).eval()


@pytest.fixture(scope="module")
def sedd():
    torch.manual_seed(0)
    return SEDDForDiffusionLM(tiny_config(SEDDForDiffusionLM)).eval()


@pytest.fixture(params=["sedd", "mdlm"])
def model(request, sedd, mdlm):
    return {"sedd": sedd, "mdlm": mdlm}[request.param]


X = torch.tensor([[1, 2, MASK, 4], [MASK, 6, 7, MASK]])
CLEAN = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])


# --- token ids ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [V, V + 5, -1])
def test_input_ids_outside_the_vocabulary(model, bad_id):
    ids = X.clone()
    ids[0, 1] = bad_id
    with pytest.raises(ValueError, match="input_ids"):
        model(input_ids=ids, timesteps=0.5)
    prompt = CLEAN.clone()
    prompt[0, 1] = bad_id
    with pytest.raises(ValueError, match="input_ids has ids outside"):
        model.generate(input_ids=prompt, max_new_tokens=2, num_inference_steps=2)


@pytest.mark.parametrize("bad_id", [V, -2])
def test_labels_outside_the_vocabulary(model, bad_id):
    labels = CLEAN.clone()
    labels[1, 0] = bad_id
    with pytest.raises(ValueError, match="labels"):
        model(input_ids=X, timesteps=0.5, labels=labels)
    with pytest.raises(ValueError, match="labels"):
        model(labels=labels)


def test_ignored_labels_are_allowed(model):
    labels = CLEAN.masked_fill(torch.tensor([[True, False, False, False], [False] * 4]), -100)
    assert torch.isfinite(model(input_ids=X, timesteps=0.5, labels=labels).loss)


def test_mask_token_in_labels(model):
    labels = CLEAN.clone()
    labels[0, 2] = MASK
    with pytest.raises(ValueError, match="labels.*mask"):
        model(input_ids=X, timesteps=0.5, labels=labels)


def test_mask_token_in_a_prompt(model):
    prompt = torch.tensor([[1, MASK, 3]])
    with pytest.raises(ValueError, match="input_ids.*mask"):
        model.generate(input_ids=prompt, max_new_tokens=3, num_inference_steps=2)
    # ... and at a position infilling keeps fixed
    with pytest.raises(ValueError, match="input_ids.*mask"):
        model.generate(input_ids=prompt, infill_mask=torch.tensor([[True, False, True]]), num_inference_steps=2)


def test_non_integer_ids(model):
    with pytest.raises(ValueError, match="input_ids"):
        model(input_ids=X.float(), timesteps=0.5)
    with pytest.raises(ValueError, match="input_ids"):
        model.generate(input_ids=CLEAN.float(), max_new_tokens=2, num_inference_steps=2)
    with pytest.raises(ValueError, match="input_ids"):
        model.generate(input_ids=CLEAN[0], max_new_tokens=2, num_inference_steps=2)  # not [batch, length]


# --- lengths --------------------------------------------------------------------------------
@pytest.mark.parametrize("max_length", [3, 4])
def test_prompt_not_shorter_than_the_generation_length(model, max_length):
    with pytest.raises(ValueError, match="max_length"):
        model.generate(input_ids=CLEAN, max_length=max_length, num_inference_steps=2)


@pytest.mark.parametrize(
    "name,value",
    [
        ("max_length", 0),
        ("max_length", 2.5),
        ("max_new_tokens", 0),
        ("max_new_tokens", -3),
        ("num_return_sequences", 0),
    ],
)
def test_non_positive_lengths(model, name, value):
    kwargs = {"max_length": 6, name: value}
    with pytest.raises(ValueError, match=name):
        model.generate(input_ids=CLEAN if name == "max_new_tokens" else None, num_inference_steps=2, **kwargs)


def test_infill_mask_shape_and_length(model):
    with pytest.raises(ValueError, match="infill_mask"):
        model.generate(input_ids=CLEAN, infill_mask=torch.ones(2, 3, dtype=torch.bool), num_inference_steps=2)
    with pytest.raises(ValueError, match="infill_mask"):
        model.generate(
            input_ids=CLEAN, infill_mask=torch.ones(2, 4, dtype=torch.bool), max_new_tokens=3, num_inference_steps=2
        )


# --- steps and times ------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [0, -4, 2.0, 2.5, True, "8"])
def test_num_inference_steps_must_be_a_positive_int(model, steps):
    with pytest.raises(ValueError, match="num_inference_steps"):
        model.generate(max_length=4, num_inference_steps=steps)


@pytest.mark.parametrize("t_min", [0.0, 1.0, -1e-3])
def test_t_min_outside_the_unit_interval(model, t_min):
    with pytest.raises(ValueError, match="t_min"):
        model.generate(max_length=4, num_inference_steps=2, t_min=t_min)


@pytest.mark.parametrize("timesteps", [-0.1, 1.5, float("nan"), torch.tensor([0.5, 1.01])])
def test_timesteps_outside_zero_one(model, timesteps):
    with pytest.raises(ValueError, match="timesteps"):
        model(input_ids=X, timesteps=timesteps)


@pytest.mark.parametrize(
    "timesteps", [torch.tensor([0.5, 0.5, 0.5]), torch.tensor([[0.5], [0.5]]), torch.full((2, 4), 0.5)]
)
def test_timesteps_of_the_wrong_shape(model, timesteps):
    with pytest.raises(ValueError, match="timesteps"):
        model(input_ids=X, timesteps=timesteps)


def test_timesteps_are_required_without_labels(model):
    with pytest.raises(ValueError, match="timesteps"):
        model(input_ids=X)


# --- masks ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "attention_mask",
    [
        torch.ones(2, 3),
        torch.ones(1, 4),
        torch.ones(2, 4, 1),
        torch.ones(4),
        torch.ones(2, 1, 4, 3, dtype=torch.bool),  # 4-D: keys must match the length
        torch.ones(3, 1, 4, 4, dtype=torch.bool),  # 4-D: batch must be 1 or the batch
    ],
)
def test_attention_mask_of_the_wrong_shape_in_forward(model, attention_mask):
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=X, timesteps=0.5, attention_mask=attention_mask)


def test_attention_mask_of_the_wrong_shape_in_generate(model):
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(input_ids=CLEAN, attention_mask=torch.ones(2, 3), max_new_tokens=2, num_inference_steps=2)
    with pytest.raises(ValueError, match="attention_mask"):  # a padding mask without a prompt
        model.generate(attention_mask=torch.ones(1, 4), max_length=4, num_inference_steps=2)


# --- names in configs -----------------------------------------------------------------------
@pytest.mark.parametrize("config_class", [SEDDConfig, MDLMConfig])
@pytest.mark.parametrize(
    "field,value", [("graph", "gaussian"), ("noise_schedule", "sqrt-ish"), ("loss_reduction", "mean")]
)
def test_unknown_names_in_a_config(config_class, field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(config_class, **{field: value})


def test_unknown_names_in_a_saved_config(tmp_path):
    SEDDConfig(**{**tiny_kwargs(), "graph": "uniform", "noise_schedule": "geometric"}).save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"geometric"', '"sqrt-ish"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="noise_schedule"):
        SEDDConfig.from_pretrained(tmp_path)


def tiny_kwargs():
    return dict(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        cond_dim=16,
        max_position_embeddings=16,
    )


def test_unknown_sampler(model):
    with pytest.raises(ValueError, match="sampler"):
        model.generate(max_length=4, num_inference_steps=2, sampler="dpm-solver")
    with pytest.raises(ValueError, match="sampler"):
        model.generate(
            max_length=4, generation_config=DiffusionGenerationConfig(sampler="dpm-solver", num_inference_steps=2)
        )


def test_unknown_sampler_in_a_saved_generation_config(sedd, tmp_path):
    sedd.save_pretrained(tmp_path)
    text = (tmp_path / "generation_config.json").read_text().replace('"analytic"', '"dpm-solver"')
    (tmp_path / "generation_config.json").write_text(text)
    loaded = SEDDForDiffusionLM.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="sampler"):
        loaded.generate(max_length=4, num_inference_steps=2)


def test_sampler_that_reads_another_output(sedd, mdlm):
    with pytest.raises(ValueError, match="sampler"):
        mdlm.generate(max_length=4, num_inference_steps=2, sampler="analytic")
    with pytest.raises(ValueError, match="sampler"):
        sedd.generate(max_length=4, num_inference_steps=2, sampler="ancestral")


def test_bad_sampler_kwargs(mdlm):
    with pytest.raises(ValueError, match="move_chance"):
        mdlm.generate(max_length=4, num_inference_steps=2, sampler_kwargs={"move_chance": "cosine"})
    with pytest.raises(ValueError, match="sampler_kwargs"):
        mdlm.generate(max_length=4, num_inference_steps=2, sampler_kwargs={"eta": 0.1})


def test_scale_by_sigma_with_the_uniform_graph():
    with pytest.raises(ValueError, match="scale_by_sigma"):
        tiny_config(SEDDConfig, graph="uniform", scale_by_sigma=True)
    assert tiny_config(SEDDConfig, graph="uniform").scale_by_sigma is False  # the default follows the graph


def test_mdlm_needs_the_absorbing_graph():
    with pytest.raises(ValueError, match="graph"):
        tiny_config(MDLMConfig, graph="uniform")


def test_mask_token_must_be_the_last_id():
    with pytest.raises(ValueError, match="mask_token_id"):
        tiny_config(MDLMConfig, mask_token_id=0)
    with pytest.raises(ValueError, match="mask_token_id"):
        tiny_config(SEDDConfig, graph="uniform", mask_token_id=V - 1)


# --- sampling filters and other generate arguments ------------------------------------------
@pytest.mark.parametrize(
    "name,value", [("temperature", 0.0), ("temperature", -1.0), ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5)]
)
def test_bad_filters(model, name, value):
    with pytest.raises(ValueError, match=name):
        model.generate(max_length=4, num_inference_steps=2, **{name: value})


def test_filters_need_a_clean_token_distribution():
    model = SEDDForDiffusionLM(tiny_config(SEDDForDiffusionLM, graph="uniform")).eval()
    with pytest.raises(ValueError, match="top_k"):
        model.generate(max_length=4, num_inference_steps=2, top_k=3)


def test_seed_and_generator_together(model):
    with pytest.raises(ValueError, match="seed"):
        model.generate(max_length=4, num_inference_steps=2, seed=0, generator=torch.Generator().manual_seed(0))


def test_unknown_generate_argument(model):
    with pytest.raises(ValueError, match="num_steps"):
        model.generate(max_length=4, num_steps=2)


def test_negative_elbo_arguments(model):
    with pytest.raises(ValueError, match="num_samples"):
        model.negative_elbo(CLEAN, num_samples=0)
    with pytest.raises(ValueError, match="t_min"):
        model.negative_elbo(CLEAN, t_min=1.0)
    with pytest.raises(ValueError, match="input_ids"):
        model.negative_elbo(CLEAN.masked_fill(CLEAN == 2, MASK))
