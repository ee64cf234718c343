"""Bad input fails early with a ValueError that names the argument (and nothing is silently
clamped, cast or ignored)."""

from __future__ import annotations

import re
import shutil
import warnings

import pytest
import torch

import hf_ddlm  # noqa: F401
from hf_ddlm import DiffusionGenerationConfig, MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM
from hf_ddlm.testing import MODELS, tiny_config, tiny_model

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


# --- shapes: empty, 1-D / 3-D, positions (every method) --------------------------------------
@pytest.fixture(scope="module")
def every_model():
    return {method: tiny_model(method) for method in MODELS}


METHODS = sorted(MODELS)
EMPTY = [torch.zeros(0, 4, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ids", EMPTY, ids=["B=0", "L=0"])
def test_empty_batches(every_model, method, ids):
    model = every_model[method]
    with pytest.raises(ValueError, match=r"input_ids is empty .* batch size and length must be >= 1"):
        model(input_ids=ids, timesteps=0.5)
    with pytest.raises(ValueError, match=r"labels is empty"):
        model(labels=ids)
    with pytest.raises(ValueError, match=r"input_ids is empty"):
        model.generate(input_ids=ids, max_new_tokens=4, num_inference_steps=2)
    if getattr(model, "has_likelihood_bound", True):
        with pytest.raises(ValueError, match=r"input_ids is empty"):
            model.negative_elbo(ids)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ids", [torch.arange(4), torch.zeros(2, 4, 1, dtype=torch.long)], ids=["1-D", "3-D"])
def test_input_ids_must_be_two_dimensional(every_model, method, ids):
    model = every_model[method]
    message = rf"must be \[batch, length\] \(2-D\), got shape {re.escape(str(tuple(ids.shape)))}"
    with pytest.raises(ValueError, match="input_ids " + message):
        model(input_ids=ids, timesteps=0.5)
    with pytest.raises(ValueError, match="labels " + message):
        model(labels=ids)
    with pytest.raises(ValueError, match="input_ids " + message):
        model.generate(input_ids=ids, max_new_tokens=4, num_inference_steps=2)
    if getattr(model, "has_likelihood_bound", True):
        with pytest.raises(ValueError, match="input_ids " + message):
            model.negative_elbo(ids)


def test_input_ids_must_be_a_tensor(model):
    with pytest.raises(ValueError, match="input_ids must be a torch.Tensor"):
        model(input_ids=X.tolist(), timesteps=0.5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "position_ids",
    [torch.arange(3), torch.arange(5)[None].expand(2, 5), torch.arange(4)[None].expand(3, 4), torch.zeros(2, 4, 1)],
)
def test_position_ids_of_the_wrong_shape(every_model, method, position_ids):
    with pytest.raises(ValueError, match=r"position_ids must be \[length\] or \[batch or 1, length\]"):
        every_model[method](input_ids=CLEAN, timesteps=0.5, position_ids=position_ids.long())


@pytest.mark.parametrize("method", METHODS)
def test_position_ids_of_one_row_in_training(every_model, method):
    labels = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    if method == "bd3lm":  # positions are for its sampling mode
        with pytest.raises(ValueError, match="position_ids are for sampling mode"):
            every_model[method](labels=labels, position_ids=torch.arange(4)[None])
        return
    generator = torch.Generator().manual_seed(0)
    out = every_model[method](labels=labels, position_ids=torch.arange(4)[None], generator=generator)
    assert torch.isfinite(out.loss)


def test_position_ids_must_be_integers(model):
    with pytest.raises(ValueError, match="position_ids must hold integer positions"):
        model(input_ids=X, timesteps=0.5, position_ids=torch.arange(4.0))


def test_position_ids_of_the_right_shape_are_accepted(model):
    expected = model(input_ids=X, timesteps=0.5).logits
    for position_ids in (torch.arange(4), torch.arange(4)[None], torch.arange(4)[None].expand(2, 4)):
        torch.testing.assert_close(model(input_ids=X, timesteps=0.5, position_ids=position_ids).logits, expected)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("timesteps", ["0.5", b"1", {"t": 0.5}, True])
def test_timesteps_of_the_wrong_type(every_model, method, timesteps):
    with pytest.raises(ValueError, match="timesteps must be a number in"):
        every_model[method](input_ids=CLEAN, timesteps=timesteps)


# --- negative_elbo --------------------------------------------------------------------------
@pytest.mark.parametrize("attention_mask", [torch.ones(2, 3), torch.ones(4), torch.ones(2, 4, 1), torch.ones(1, 4)])
def test_negative_elbo_attention_mask_of_the_wrong_shape(model, attention_mask):
    with pytest.raises(ValueError, match=r"attention_mask must be \[batch, length\] = \[2, 4\]"):
        model.negative_elbo(CLEAN, attention_mask=attention_mask)


@pytest.mark.parametrize("num_samples", [2.0, 2.5, "2", True, None])
def test_negative_elbo_num_samples_must_be_an_integer(model, num_samples):
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        model.negative_elbo(CLEAN, num_samples=num_samples)


def test_negative_elbo_takes_a_numpy_integer(model):
    np = pytest.importorskip("numpy")
    assert model.negative_elbo(CLEAN, num_samples=np.int64(2)).shape == (2,)


# --- generation: steps, filters, autoregressive-only options -------------------------------
def count_network_calls(model):
    calls = []
    handle = model.backbone.register_forward_pre_hook(lambda *args: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("steps", [0, -4, 2.5, True, "8"])
@pytest.mark.parametrize("sampler", ["first_hitting", "block_ancestral"])
def test_bd3lm_num_inference_steps_must_be_a_positive_int(every_model, steps, sampler):
    with pytest.raises(ValueError, match="num_inference_steps must be a positive integer"):
        every_model["bd3lm"].generate(max_length=8, num_inference_steps=steps, sampler=sampler)


@pytest.mark.parametrize(
    "method,overrides", [("sedd", {"graph": "uniform"}), ("ctmc", {}), ("d3pm", {"graph": "uniform"}), ("csm", {})]
)
@pytest.mark.parametrize("name,value", [("temperature", 0.7), ("top_k", 3), ("top_p", 0.9), ("do_sample", False)])
def test_filters_without_a_clean_token_distribution_fail_before_the_loop(method, overrides, name, value):
    model = tiny_model(method, **overrides)
    calls, handle = count_network_calls(model)
    try:
        with pytest.raises(ValueError, match=rf"{name}.*distribution over clean tokens"):
            model.generate(max_length=4, num_inference_steps=2, **{name: value})
    finally:
        handle.remove()
    assert not calls  # raised before the first network call


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [10**7, 10**10])
def test_num_inference_steps_too_large(every_model, method, steps):
    model = every_model[method]
    calls, handle = count_network_calls(model)
    try:
        with pytest.raises(ValueError, match=r"num_inference_steps must be at most 1000000"):
            model.generate(max_length=8, num_inference_steps=steps)
    finally:
        handle.remove()
    assert not calls


class _Stop(Exception):
    pass


def _stop(*args):
    raise _Stop


def test_many_inference_steps_warn_up_front(mdlm):
    with pytest.warns(UserWarning, match="num_inference_steps=200000"), pytest.raises(_Stop):
        mdlm.generate(max_length=4, num_inference_steps=200_000, callback=_stop)


@pytest.mark.parametrize(
    "name,value",
    [
        ("num_beams", 3),
        ("num_beam_groups", 2),
        ("repetition_penalty", 1.3),
        ("no_repeat_ngram_size", 2),
        ("min_new_tokens", 2),
        ("min_length", 3),
        ("length_penalty", 0.5),
        ("early_stopping", True),
        ("bad_words_ids", [[3]]),
        ("output_scores", True),
        ("max_time", 5.0),
        ("min_p", 0.1),
        ("typical_p", 0.9),
        ("penalty_alpha", 0.6),
    ],
)
def test_autoregressive_only_options_are_refused(model, name, value):
    calls, handle = count_network_calls(model)
    try:
        with pytest.raises(ValueError, match=rf"{name}={re.escape(repr(value))}: .*autoregressive"):
            model.generate(max_length=4, num_inference_steps=2, **{name: value})
    finally:
        handle.remove()
    assert not calls


@pytest.mark.parametrize(
    "name,value", [("num_beams", 1), ("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0), ("min_new_tokens", 0)]
)
def test_neutral_autoregressive_options_are_accepted(model, name, value):
    assert model.generate(max_length=4, num_inference_steps=2, **{name: value}).shape == (1, 4)


@pytest.mark.parametrize("method", ["mdlm", "sedd", "bd3lm"])
def test_do_sample_false_is_greedy_in_the_token_choice(every_model, method):
    model = every_model[method]
    prompts = torch.tensor([[1, 2]] * 3)  # three rows (transformers refuses num_return_sequences when greedy)
    kwargs = dict(input_ids=prompts, max_new_tokens=6, num_inference_steps=4)
    greedy = model.generate(do_sample=False, seed=1, **kwargs)
    torch.testing.assert_close(greedy, model.generate(top_k=1, seed=1, **kwargs))
    assert not torch.equal(greedy, model.generate(seed=1, **kwargs))


def test_do_sample_false_takes_no_sampling_filter(mdlm):
    with pytest.raises(ValueError, match="do_sample=False"):
        mdlm.generate(max_length=4, num_inference_steps=2, do_sample=False, top_p=0.5)


# --- files ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mdlm_folder(mdlm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mdlm")
    mdlm.save_pretrained(folder)
    return folder


def copy_of(folder, tmp_path):
    shutil.copytree(folder, tmp_path / "copy")
    return tmp_path / "copy"


def test_model_type_mismatch_under_strict_loading(mdlm_folder):
    with pytest.raises(ValueError, match=r"model_type 'mdlm'.*SEDDForDiffusionLM.*'sedd'"):
        SEDDForDiffusionLM.from_pretrained(mdlm_folder)
    with pytest.raises(ValueError, match=r"model_type 'mdlm'.*SEDDForDiffusionLM.*'sedd'"):
        SEDDForDiffusionLM.from_pretrained(mdlm_folder, config=MDLMConfig.from_pretrained(mdlm_folder))
    assert type(SEDDForDiffusionLM.from_pretrained(mdlm_folder, strict=False)) is SEDDForDiffusionLM
    assert type(MDLMForDiffusionLM.from_pretrained(mdlm_folder)) is MDLMForDiffusionLM


@pytest.mark.parametrize("keep", [4, 100, 0.5, -8])
def test_truncated_safetensors_names_the_file(mdlm_folder, tmp_path, keep):
    folder = copy_of(mdlm_folder, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match=rf"{re.escape(str(weights))} is truncated or corrupt"):
        MDLMForDiffusionLM.from_pretrained(folder)


def test_non_finite_weights_warn_with_their_names(mdlm_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_of(mdlm_folder, tmp_path)
    state = load_file(folder / "model.safetensors")
    state["backbone.blocks.0.attn_qkv.weight"][0, 0] = float("nan")
    state["backbone.output_layer.linear.bias"][1] = float("inf")
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"NaN or inf.*backbone\.blocks\.0\.attn_qkv\.weight") as record:
        MDLMForDiffusionLM.from_pretrained(folder)
    assert "backbone.output_layer.linear.bias" in str(record[0].message)


def test_finite_weights_load_without_a_warning(mdlm_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MDLMForDiffusionLM.from_pretrained(mdlm_folder)


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not a valid JSON"),
        ('{"num_inference_steps": "lots"}', "num_inference_steps must be a positive integer"),
        ('{"temperature": -1.0}', "temperature must be > 0"),
        ('{"num_beams": 4}', "num_beams=4"),
    ],
)
def test_invalid_generation_config_json_names_the_file(mdlm_folder, tmp_path, text, message):
    folder = copy_of(mdlm_folder, tmp_path)
    (folder / "generation_config.json").write_text(text)
    with pytest.raises(ValueError, match=rf"generation_config\.json.*{message}"):
        MDLMForDiffusionLM.from_pretrained(folder)


def test_from_pretrained_without_a_folder(mdlm):
    loaded = MDLMForDiffusionLM.from_pretrained(None, config=mdlm.config, state_dict=mdlm.state_dict())
    assert loaded.generation_config.sampler == "ancestral"
    torch.testing.assert_close(loaded(input_ids=X, timesteps=0.5).logits, mdlm(input_ids=X, timesteps=0.5).logits)


def test_a_missing_generation_config_json_gives_the_defaults(mdlm_folder, tmp_path):
    folder = copy_of(mdlm_folder, tmp_path)
    (folder / "generation_config.json").unlink()
    assert MDLMForDiffusionLM.from_pretrained(folder).generation_config.sampler == "ancestral"


# --- the command line: one line, exit status 2, no traceback ---------------------------------
def one_line_error(capsys, argv, *expected):
    from hf_ddlm.cli import main

    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert "Traceback" not in err, err
    # one error line (argparse's own errors come after its usage lines)
    assert [line for line in lines if "error:" in line] == lines[-1:], err
    for text in expected:
        assert text in lines[-1], err


def test_cli_device_without_cuda(mdlm_folder, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in (["generate", str(mdlm_folder)], ["eval", str(mdlm_folder), str(mdlm_folder / "config.json")]):
        one_line_error(capsys, [*command, "--device", "cuda"], "--device", "cuda", "not available")


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu0", ""])
def test_cli_unknown_device(mdlm_folder, capsys, device):
    one_line_error(capsys, ["generate", str(mdlm_folder), "--device", device], "--device")


def test_cli_unknown_dtype(mdlm_folder, capsys):
    one_line_error(capsys, ["generate", str(mdlm_folder), "--dtype", "float64"], "--dtype", "invalid choice")


@pytest.mark.parametrize(
    "setting,message",
    [
        ("hidden_size=256", "hidden_size (256) must be a multiple of num_attention_heads (12)"),
        ("hidden_size=abc", "hidden_size must be an integer, got 'abc'"),
        ("num_attention_heads=0", "num_attention_heads must be > 0, got 0"),
        ("dropout=2", "dropout must be in [0.0, 1.0], got 2"),
    ],
)
def test_cli_set_with_a_bad_value(tmp_path, capsys, setting, message):
    (tmp_path / "train.txt").write_text("the cat sat on the mat. " * 20)
    argv = ["train", "--config", "modeling_configs/mdlm-owt", "--train-file", str(tmp_path / "train.txt")]
    argv += ["--output-dir", str(tmp_path / "out"), "--bpe-vocab-size", "300", "--set", setting]
    one_line_error(capsys, argv, "--set", message)
