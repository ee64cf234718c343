"""The likelihood API: negative_elbo per sequence and the perplexity bound over a dataset."""

import math

import pytest
import torch

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM
from hf_ddlm.likelihood import perplexity_bound
from hf_ddlm.testing import tiny_config


def _model(cls, cfg_cls, **kw):
    torch.manual_seed(0)
    return cls(tiny_config(cfg_cls, **kw)).eval()


@pytest.mark.parametrize("cls,cfg_cls", [(MDLMForDiffusionLM, MDLMConfig), (SEDDForDiffusionLM, SEDDConfig)])
def test_nelbo_of_the_initial_model_has_its_closed_form(cls, cfg_cls):
    # At init the output head and adaLN are zero, so p_theta(x0 | x_t) is uniform over the V - 1
    # real tokens (SEDD: the scaled score is that p0 / (e^sigma - 1)). Then each masked token costs
    # (1/t) log(V - 1), a token is masked with probability (1 - eps) t, and the expected NELBO of a
    # length-L sequence is L (1 - eps) log(V - 1) whatever the range of t.
    model = _model(cls, cfg_cls)
    v, length, eps = model.config.vocab_size, 12, model.config.noise_eps
    x = torch.randint(0, v - 1, (64, length), generator=torch.Generator().manual_seed(1))
    nelbo = model.negative_elbo(x, num_samples=8, generator=torch.Generator().manual_seed(2))
    assert nelbo.shape == (64,) and nelbo.dtype == torch.float32
    expected = length * (1 - eps) * math.log(v - 1)
    stderr = nelbo.std().item() / math.sqrt(len(nelbo))
    assert abs(nelbo.mean().item() - expected) < 4 * stderr + 1e-6, (nelbo.mean().item(), expected, stderr)


def test_perplexity_bound_is_exp_of_total_nelbo_per_token():
    model = _model(MDLMForDiffusionLM, MDLMConfig)
    x = torch.randint(0, 12, (10, 8), generator=torch.Generator().manual_seed(0))
    bound = perplexity_bound(model, x, batch_size=4, num_samples=2, generator=torch.Generator().manual_seed(3))
    per_seq = torch.cat(
        [
            model.negative_elbo(x[i : i + 4], num_samples=2, generator=g)
            for g in [torch.Generator().manual_seed(3)]
            for i in range(0, 10, 4)
        ]
    )
    assert bound.num_tokens == 80 and bound.num_sequences == 10
    assert math.isclose(bound.nelbo, per_seq.double().sum().item(), rel_tol=1e-5)
    assert math.isclose(bound.perplexity, math.exp(per_seq.double().sum().item() / 80), rel_tol=1e-5)
    assert math.isclose(bound.bits_per_token, bound.nats_per_token / math.log(2))


def test_padding_is_not_scored_and_not_attended():
    model = _model(MDLMForDiffusionLM, MDLMConfig)
    x = torch.randint(0, 12, (4, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(x)
    mask[:, 7:] = 0
    other = x.clone()
    other[:, 7:] = (other[:, 7:] + 3) % 12  # different tokens under the padding
    a = model.negative_elbo(x, attention_mask=mask, num_samples=3, generator=torch.Generator().manual_seed(5))
    b = model.negative_elbo(other, attention_mask=mask, num_samples=3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    rows = [{"input_ids": x[i], "attention_mask": mask[i]} for i in range(4)]
    assert perplexity_bound(model, rows, batch_size=3).num_tokens == 28


def test_bad_arguments():
    model = _model(MDLMForDiffusionLM, MDLMConfig)
    x = torch.randint(0, 12, (2, 8))
    with pytest.raises(ValueError, match="num_samples"):
        model.negative_elbo(x, num_samples=0)
    with pytest.raises(ValueError, match="t_min"):
        model.negative_elbo(x, t_min=1.5)
    with pytest.raises(ValueError, match="mask token"):
        model.negative_elbo(torch.full((1, 4), 12))
    with pytest.raises(ValueError, match="batch_size"):
        perplexity_bound(model, x, batch_size=0)
