"""What LLaDA and Dream need of the library besides their formats: a mask token inside the
vocabulary (not the last id), Dream's count of tokens per step, and ``hf-ddlm convert`` on their folders."""

import json
from pathlib import Path

import pytest
import torch

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.cli import main
from hf_ddlm.generation import clean_columns, filter_model_output
from hf_ddlm.generation.configuration import DiffusionGenerationConfig
from hf_ddlm.processes import get_graph, get_schedule
from hf_ddlm.samplers import ConfidenceSampler

FIXTURES = Path(__file__).parents[2] / "fixtures"
MASK = 288


def test_absorbing_graph_takes_a_mask_inside_the_vocabulary():
    graph = get_graph("absorbing", 300, MASK)
    assert graph.mask_token_id == MASK and get_graph("absorbing", 300).mask_token_id == 299
    x0 = torch.arange(10)[None]
    assert (graph.sample_xt(x0, torch.tensor([50.0])) == MASK).all()
    assert (graph.sample_prior((1, 4)) == MASK).all()
    with pytest.raises(ValueError, match=r"mask_token_id must be an id in \[0, 300\), got 300"):
        get_graph("absorbing", 300, 300)
    with pytest.raises(ValueError, match="the absorbing score entropy needs the mask as the last id"):
        graph.score_entropy(torch.zeros(1, 2, 300), torch.ones(1), torch.full((1, 2), MASK), torch.zeros(1, 2).long())


def test_mask_inside_the_vocabulary_needs_a_transformers_backbone():
    with pytest.raises(ValueError, match=r"mask_token_id must be the last id \(vocab_size - 1 = 299\), got 288"):
        MDLMConfig(vocab_size=300, mask_token_id=MASK)
    official = json.loads((FIXTURES / "llada" / "config.json").read_text())
    with pytest.raises(ValueError, match=r"mask_token_id must be an id in \[0, 300\), got 300"):
        MDLMConfig.from_dict({**official, "mask_token_id": 300})


def test_filters_leave_the_mask_column_alone():
    """temperature / top_k act on the clean tokens, wherever the mask sits; the mask keeps its log 0."""
    assert clean_columns(5, 2).tolist() == [0, 1, 3, 4] and clean_columns(5, 4).tolist() == [0, 1, 2, 3]
    graph = get_graph("absorbing", 5, 2)
    logits = torch.tensor([[[1.0, 2.0, -1e6, 3.0, 0.5]]])
    out = filter_model_output(
        logits.log_softmax(-1), "log_probs", torch.tensor([[2]]), graph, DiffusionGenerationConfig(top_k=2)
    )
    probs = out.exp()[0, 0]
    assert probs[2] == 0 and probs[0] == 0 and probs[4] == 0
    torch.testing.assert_close(probs[[1, 3]], torch.tensor([2.0, 3.0]).softmax(-1))


def test_sampled_generation_never_writes_the_mask():
    model = MDLMForDiffusionLM.from_pretrained(FIXTURES / "llada", dtype=torch.float32)
    out = model.generate(
        torch.tensor([[5, 17, 42, 7]]), max_new_tokens=16, num_inference_steps=8, block_length=8, temperature=2.0,
        top_p=0.99, seed=0, sampler_kwargs={"ordering": "top_prob", "deterministic": False},
    )  # fmt: skip
    assert out.shape == (1, 20) and not (out == MASK).any()


def test_linear_allocation_is_dreams_count():
    """Dream commits int(n (1 - s / t)) per step on linspace(1, 1e-3, steps + 1), all at the last step."""
    graph = get_graph("absorbing", 300, MASK)
    sampler = ConfidenceSampler(graph, get_schedule("loglinear"), allocation="linear")
    grid = sampler.set_timesteps(6, 1e-3)
    n = torch.tensor([12])
    counts = [
        int(sampler._count(torch.ones(1, 12, dtype=torch.bool), grid[i : i + 1], grid[i + 1 : i + 2])) for i in range(6)
    ]
    expected = [int(torch.tensor(12.0) * (1 - grid[i + 1] / grid[i])) for i in range(5)] + [12]
    assert counts == expected and counts[0] == 1 and n.item() == 12
    with pytest.raises(ValueError, match=r"allocation must be one of \('even', 'linear'\), got 'cosine'"):
        ConfidenceSampler(graph, None, allocation="cosine")


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_cli_convert_detects_llada_and_dream(name, tmp_path, capsys):
    assert main(["convert", str(FIXTURES / name), str(tmp_path / "ours")]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "mdlm"
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "mdlm" and saved["mask_token_id"] == MASK
