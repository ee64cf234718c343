"""Confidence-ordered samplers (``confidence``, ``threshold``, ``entropy_bounded``), semi-autoregressive
blocks (``block_length``) and adaptive stopping: their rules, batching, prompts, infilling, BD3-LM's
blocks, bad parameters, and their bias on the oracle's enumerable toy (reported, not assumed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import StoppingCriteriaList

from hf_ddlm import BD3LMForDiffusionLM, MDLMForDiffusionLM, SEDDForDiffusionLM, testing
from hf_ddlm.generation.stopping import StableAndConfidentStoppingCriteria, stop_finished_rows
from hf_ddlm.samplers import clean_log_probs
from hf_ddlm.testing import ExactOracle, oracle_model, randomize_weights_

V, MASK = 13, 12  # the tiny models' vocabulary: ids 0..11 and the mask
SAMPLERS = [
    ("confidence", {}),
    ("confidence", {"ordering": "margin", "deterministic": False}),
    ("confidence", {"ordering": "entropy", "tokens_per_step": 2}),
    ("threshold", {"threshold": 0.3}),
    ("threshold", {"threshold": 0.2, "ordering": "margin", "deterministic": False}),
    ("entropy_bounded", {"gamma": 0.5}),
]
IDS = ["conf-top", "conf-margin-sampled", "conf-entropy-k2", "threshold", "threshold-margin-sampled", "eb"]


def tiny(model_class, **overrides):
    model = testing.tiny_model(model_class.config_class.model_type, seed=0, randomize=False, **overrides)
    return randomize_weights_(model, perturb_norms=False)


@pytest.fixture(scope="module")
def models():
    return {cls: tiny(cls) for cls in (MDLMForDiffusionLM, SEDDForDiffusionLM, BD3LMForDiffusionLM)}


def committed_per_step(trajectory, start=0):
    """Positions unmasked by each step (the trajectory starts after the first step)."""
    masks = [(x[:, start:] == MASK).sum(-1) for x in trajectory]
    return [int(a[0] - b[0]) for a, b in zip(masks, masks[1:])]


# --- batched, prompts, infilling, committed tokens stay ---------------------------------------
@pytest.mark.parametrize("sampler,kwargs", SAMPLERS, ids=IDS)
@pytest.mark.parametrize("model_class", [MDLMForDiffusionLM, SEDDForDiffusionLM])
def test_batched_prompted_and_infilled_generation(models, model_class, sampler, kwargs):
    model = models[model_class]
    common = dict(sampler=sampler, sampler_kwargs=kwargs, num_inference_steps=5, seed=0)
    out = model.generate(max_length=10, num_return_sequences=3, return_dict_in_generate=True, **common)
    assert out.sequences.shape == (3, 10) and (out.sequences != MASK).all()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    x = model.generate(input_ids=prompt, max_new_tokens=6, **common)
    assert x.shape == (2, 9) and torch.equal(x[:, :3], prompt) and (x != MASK).all()
    ids = torch.tensor([[1, MASK, MASK, 4, MASK, 6, 7, MASK]] * 2)
    holes = ids == MASK
    x = model.generate(input_ids=ids, infill_mask=holes, **common)
    assert torch.equal(x[~holes], ids[~holes]) and (x != MASK).all()


@pytest.mark.parametrize("sampler,kwargs", SAMPLERS, ids=IDS)
def test_committed_tokens_stay_committed(models, sampler, kwargs):
    out = models[MDLMForDiffusionLM].generate(
        max_length=12, num_return_sequences=2, num_inference_steps=6, sampler=sampler, sampler_kwargs=kwargs,
        seed=1, output_trajectory=True, return_dict_in_generate=True,
    )  # fmt: skip
    for before, after in zip(out.trajectory, out.trajectory[1:]):
        kept = before != MASK
        assert torch.equal(after[kept], before[kept])


def test_tokens_spread_evenly_over_the_steps_as_llada():
    """12 masked positions over 5 steps: 3, 3, 2, 2, 2 (LLaDA's get_num_transfer_tokens)."""
    model = tiny(MDLMForDiffusionLM)
    out = model.generate(
        max_length=12, num_inference_steps=5, sampler="confidence", seed=0, output_trajectory=True,
        return_dict_in_generate=True, noise_removal=False,
    )  # fmt: skip
    counts = [12 - int((out.trajectory[0] == MASK).sum())] + committed_per_step(out.trajectory)
    assert counts == [3, 3, 2, 2, 2]
    out = model.generate(
        max_length=12, num_inference_steps=8, sampler="confidence", sampler_kwargs={"tokens_per_step": 5}, seed=0,
        output_trajectory=True, return_dict_in_generate=True,
    )  # fmt: skip
    counts = [12 - int((out.trajectory[0] == MASK).sum())] + committed_per_step(out.trajectory)
    assert counts[:3] == [5, 5, 2] and sum(counts) == 12


def test_deterministic_proposals_do_not_depend_on_the_seed(models):
    model = models[MDLMForDiffusionLM]
    runs = [model.generate(max_length=10, num_inference_steps=4, sampler="confidence", seed=s) for s in (0, 1)]
    assert torch.equal(*runs)


def test_greedy_decoding_proposes_argmaxes_and_keeps_the_ranking(models):
    """do_sample=False with a confidence sampler means argmax proposals, not top_k=1 (which would give
    every position confidence 1: threshold would commit everything at once)."""
    model = models[MDLMForDiffusionLM]
    common = dict(max_length=10, num_inference_steps=20, sampler="threshold", sampler_kwargs={"threshold": 0.9})
    greedy = model.generate(do_sample=False, seed=0, output_trajectory=True, return_dict_in_generate=True, **common)
    assert torch.equal(greedy.sequences, model.generate(seed=1, **common))
    assert int((greedy.trajectory[0] != MASK).sum()) < 10
    with pytest.raises(ValueError, match="do_sample=False is greedy decoding"):
        model.generate(do_sample=False, max_length=6, sampler="confidence", sampler_kwargs={"deterministic": False})


def test_reproducible_with_supplied_uniform_noise(models):
    for model_class in (MDLMForDiffusionLM, SEDDForDiffusionLM):
        runs = []
        for _ in range(2):
            g = torch.Generator().manual_seed(0)
            runs.append(
                models[model_class].generate(
                    max_length=10,
                    num_inference_steps=3,
                    sampler="confidence",
                    sampler_kwargs={"deterministic": False, "tokens_per_step": 1},  # masks left: the denoise draws too
                    uniform_noise_fn=lambda shape, g=g: torch.rand(shape, generator=g),
                )  # fmt: skip
            )
        assert torch.equal(*runs) and (runs[0] != MASK).all()


def test_threshold_and_entropy_bound_choose_how_many(models):
    model = models[MDLMForDiffusionLM]

    def counts(sampler, **kwargs):
        out = model.generate(
            max_length=10, num_inference_steps=20, sampler=sampler, sampler_kwargs=kwargs, seed=0,
            output_trajectory=True, return_dict_in_generate=True,
        )  # fmt: skip
        return [10 - int((out.trajectory[0] == MASK).sum())] + committed_per_step(out.trajectory)

    assert counts("threshold", threshold=1.0)[:10] == [1] * 10  # nothing is certain: one per step
    assert counts("threshold", threshold=1e-9)[0] == 10  # everything at once
    assert counts("entropy_bounded", gamma=1e-9)[:10] == [1] * 10
    assert counts("entropy_bounded", gamma=1e9)[0] == 10


def test_sedd_reads_its_p0_through_the_score():
    """On the absorbing graph the SEDD score normalised over clean tokens is p0 (RADD): with exact
    models it equals MDLM's posterior at every masked position."""
    oracle = ExactOracle.random(4, 3, graph="absorbing", seed=0)
    mdlm = oracle_model(MDLMForDiffusionLM, oracle, dtype=torch.float64)
    sedd = oracle_model(SEDDForDiffusionLM, oracle, dtype=torch.float64, scale_by_sigma=True)
    x = torch.tensor([[3, 3, 3], [0, 3, 1], [3, 2, 3]])
    t = torch.full((3,), 0.5, dtype=torch.float64)
    log_p = mdlm(input_ids=x, timesteps=t).logits
    from_score = clean_log_probs(sedd(input_ids=x, timesteps=t).logits, "log_score", 3)
    masked = x == 3
    torch.testing.assert_close(from_score[masked].exp()[:, :3], log_p[masked].exp()[:, :3])


# --- semi-autoregressive blocks ---------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["confidence", "threshold", "entropy_bounded", "ancestral"])
def test_blocks_are_decoded_left_to_right(models, sampler):
    model = models[MDLMForDiffusionLM]
    prompt = torch.tensor([[1, 2], [3, 4]])
    out = model.generate(
        input_ids=prompt, max_new_tokens=10, block_length=4, num_inference_steps=7, sampler=sampler, seed=0,
        output_trajectory=True, return_dict_in_generate=True,
    )  # fmt: skip
    blocks = [(2, 6), (6, 10), (10, 12)]  # steps 3, 2, 2
    assert torch.equal(out.sequences[:, :2], prompt) and (out.sequences != MASK).all()
    for x in out.trajectory:
        for (lo, hi), (nlo, nhi) in zip(blocks, blocks[1:]):
            if (x[:, nlo:nhi] != MASK).any():  # a later block moves only after this one is done
                assert (x[:, lo:hi] != MASK).all()
    # each block is finished by the end of its share of the steps
    assert (out.trajectory[2][:, 2:6] != MASK).all() and (out.trajectory[2][:, 6:] == MASK).all()
    assert (out.trajectory[4][:, 6:10] != MASK).all() and (out.trajectory[4][:, 10:] == MASK).all()


def test_blocks_with_infilling_and_bad_block_options(models):
    model = models[MDLMForDiffusionLM]
    ids = torch.tensor([[1, MASK, MASK, 4, MASK, 6, MASK, MASK]])
    x = model.generate(
        input_ids=ids, infill_mask=ids == MASK, block_length=3, num_inference_steps=6, sampler="confidence"
    )
    assert torch.equal(x[ids != MASK], ids[ids != MASK]) and (x != MASK).all()
    with pytest.raises(ValueError, match="num_inference_steps .* at least the number of blocks"):
        model.generate(max_length=12, block_length=2, num_inference_steps=5, sampler="confidence")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="block_length must be a positive integer"):
            model.generate(max_length=12, block_length=bad)
    with pytest.raises(ValueError, match="block_length .* config.block_size"):
        models[BD3LMForDiffusionLM].generate(max_length=8, block_length=4)
    with pytest.raises(ValueError, match="block_length needs a sampler that steps on the time grid"):
        model.generate(max_length=8, block_length=4, sampler="first_hitting")
    with pytest.raises(ValueError, match="block_length keeps later blocks masked"):
        testing.tiny_model("sedd", graph="uniform").generate(max_length=8, block_length=4)
    with pytest.raises(ValueError, match="adaptive stopping.* block by block"):
        models[BD3LMForDiffusionLM].generate(max_length=8, stability_threshold=1, confidence_threshold=0.5)


# --- inside BD3-LM's blocks -------------------------------------------------------------------
@pytest.mark.parametrize("sampler,kwargs", SAMPLERS, ids=IDS)
def test_bd3lm_blocks_run_the_samplers(models, sampler, kwargs):
    model = models[BD3LMForDiffusionLM]  # block_size 4
    common = dict(sampler=sampler, sampler_kwargs=kwargs, num_inference_steps=4, seed=0)
    out = model.generate(
        max_length=12, num_return_sequences=3, return_dict_in_generate=True, output_trajectory=True, **common
    )
    assert out.sequences.shape == (3, 12) and (out.sequences != MASK).all()
    for before, after in zip(out.trajectory, out.trajectory[1:]):
        kept = before != MASK
        assert torch.equal(after[kept], before[kept])
    prompt = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    x = model.generate(input_ids=prompt, max_new_tokens=7, **common)
    assert torch.equal(x[:, :5], prompt) and (x != MASK).all()
    ids = torch.tensor([[1, MASK, MASK, 4, MASK, 6, 7, MASK]] * 2)
    x = model.generate(input_ids=ids, infill_mask=ids == MASK, **common)
    assert torch.equal(x[ids != MASK], ids[ids != MASK]) and (x != MASK).all()


def test_bd3lm_confidence_spreads_each_block_over_its_steps(models):
    out = models[BD3LMForDiffusionLM].generate(
        max_length=8, num_inference_steps=3, sampler="confidence", seed=0, output_trajectory=True,
        return_dict_in_generate=True,
    )  # fmt: skip
    masked = [int((x == MASK).sum()) for x in out.trajectory]
    assert masked == [6, 5, 4, 2, 1, 0]  # 4 tokens per block over 3 steps: 2, 1, 1


# --- bad parameters: clear errors before the loop ---------------------------------------------
@pytest.mark.parametrize(
    "sampler,kwargs,message",
    [
        ("threshold", {"threshold": 0.0}, r"threshold must be a number in \(0, 1\]"),
        ("threshold", {"threshold": 1.5}, r"threshold must be a number in \(0, 1\]"),
        ("threshold", {"threshold": -0.1}, r"threshold must be a number in \(0, 1\]"),
        ("threshold", {"threshold": "high"}, r"threshold must be a number in \(0, 1\]"),
        ("threshold", {"ordering": "entropy"}, r"ordering must be one of \('top_prob', 'margin'\)"),
        ("confidence", {"tokens_per_step": 0}, "tokens_per_step must be a positive integer"),
        ("confidence", {"tokens_per_step": -3}, "tokens_per_step must be a positive integer"),
        ("confidence", {"tokens_per_step": 2.5}, "tokens_per_step must be a positive integer"),
        ("confidence", {"ordering": "random"}, "ordering must be one of"),
        ("confidence", {"deterministic": "yes"}, "deterministic must be True or False"),
        ("entropy_bounded", {"gamma": 0.0}, "gamma must be a finite number > 0"),
        ("entropy_bounded", {"gamma": -1.0}, "gamma must be a finite number > 0"),
        ("entropy_bounded", {"gamma": float("inf")}, "gamma must be a finite number > 0"),
        ("confidence", {"steps": 3}, "sampler_kwargs .* do not fit sampler 'confidence'"),
    ],
)
def test_bad_parameters_raise_before_the_loop(models, sampler, kwargs, message):
    steps = []
    with pytest.raises(ValueError, match=message):
        models[MDLMForDiffusionLM].generate(
            max_length=6, sampler=sampler, sampler_kwargs=kwargs, callback=lambda *a: steps.append(a)
        )
    assert steps == []


def test_masked_samplers_refuse_the_uniform_graph():
    model = testing.tiny_model("sedd", graph="uniform")
    with pytest.raises(ValueError, match="needs an absorbing"):
        model.generate(max_length=6, sampler="confidence")
    with pytest.raises(ValueError, match="adaptive stopping"):
        model.generate(max_length=6, stability_threshold=1, confidence_threshold=0.5)


# --- adaptive stopping ------------------------------------------------------------------------
def test_stable_and_confident_rule():
    criterion = StableAndConfidentStoppingCriteria(stability_threshold=2, confidence_threshold=0.1, mask_token_id=3)
    sure = torch.log(torch.tensor([[[0.999, 5e-4, 5e-4, 0.0]] * 2, [[0.5, 0.25, 0.25, 0.0]] * 2]))  # [2, 2, 4]
    x = torch.tensor([[3, 1], [3, 3]])
    seen = [criterion(x, sure).tolist() for _ in range(3)]
    assert seen == [[False, False], [False, False], [True, False]]  # stable after 2 equal canvases; row 1 unsure
    criterion.reset()
    assert criterion(x, sure).tolist() == [False, False]
    finished = torch.zeros(2, dtype=torch.bool)
    always = StableAndConfidentStoppingCriteria(0, 10.0, mask_token_id=3)
    new_x, finished, newly = stop_finished_rows(StoppingCriteriaList([always]), x, sure, finished, 3)
    assert newly.all() and torch.equal(new_x, torch.tensor([[0, 1], [0, 0]]))  # the argmax canvas
    for bad in ({"stability_threshold": -1}, {"stability_threshold": 1.5}, {"confidence_threshold": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            StableAndConfidentStoppingCriteria(**{"stability_threshold": 1, "confidence_threshold": 1.0, **bad})


def test_adaptive_stopping_saves_function_evaluations(models):
    model = models[MDLMForDiffusionLM]
    common = dict(max_length=12, num_return_sequences=2, num_inference_steps=12, sampler="confidence", seed=0)
    full = model.generate(return_dict_in_generate=True, **common)
    assert full.num_function_evaluations == 13 and full.num_function_evaluations_saved is None
    stopped = model.generate(
        stability_threshold=1, confidence_threshold=100.0, return_dict_in_generate=True, **common
    )  # confident at once: stops as soon as the argmax canvas repeats
    assert (stopped.sequences != MASK).all()
    assert stopped.num_function_evaluations == 2 and stopped.num_function_evaluations_saved == 11
    # a finished canvas has no entropy left: the last step stops it, saving the noise removal's call
    done = model.generate(stability_threshold=1, confidence_threshold=1e-9, return_dict_in_generate=True, **common)
    assert done.num_function_evaluations == 12 and done.num_function_evaluations_saved == 1
    assert torch.equal(done.sequences, full.sequences)
    never = model.generate(stability_threshold=50, confidence_threshold=1e-9, return_dict_in_generate=True, **common)
    assert never.num_function_evaluations == 13 and never.num_function_evaluations_saved == 0
    assert torch.equal(never.sequences, full.sequences)
    with pytest.raises(ValueError, match="needs both stability_threshold and confidence_threshold"):
        model.generate(max_length=6, stability_threshold=2)
    with pytest.raises(ValueError, match="confidence_threshold must be a number > 0"):
        model.generate(max_length=6, stability_threshold=2, confidence_threshold=-1.0)


def test_options_survive_save_pretrained(models, tmp_path):
    model = models[MDLMForDiffusionLM]
    model.generation_config.update(
        sampler="threshold", sampler_kwargs={"threshold": 0.7, "ordering": "margin"}, block_length=4,
        stability_threshold=2, confidence_threshold=0.5,
    )  # fmt: skip
    try:
        model.save_pretrained(tmp_path)
        loaded = MDLMForDiffusionLM.from_pretrained(tmp_path).generation_config
    finally:
        model.generation_config = model._default_generation_config()
    assert loaded.sampler == "threshold" and loaded.sampler_kwargs == {"threshold": 0.7, "ordering": "margin"}
    assert (loaded.block_length, loaded.stability_threshold, loaded.confidence_threshold) == (4, 2, 0.5)


# --- bias on the enumerable toy: reported, not assumed ----------------------------------------
NUM_SAMPLES = 4000


def test_total_variation_against_steps_is_reported(capsys):
    """Exact denoisers on a 3-token toy: the ancestral sampler reaches p_data as steps grow; the
    confidence and threshold samplers are biased when they commit several tokens per step, or rank
    by the probability of the token they drew (their TV is printed)."""
    torch.set_num_threads(1)
    oracle = ExactOracle.random(4, 3, graph="absorbing", seed=0)
    model = oracle_model(MDLMForDiffusionLM, oracle)
    floor = np.mean(
        [oracle.total_variation(oracle.sample(NUM_SAMPLES, torch.Generator().manual_seed(s))) for s in range(3)]
    )
    runs = {
        "ancestral": ("ancestral", {}),
        "confidence top_prob": ("confidence", {"deterministic": False}),
        "confidence margin": ("confidence", {"ordering": "margin", "deterministic": False}),
        "confidence entropy": ("confidence", {"ordering": "entropy", "deterministic": False}),
        "threshold 0.9": ("threshold", {"threshold": 0.9, "deterministic": False}),
        "entropy_bounded 0.1": ("entropy_bounded", {"gamma": 0.1}),
    }
    steps = (1, 2, 3, 32)
    table = {}
    for label, (sampler, kwargs) in runs.items():
        for n in steps:
            x = model.generate(
                max_length=3, num_return_sequences=NUM_SAMPLES, num_inference_steps=n, sampler=sampler,
                sampler_kwargs=kwargs, generator=torch.Generator().manual_seed(n),
            )  # fmt: skip
            assert (x != oracle.mask_token_id).all()
            table[label, n] = oracle.total_variation(x)
    with capsys.disabled():
        print(f"\nTV to p_data ({NUM_SAMPLES} samples; exact-sampling floor {floor:.3f})")
        print(f"{'sampler':<22}" + "".join(f"{f'steps={n}':>10}" for n in steps))
        for label in runs:
            print(f"{label:<22}" + "".join(f"{table[label, n]:>10.3f}" for n in steps))
    assert all(0.0 <= tv <= 1.0 for tv in table.values())
    assert table["ancestral", 32] < floor + 0.03
    # one token per step (steps >= length) at a position chosen from p_theta(. | x_t) alone (margin,
    # entropy), drawn from the exact conditional: the chain rule in an adaptive order, so exact.
    # top_prob / threshold rank by the drawn token's own probability: a selection bias that stays.
    for label in ("confidence margin", "confidence entropy"):
        assert table[label, 3] < floor + 0.03, (label, table[label, 3], floor)
