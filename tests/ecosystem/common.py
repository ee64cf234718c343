"""Shared helpers of the ecosystem tests: every registered model, as a tiny random model.

Tests are parametrized over ``hf_ddlm.models.auto.MODELS`` so that a newly registered method is
covered as soon as it lands. A method whose tiny model cannot be built generically is listed in
``SKIPPED`` with the reason; nowhere else may a test skip a method.
"""

from __future__ import annotations

import pytest
import torch

import hf_ddlm  # noqa: F401  (registers the Auto classes)
from hf_ddlm import testing
from hf_ddlm.models.auto import MODELS
from hf_ddlm.testing import randomize_weights_

# model_type -> why its tiny model cannot be built by ``tiny_model`` (keep this the only list)
SKIPPED: dict[str, str] = {}

# (model_type, feature) -> a known defect of that method, in a file outside the ecosystem code.
# Its tests of ``feature`` are strict xfails: when the defect is fixed they pass, which fails the
# suite until the entry is removed here.
GAPS: dict[tuple[str, str], str] = {}


def model_params(feature: str | None = None):
    """pytest params over (config_class, model_class), one id per model_type; ``feature`` marks the
    methods with a known gap in it (``GAPS``) as strict xfails."""
    params = []
    for config_class, model_class in MODELS:
        mt = config_class.model_type
        marks = [pytest.mark.skip(reason=SKIPPED[mt])] if mt in SKIPPED else []
        if feature is not None and (mt, feature) in GAPS:
            marks.append(pytest.mark.xfail(reason=GAPS[(mt, feature)], strict=True))
        params.append(pytest.param(config_class, model_class, id=mt, marks=marks))
    return params


def model_ids():
    return [config_class.model_type for config_class, _ in MODELS]


def find_model(model_type):
    for config_class, model_class in MODELS:
        if config_class.model_type == model_type:
            return config_class, model_class
    raise KeyError(model_type)


def tiny_model(model_class, seed=0, scale=0.3, **overrides):
    """The shared tiny model (``hf_ddlm.testing.tiny_model``) with its zero-initialised layers
    (adaLN, output head) redrawn from a seeded generator, so that its outputs depend on the input
    and LoRA adapters inside the blocks receive gradients."""
    model = testing.tiny_model(model_class.config_class.model_type, seed=seed, randomize=False, **overrides)
    return randomize_weights_(model, std=scale, generator=torch.Generator().manual_seed(seed + 1), perturb_norms=False)


def clean_ids(model, batch=2, length=None, seed=0):
    """Random clean token ids (never the absorbing mask)."""
    length = length or model.config.max_position_embeddings
    high = model.config.vocab_size - (1 if model.graph.mask_token_id is not None else 0)
    return torch.randint(0, high, (batch, length), generator=torch.Generator().manual_seed(seed))


def noisy_inputs(model, batch=2, seed=0, t=0.5):
    """(x_t, timesteps, x0): a fixed noisy batch for deterministic forward calls."""
    x0 = clean_ids(model, batch, seed=seed)
    timesteps = torch.full((batch,), t)
    g = torch.Generator().manual_seed(seed + 7)
    x_t = model.graph.sample_xt(x0, model.schedule(timesteps).sigma, generator=g)
    return x_t, timesteps, x0


def word_tokenizer(vocab_size=13, mask=True):
    """A word-level tokenizer matching the tiny models' vocabulary: ``<pad>`` (0), ``<eos>`` (1),
    the words ``w2 .. w{n}`` and, when ``mask``, ``<mask>`` on the last id. Decoding joins tokens
    with spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    n_words = vocab_size - 1 if mask else vocab_size
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i for i in range(2, n_words)}}
    if mask:
        vocab["<mask>"] = vocab_size - 1
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs = {"mask_token": "<mask>"} if mask else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<pad>", pad_token="<pad>", eos_token="<eos>", **kwargs
    )
