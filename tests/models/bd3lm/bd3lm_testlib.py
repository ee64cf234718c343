"""Shared helpers of the BD3-LM tests: tiny models with non-trivial weights."""

from __future__ import annotations

import torch

from hf_ddlm import BD3LMConfig, MDLMConfig
from hf_ddlm.testing import tiny_model

ARCH = dict(hidden_size=32, num_attention_heads=2, cond_dim=16, dropout=0.0)


def tiny_config(block_size=4, length=16, layers=2, vocab=13, cls=BD3LMConfig, **overrides):
    return cls(
        vocab_size=vocab,
        num_hidden_layers=layers,
        max_position_embeddings=length,
        block_size=block_size,
        **ARCH,
        **overrides,
    )


def tiny_bd3lm(block_size=4, length=16, layers=2, vocab=13, seed=0, randomize=True, **overrides):
    """A tiny BD3-LM (the shared factory ``tiny_model`` with two layers). The official init zeroes
    adaLN and the output head (uniform p_theta, constant conditioning); ``randomize`` gives them
    random values, as the golden files do, so that every path of the network matters."""
    return tiny_model(
        "bd3lm",
        seed=seed,
        randomize=randomize,
        block_size=block_size,
        max_position_embeddings=length,
        num_hidden_layers=layers,
        vocab_size=vocab,
        **overrides,
    )


def mdlm_config_like(model):
    c = model.config
    return MDLMConfig(
        vocab_size=c.vocab_size,
        num_hidden_layers=c.num_hidden_layers,
        max_position_embeddings=c.max_position_embeddings,
        **ARCH,
    )


def random_clean(batch, length, vocab, seed=0):
    return torch.randint(0, vocab - 1, (batch, length), generator=torch.Generator().manual_seed(seed))


def mask_at_random(x0, mask_id, prob=0.5, seed=1):
    u = torch.rand(x0.shape, generator=torch.Generator().manual_seed(seed))
    return torch.where(u < prob, torch.full_like(x0, mask_id), x0)
