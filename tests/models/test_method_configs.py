"""The published-size configs of D3PM, CTMC and CSM in ``modeling_configs/`` load through the Auto
classes and build the architectures of the papers (without allocating weights); every config class
validates its fields declaratively and names the field and what it allows when one is wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

import hf_ddlm  # noqa: F401  (registers the Auto classes)
from hf_ddlm import BD3LMConfig, CSMConfig, CTMCConfig, D3PMConfig, MDLMConfig, SEDDConfig
from hf_ddlm.generation import DiffusionGenerationConfig
from hf_ddlm.models.auto import MODELS
from hf_ddlm.models.configuration_utils import DiffusionConfig
from hf_ddlm.processes.schedules import SCHEDULES, get_schedule

ROOT = Path(__file__).resolve().parents[2] / "modeling_configs"
CASES = {
    # name: (model class, vocabulary, length, graph)
    "d3pm-text8": ("D3PMForDiffusionLM", 28, 256, "absorbing"),
    "d3pm-lm1b": ("D3PMForDiffusionLM", 8193, 128, "absorbing"),
    "ctmc-text8": ("CTMCForDiffusionLM", 27, 256, "uniform"),
    "csm-text8": ("CSMForDiffusionLM", 27, 256, "uniform"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_loads_and_builds(name):
    cls_name, vocab, length, graph = CASES[name]
    config = AutoConfig.from_pretrained(ROOT / name)
    assert (config.vocab_size, config.max_position_embeddings, config.graph) == (vocab, length, graph)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (12, 768, 12)
    gen = DiffusionGenerationConfig.from_pretrained(ROOT / name)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    assert type(model).__name__ == cls_name
    # 12 x 768 DiT blocks: ~7.1M + adaLN per block; the embedding and head scale with the vocabulary
    blocks = sum(p.numel() for n, p in model.named_parameters() if n.startswith("backbone.blocks."))
    assert 85e6 < blocks < 95e6
    if name.startswith("d3pm"):
        assert config.num_timesteps == 1000 and config.hybrid_loss_coeff == 0.01
        assert model.schedule.alpha_bar[-1] == 0 and gen.sampler == "d3pm_ancestral" and gen.num_inference_steps == 1000
    elif name.startswith("ctmc"):
        assert gen.sampler == "tau_leaping"
    else:
        assert gen.sampler == "metropolis_hastings" and not model.has_likelihood_bound


# --- declarative validation (strict_config): every config class, every rule ---------------------
CONFIG_CLASSES = [config_class for config_class, _ in MODELS]
NOT_POSITIVE = ["vocab_size", "num_hidden_layers", "num_attention_heads", "cond_dim", "mlp_ratio"]
NOT_POSITIVE += ["max_position_embeddings"]


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_config_class_is_strict_and_valid_by_default(config_class):
    config_class()  # the defaults satisfy every rule
    validators = {v.__name__ for v in config_class.__class_validators__}
    assert {"validate_architecture", "validate_mask_token_id", "validate_noise_schedule"} <= validators
    own = {name for name in vars(config_class) if name.startswith("validate_")}
    assert own <= validators  # @strict_config on the class itself collected its own rules
    # a subclass that redeclares a field (a new default) keeps the parent's value check
    parent = {f.name: f for f in dataclasses.fields(DiffusionConfig)}
    for f in dataclasses.fields(config_class):
        if f.name in parent and parent[f.name].metadata.get("validator"):
            assert f.metadata.get("validator"), f"{config_class.__name__}.{f.name} lost its validator"


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("field", NOT_POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_must_be_positive(config_class, field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be > 0, got {value}$"):
        config_class(**{field: value})


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_the_architecture_is_checked_on_construction(config_class):
    with pytest.raises(ValueError, match=r"hidden_size \(100\) must be a multiple of num_attention_heads \(12\)"):
        config_class(hidden_size=100, num_attention_heads=12)
    with pytest.raises(ValueError, match="head dimension hidden_size / num_attention_heads = 3 must be even"):
        config_class(hidden_size=36, num_attention_heads=12)
    with pytest.raises(ValueError, match="^num_attention_heads must be > 0, got 0$"):
        config_class(num_attention_heads=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"hidden_size": "256"}, "hidden_size must be an integer, got '256'"),
        ({"hidden_dim": "256"}, "hidden_size must be an integer, got '256'"),  # an alias is checked as its field
        ({"num_hidden_layers": 2.0}, "num_hidden_layers must be an integer, got 2.0"),
        ({"vocab_size": True}, "vocab_size must be an integer, got True"),
        ({"dropout": "0.1"}, "dropout must be a number, got '0.1'"),
        ({"dropout": 1.5}, r"dropout must be in \[0.0, 1.0\], got 1.5"),
        ({"noise_eps": 1.0}, r"noise_eps must be in \[0.0, 1.0\), got 1.0"),
        ({"sigma_min": 0.0}, "sigma_min must be > 0, got 0.0"),
        ({"time_conditioning": 1}, "time_conditioning must be True or False, got 1"),
        ({"mask_token_id": "last"}, "mask_token_id must be an integer or None, got 'last'"),
        ({"graph": "gaussian"}, r"graph must be one of \['absorbing', 'uniform', 'absorb'\], got 'gaussian'"),
        ({"noise_schedule": "sqrt"}, r"noise_schedule must be one of \['loglinear', 'geometric', 'cosine'\]"),
        ({"loss_reduction": "mean"}, r"loss_reduction must be one of \['token_mean', 'sequence_sum'\]"),
        ({"noise_schedule": "geometric", "sigma_min": 30.0}, "sigma_min < sigma_max"),
    ],
)
def test_field_errors_name_the_field_and_what_it_allows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SEDDConfig(**kwargs)


@pytest.mark.parametrize(
    "config_class,kwargs,message",
    [
        (MDLMConfig, {"graph": "uniform"}, r"graph must be one of \['absorbing', 'absorb'\]"),
        (BD3LMConfig, {"noise_schedule": "geometric"}, r"noise_schedule must be one of \['loglinear'\]"),
        (BD3LMConfig, {"attn_backend": "flash"}, r"attn_backend must be one of \['sdpa', 'flex'\]"),
        (BD3LMConfig, {"block_size": 2.0}, "block_size must be an integer"),
        (BD3LMConfig, {"block_size": 3, "max_position_embeddings": 16}, "block_size .3. must divide"),
        (BD3LMConfig, {"sampling_eps_min": 0.0}, r"sampling_eps_min must be in \(0.0, 1.0\]"),
        (D3PMConfig, {"num_timesteps": 0}, "num_timesteps must be > 0"),
        (D3PMConfig, {"reverse_parameterization": "eq4"}, r"reverse_parameterization must be one of \['mixture'"),
        (D3PMConfig, {"betas": ["0.5"]}, "betas must be a list or None"),
        (CTMCConfig, {"ctmc_estimator": "two_pass"}, r"ctmc_estimator must be one of \['one_pass', 'exact'\]"),
        (CTMCConfig, {"hybrid_loss_coeff": -1.0}, "hybrid_loss_coeff must be >= 0.0"),
        (CSMConfig, {"time_conditioning": True}, r"time_conditioning must be one of \[False\]"),
        (CSMConfig, {"score_parameterization": "softplus"}, r"score_parameterization must be one of \['linear'"),
        (CSMConfig, {"num_neighbour_samples": 0}, "num_neighbour_samples must be > 0"),
    ],
)
def test_method_specific_choices(config_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_class(**kwargs)


def test_validation_on_assignment_loading_and_saving(tmp_path):
    config = MDLMConfig(hidden_size=64, num_attention_heads=4)
    with pytest.raises(ValueError, match="noise_schedule must be one of"):
        config.noise_schedule = "bogus"
    with pytest.raises(ValueError, match="num_attention_heads must be > 0"):
        config.n_heads = 0  # the official alias too
    config.save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(text.replace('"num_attention_heads": 4', '"num_attention_heads": 5'))
    with pytest.raises(ValueError, match="must be a multiple of num_attention_heads"):
        AutoConfig.from_pretrained(tmp_path)  # validate_architecture runs on from_pretrained too
    # a rule between fields is checked when the config is saved (each field alone is fine here)
    config.hidden_size = 66
    with pytest.raises(ValueError, match=r"hidden_size \(66\) must be a multiple"):
        config.save_pretrained(tmp_path / "again")


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_kwargs_reads_the_fields_the_schedule_class_names(name):
    fields = {f.name for f in dataclasses.fields(DiffusionConfig)}
    schedule_class = SCHEDULES[name]
    assert set(schedule_class.config_fields.values()) <= fields
    config = SEDDConfig(graph="uniform", noise_schedule=name, noise_eps=0.25, sigma_min=0.5, sigma_max=7.0)
    kwargs = config.schedule_kwargs()
    assert kwargs == {arg: getattr(config, field) for arg, field in schedule_class.config_fields.items()}
    schedule = get_schedule(config.noise_schedule, **kwargs)
    for arg, value in kwargs.items():
        assert schedule.to_dict()[arg] == value
