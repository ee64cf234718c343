"""torch.compile(fullgraph=True) and torch.export trace the denoiser: the input checks that read
tensor values (ids in the vocabulary, t in [0, 1]) run in eager mode only, the shape checks always."""

from __future__ import annotations

import pytest
import torch

from hf_ddlm.testing import MODELS, tiny_model

METHODS = sorted(MODELS)


def inputs(model):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=generator)
    return ids, torch.tensor([0.3, 0.8])  # on D3PM's grid too (k / T)


class Denoiser(torch.nn.Module):
    """The sampling-mode call: x_t and t in, the native output out (no labels)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, timesteps):
        return self.model(input_ids=input_ids, timesteps=timesteps).logits


@pytest.mark.parametrize("method", METHODS)
def test_compile_fullgraph(method):
    model = tiny_model(method)
    ids, t = inputs(model)
    expected = model(input_ids=ids, timesteps=t).logits
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(input_ids=ids, timesteps=t).logits, expected)
    # the eager model still checks the values
    bad = ids.clone()
    bad[0, 0] = model.config.vocab_size
    with pytest.raises(ValueError, match="input_ids has ids outside"):
        model(input_ids=bad, timesteps=t)
    if model.uses_time:  # CSM ignores timesteps
        with pytest.raises(ValueError, match="timesteps must lie in"):
            model(input_ids=ids, timesteps=torch.tensor([0.3, 1.5]))
    # shapes are checked while tracing too (fullgraph reports the ValueError as Unsupported)
    with pytest.raises((ValueError, torch._dynamo.exc.Unsupported), match=r"input_ids must be \[batch, length\]"):
        compiled(input_ids=ids[0], timesteps=t)


@pytest.mark.parametrize("method", METHODS)
def test_export_the_denoiser(method):
    model = tiny_model(method)
    ids, t = inputs(model)
    exported = torch.export.export(Denoiser(model), (ids, t))
    torch.testing.assert_close(exported.module()(ids, t), model(input_ids=ids, timesteps=t).logits)
    other = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    t2 = torch.tensor([0.9, 0.1])
    torch.testing.assert_close(exported.module()(other, t2), model(input_ids=other, timesteps=t2).logits)
