"""MDLM parity with the official code (kuleshov-group/mdlm @ c112c52).

The ``<golden>/mdlm/<case>`` folder is laid out like the Hub repo ``kuleshov-group/mdlm-owt``
(remote-code config, ``backbone.``-prefixed weights); ``AutoModel.from_pretrained`` must load it
into our class. Then: the raw DiT logits, SUBS, the NELBO and its token mean, both ancestral
updates with the stored uniform noise, and the final argmax (golden README, section 6).
"""

import functools
import json

import pytest
import torch
from transformers import AutoModel

from hf_ddlm import MDLMForDiffusionLM
from hf_ddlm.parameterizations import subs_log_probs
from hf_ddlm.samplers import AncestralSampler
from hf_ddlm.testing import golden_cases, load_golden

CASES = golden_cases("mdlm")
close = functools.partial(torch.testing.assert_close, rtol=1e-4, atol=1e-5)
close_loss = functools.partial(torch.testing.assert_close, rtol=1e-4, atol=1e-4)
FINITE = -1e5  # SUBS writes -1e6 sentinels; only entries above this are compared numerically


@functools.cache
def _load(case):
    folder, inputs, expected, case_json = load_golden("mdlm", case)
    return folder, AutoModel.from_pretrained(folder).eval(), inputs, expected, case_json


def _case(case):
    return _load(case)[1:]


def assert_subs_close(actual, expected):
    """Same sentinel pattern; finite entries within tolerance."""
    finite = expected > FINITE
    assert torch.equal(actual > FINITE, finite)
    close(actual[finite], expected[finite])


def test_every_documented_case_is_tested():
    assert "owt_style_tc_false" in CASES


@pytest.mark.parametrize("case", CASES)
def test_hub_layout_loads_as_our_class(case):
    model, inputs, expected, case_json = _case(case)
    assert isinstance(model, MDLMForDiffusionLM)
    official = json.loads((_load(case)[0] / "config.json").read_text())
    assert model.config.vocab_size == official["vocab_size"] == case_json["vocab_size"]
    assert model.config.hidden_size == official["hidden_dim"]
    assert model.config.num_hidden_layers == official["n_blocks"]
    assert model.config.time_conditioning == official["time_conditioning"] is False
    assert model.config.mask_token_id == case_json["mask_index"]
    assert model.config.noise_eps == case_json["noise"]["eps"]


@pytest.mark.parametrize("case", CASES)
def test_noise_levels_and_loss_weight(case):
    model, inputs, expected, _ = _case(case)
    level = model.schedule(inputs["t"])
    close(level.sigma, expected["sigma"])
    close(level.dsigma, expected["dsigma"])
    close(level.mask_prob, expected["move_chance"])
    close(level.dsigma / torch.expm1(level.sigma), expected["loss_weight"])
    close(model.backbone_conditioning(level), expected["sigma_fed_to_backbone"])


@pytest.mark.parametrize("case", CASES)
def test_raw_logits_and_subs(case):
    model, inputs, expected, _ = _case(case)
    x_t, t = inputs["x_t"], inputs["t"]
    with torch.no_grad():
        raw = model.backbone(x_t, torch.zeros_like(t))  # time_conditioning=False: sigma 0
        out = model(input_ids=x_t, timesteps=t)
    close(raw, expected["raw_logits"])
    assert_subs_close(subs_log_probs(raw, x_t, model.config.mask_token_id), expected["subs_log_probs"])
    assert_subs_close(out.logits, expected["subs_log_probs"])
    # carry-over: unmasked rows are exactly one-hot at x_t
    unmasked = x_t != model.config.mask_token_id
    assert torch.equal(out.logits[unmasked].argmax(-1), x_t[unmasked])
    assert (out.logits[unmasked].max(-1).values == 0).all()


@pytest.mark.parametrize("case", CASES)
def test_nelbo_per_token_and_token_mean(case):
    model, inputs, expected, _ = _case(case)
    x0, x_t, t, attention = inputs["x0"], inputs["x_t"], inputs["t"], inputs["attention_mask"]
    with torch.no_grad():
        full = model(input_ids=x_t, timesteps=t, labels=x0)
    close_loss(full.loss_per_token, expected["nelbo_per_token"])
    assert (full.loss_per_token[x_t != model.config.mask_token_id] == 0).all()
    # The official loss runs the network without a padding mask and multiplies the per-token
    # NELBO by attention_mask; padding as labels=-100 does exactly that.
    labels = x0.masked_fill(attention == 0, -100)
    with torch.no_grad():
        padded = model(input_ids=x_t, timesteps=t, labels=labels)
    close_loss(padded.loss_per_token, expected["nelbo_per_token_masked"])
    close_loss(padded.loss, expected["nelbo_token_mean"])
    assert torch.equal((labels != -100).float(), expected["token_mask"])
    # attention_mask also keeps padding out of attention; rows without padding are unchanged
    with torch.no_grad():
        masked = model(input_ids=x_t, timesteps=t, labels=x0, attention_mask=attention.long())
    full_rows = (attention == 1).all(-1)
    assert full_rows.any() and not full_rows.all()
    close_loss(masked.loss_per_token[full_rows], expected["nelbo_per_token_masked"][full_rows])
    assert (masked.loss_per_token[~attention.bool()] == 0).all()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("move_chance,prefix", [("linear", "ddpm_cache"), ("schedule", "ddpm")])
def test_ancestral_step(case, move_chance, prefix):
    model, inputs, expected, _ = _case(case)
    x_t, t = inputs["x_t"], inputs["sampler_t"][:, 0]
    s = t - inputs["sampler_dt"]  # the python step size, applied as float32
    with torch.no_grad():
        log_probs = model(input_ids=x_t, timesteps=t).logits
    if prefix == "ddpm_cache":
        close(log_probs.exp(), expected["ddpm_cache_p_x0"])
    sampler = AncestralSampler(model.graph, model.schedule, move_chance=move_chance)
    out = sampler.step(log_probs, x_t, t, s, uniform_noise=expected[f"{prefix}_uniform_noise"])
    close(out.probs, expected[f"{prefix}_q_xs"])
    assert torch.equal(out.prev_sample, expected[f"{prefix}_x_next"])
    unmasked = x_t != model.config.mask_token_id
    assert torch.equal(out.prev_sample[unmasked], x_t[unmasked])


@pytest.mark.parametrize("case", CASES)
def test_noise_removal_argmax(case):
    model, inputs, expected, _ = _case(case)
    x_t, t = inputs["x_t"], inputs["noise_removal_t"][:, 0]
    with torch.no_grad():
        log_probs = model(input_ids=x_t, timesteps=t).logits
    assert torch.equal(log_probs.argmax(-1), expected["noise_removal_argmax"])
    out = AncestralSampler(model.graph, model.schedule).denoise(log_probs, x_t, t)
    assert torch.equal(out.prev_sample, expected["noise_removal_argmax"])
    assert (out.prev_sample != model.config.mask_token_id).all()


@pytest.mark.parametrize("case", CASES)
def test_save_pretrained_round_trip_gives_identical_outputs(case, tmp_path):
    model, inputs, expected, _ = _case(case)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mdlm"  # our format, with the self-contained code beside it
    assert (
        saved["auto_map"]["AutoModel"] == "modeling_mdlm.MDLMForDiffusionLM"
        and (tmp_path / "modeling_mdlm.py").is_file()
    )
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    assert reloaded.config.to_diff_dict() == model.config.to_diff_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    with torch.no_grad():
        a = model(input_ids=inputs["x_t"], timesteps=inputs["t"], labels=inputs["x0"])
        b = reloaded(input_ids=inputs["x_t"], timesteps=inputs["t"], labels=inputs["x0"])
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.loss, b.loss)
    close_loss(b.loss_per_token, expected["nelbo_per_token"])
