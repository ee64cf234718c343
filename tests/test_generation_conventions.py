"""transformers' generation conventions in diffusion ``generate``: ``logits_processor`` on the
distribution over clean tokens at masked positions, ``stopping_criteria`` after every step, and the
samplers that apply to each model type (refused before the loop with the list of those that do)."""

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from hf_ddlm.generation.utils import applicable_samplers
from hf_ddlm.testing.models import tiny_model


class OnlyToken(LogitsProcessor):
    """Every masked position must become ``token``; records what it was called with."""

    def __init__(self, token):
        self.token, self.calls = token, []

    def __call__(self, input_ids, scores):
        self.calls.append((input_ids.clone(), scores.shape))
        out = torch.full_like(scores, -float("inf"))
        out[:, self.token] = 0.0
        return out


class MaskedFractionBelow(StoppingCriteria):
    def __init__(self, mask_id, fraction):
        self.mask_id, self.fraction, self.calls = mask_id, fraction, 0

    def __call__(self, input_ids, scores, **kwargs):
        self.calls += 1
        return (input_ids == self.mask_id).float().mean(-1) < self.fraction


@pytest.mark.parametrize(
    "method,sampler",
    [(m, s) for m in ("mdlm", "bd3lm") for s in (None, "first_hitting", "remdm_cap")] + [("sedd", None)],
)
def test_logits_processor_shapes_the_clean_token_distribution(method, sampler):
    model = tiny_model(method)
    processor = OnlyToken(3)
    kw = {"sampler": sampler} if sampler else {}
    x = model.generate(
        input_ids=torch.tensor([[1, 2]] * 2),
        max_new_tokens=6,
        num_inference_steps=6,
        seed=0,
        logits_processor=LogitsProcessorList([processor]),
        **kw,
    )
    assert (x[:, :2] == torch.tensor([1, 2])).all() and (x[:, 2:] == 3).all(), x
    ids, shape = processor.calls[0]
    assert ids.shape[1] >= 8 and shape[-1] == model.config.vocab_size - 1  # the canvas; clean tokens only


def test_temperature_top_k_keep_working_with_a_logits_processor():
    model = tiny_model("mdlm")
    x = model.generate(
        max_length=8, top_k=2, temperature=0.5, seed=0, logits_processor=LogitsProcessorList([OnlyToken(4)])
    )
    assert (x == 4).all()


@pytest.mark.parametrize("method", ["mdlm", "bd3lm"])
def test_stopping_criteria_stop_early_and_report_the_nfes(method):
    model = tiny_model(method)
    full = model.generate(max_length=8, num_inference_steps=32, seed=0, return_dict_in_generate=True)
    criterion = MaskedFractionBelow(model.graph.mask_token_id, 0.75)
    out = model.generate(
        max_length=8,
        num_inference_steps=32,
        seed=0,
        return_dict_in_generate=True,
        stopping_criteria=StoppingCriteriaList([criterion]),
        sampler="ancestral",
    )
    assert criterion.calls >= 1
    assert out.num_function_evaluations < full.num_function_evaluations
    assert (out.sequences != model.graph.mask_token_id).all()  # the rest is denoised (noise removal)


@pytest.mark.parametrize("method", ["ctmc", "csm"])
def test_logits_processor_is_refused_without_a_clean_token_distribution(method):
    model = tiny_model(method)
    with pytest.raises(ValueError, match="logits_processor needs a distribution over clean tokens"):
        model.generate(max_length=4, logits_processor=LogitsProcessorList([OnlyToken(1)]))


def test_sedd_uniform_refuses_a_logits_processor():
    model = tiny_model("sedd", graph="uniform")
    with pytest.raises(ValueError, match="logits_processor needs a distribution over clean tokens"):
        model.generate(max_length=4, logits_processor=LogitsProcessorList([OnlyToken(1)]))


def test_bad_processing_arguments_are_refused():
    model = tiny_model("mdlm")
    with pytest.raises(ValueError, match="logits_processor must be"):
        model.generate(max_length=4, logits_processor=3)
    with pytest.raises(ValueError, match="stopping_criteria must be"):
        model.generate(max_length=4, stopping_criteria="eos")


EXPECTED = {  # a few facts the derived lists must hold (not the whole list: that is derived)
    "sedd": ({"analytic", "euler"}, {"ancestral", "metropolis_hastings"}),
    "mdlm": ({"ancestral", "first_hitting", "remdm", "remdm_cap", "remdm_loop"}, {"analytic", "d3pm_ancestral"}),
    "bd3lm": ({"first_hitting", "block_ancestral", "remdm_rescale"}, {"euler"}),
    "d3pm": ({"d3pm_ancestral"}, {"ancestral", "remdm"}),
    "ctmc": ({"tau_leaping"}, {"ancestral", "first_hitting", "remdm"}),
    "csm": ({"metropolis_hastings"}, {"analytic", "tau_leaping"}),
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_applicable_samplers_are_derived_and_the_others_refused_with_the_list(method):
    model = tiny_model(method)
    applicable = applicable_samplers(model)
    must, must_not = EXPECTED[method]
    assert must <= set(applicable) and not (must_not & set(applicable)), applicable
    assert model.generation_config.sampler in applicable  # the default applies
    for name in sorted(must_not):
        with pytest.raises(ValueError, match="the samplers that apply to it are") as info:
            model.generate(max_length=4, sampler=name)
        assert str(applicable) in str(info.value)


def test_generate_help_lists_the_samplers_per_model_type(capsys):
    from hf_ddlm.cli import main
    from hf_ddlm.cli.generate import samplers_per_model_type

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    rows = samplers_per_model_type()
    assert {model_type for model_type, _, _ in rows} == {"sedd", "mdlm", "bd3lm", "d3pm", "ctmc", "csm"}
    for model_type, graph, names in rows:
        assert f"  {model_type} ({graph}): {', '.join(names)}" in out
    assert dict(((m, g), n) for m, g, n in rows)[("mdlm", "absorbing")] == applicable_samplers(tiny_model("mdlm"))
