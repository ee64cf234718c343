"""The published-size configs of D3PM, CTMC and CSM in ``modeling_configs/`` load through the Auto
classes and build the architectures of the papers (without allocating weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

import hf_ddlm  # noqa: F401  (registers the Auto classes)
from hf_ddlm.generation import DiffusionGenerationConfig

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
