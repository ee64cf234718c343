"""``generate`` on tiny random models: shapes, conditioning, reproducibility, filters, hooks, caching.

The official init zeroes the adaLN and output layers, which would make every output independent of
the input; ``tiny_model`` redraws them so that the tests can see what the model attends to.
"""

from __future__ import annotations

import pytest
import torch

import hf_ddlm  # noqa: F401
from hf_ddlm import DiffusionGenerationConfig, MDLMForDiffusionLM, SEDDForDiffusionLM, testing
from hf_ddlm.testing import randomize_weights_

V = 13  # tiny_config's vocabulary: ids 0..11 and the mask 12
MASK = V - 1


def tiny_model(model_class, seed=0, **overrides):
    """The shared tiny model with its zero-initialised layers (adaLN, output head) redrawn."""
    model = testing.tiny_model(model_class.config_class.model_type, seed=seed, randomize=False, **overrides)
    return randomize_weights_(model, perturb_norms=False)


# (model class, sampler, sampler_kwargs): every sampler with the model output it reads
ABSORBING_RUNS = [
    (SEDDForDiffusionLM, "analytic", {}),
    (SEDDForDiffusionLM, "euler", {}),
    (MDLMForDiffusionLM, "ancestral", {}),
    (MDLMForDiffusionLM, "ancestral", {"move_chance": "linear"}),
]
RUN_IDS = ["sedd-analytic", "sedd-euler", "mdlm-ancestral", "mdlm-ancestral-linear"]


@pytest.fixture(scope="module")
def models():
    return {SEDDForDiffusionLM: tiny_model(SEDDForDiffusionLM), MDLMForDiffusionLM: tiny_model(MDLMForDiffusionLM)}


@pytest.mark.parametrize("model_class", [SEDDForDiffusionLM, MDLMForDiffusionLM])
def test_a_left_padded_row_generates_what_it_generates_alone(models, model_class):
    """With one step and top_k=1 generation is deterministic (the argmax of the fully masked
    continuation), so a left-padded row must give exactly its unpadded result. Padding shifts the
    row's absolute positions, which changes nothing: rotary attention scores depend only on
    relative positions, and pads are never attended to."""
    model = models[model_class]
    kwargs = dict(max_new_tokens=7, num_inference_steps=1, top_k=1, seed=0)
    alone = [
        model.generate(input_ids=torch.tensor([row]), **kwargs)[0, len(row) :] for row in ([3, 4, 5], [6, 7, 8, 9, 10])
    ]
    batch = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 8, 9, 10]])
    padded = model.generate(input_ids=batch, attention_mask=torch.tensor([[0, 0, 1, 1, 1], [1] * 5]), **kwargs)
    assert torch.equal(padded[0, 5:], alone[0]) and torch.equal(padded[1, 5:], alone[1])


@pytest.mark.parametrize("model_class,sampler,sampler_kwargs", ABSORBING_RUNS, ids=RUN_IDS)
def test_unconditional_shapes_and_no_mask_left(models, model_class, sampler, sampler_kwargs):
    model = models[model_class]
    out = model.generate(
        max_length=10,
        num_return_sequences=3,
        num_inference_steps=8,
        sampler=sampler,
        sampler_kwargs=sampler_kwargs,
        seed=0,
    )
    assert out.shape == (3, 10) and out.dtype == torch.long
    assert ((out >= 0) & (out < MASK)).all(), "the absorbing sampler left a mask token or an invalid id"


def test_default_length_is_the_training_length(models):
    out = models[MDLMForDiffusionLM].generate(num_inference_steps=4, seed=0)
    assert out.shape == (1, models[MDLMForDiffusionLM].config.max_position_embeddings)


@pytest.mark.parametrize("sampler", ["analytic", "euler"])
def test_uniform_graph_generates_valid_ids(sampler):
    model = tiny_model(SEDDForDiffusionLM, graph="uniform", noise_schedule="geometric")
    out = model.generate(max_length=9, num_return_sequences=2, num_inference_steps=6, sampler=sampler, seed=0)
    assert out.shape == (2, 9) and ((out >= 0) & (out < V)).all()


@pytest.mark.parametrize("model_class,sampler,sampler_kwargs", ABSORBING_RUNS[::2], ids=RUN_IDS[::2])
def test_prompt_is_kept(models, model_class, sampler, sampler_kwargs):
    model = models[model_class]
    prompt = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    out = model.generate(input_ids=prompt, max_new_tokens=6, num_inference_steps=8, sampler=sampler, seed=0)
    assert out.shape == (2, 10)
    assert torch.equal(out[:, :4], prompt)
    assert (out[:, 4:] != MASK).all()
    out = model.generate(input_ids=prompt, max_length=7, num_return_sequences=2, num_inference_steps=4, seed=0)
    assert out.shape == (4, 7)
    assert torch.equal(out[:, :4], prompt.repeat_interleave(2, dim=0))


@pytest.mark.parametrize("model_class", [SEDDForDiffusionLM, MDLMForDiffusionLM])
def test_left_padding_is_kept_and_never_attended(models, model_class):
    """Padding keeps its ids, and its ids do not matter: with the same seed, changing them leaves
    the continuation unchanged (and it does change without the attention mask)."""
    model = models[model_class]
    prompt = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 8, 9, 10]])
    attention_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    other_pads = prompt.clone()
    other_pads[0, :2] = torch.tensor([11, 7])
    kwargs = dict(max_new_tokens=7, num_inference_steps=10, seed=3)
    out = model.generate(input_ids=prompt, attention_mask=attention_mask, **kwargs)
    assert torch.equal(out[:, :5], prompt)
    assert (out[:, 5:] != MASK).all()
    out_other = model.generate(input_ids=other_pads, attention_mask=attention_mask, **kwargs)
    assert torch.equal(out_other[:, :5], other_pads)
    assert torch.equal(out_other[:, 5:], out[:, 5:])
    # the test can fail: the unmasked model does read the pad ids
    unmasked = model.generate(input_ids=prompt, **kwargs)
    unmasked_other = model.generate(input_ids=other_pads, **kwargs)
    assert not torch.equal(unmasked[0, 5:], unmasked_other[0, 5:])


@pytest.mark.parametrize("model_class,sampler,sampler_kwargs", ABSORBING_RUNS, ids=RUN_IDS)
def test_infilling_keeps_fixed_positions(models, model_class, sampler, sampler_kwargs):
    model = models[model_class]
    ids = torch.tensor([[1, MASK, MASK, 4, MASK, 6, MASK, MASK], [MASK, 2, 2, MASK, MASK, MASK, 3, 3]])
    infill = ids == MASK
    out = model.generate(
        input_ids=ids, infill_mask=infill, num_inference_steps=8, sampler=sampler, sampler_kwargs=sampler_kwargs, seed=1
    )
    assert out.shape == ids.shape
    assert torch.equal(out[~infill], ids[~infill])
    assert (out != MASK).all()


@pytest.mark.parametrize("model_class", [SEDDForDiffusionLM, MDLMForDiffusionLM])
def test_reproducible_with_seed_or_generator(models, model_class):
    model = models[model_class]
    kwargs = dict(max_length=12, num_return_sequences=2, num_inference_steps=10)
    a = model.generate(seed=7, **kwargs)
    b = model.generate(seed=7, **kwargs)
    c = model.generate(generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, model.generate(seed=8, **kwargs))


def test_batch_rows_are_sampled_independently(models):
    out = models[MDLMForDiffusionLM].generate(max_length=12, num_return_sequences=4, num_inference_steps=10, seed=0)
    assert len({tuple(row.tolist()) for row in out}) > 1


@pytest.mark.parametrize("model_class", [SEDDForDiffusionLM, MDLMForDiffusionLM])
def test_temperature_top_k_top_p_are_accepted(models, model_class):
    model = models[model_class]
    base = model.generate(max_length=10, num_inference_steps=8, seed=0)
    for kwargs in (dict(temperature=0.7), dict(top_k=3), dict(top_p=0.8), dict(temperature=1.3, top_k=5, top_p=0.9)):
        out = model.generate(max_length=10, num_inference_steps=8, seed=0, **kwargs)
        assert out.shape == base.shape and (out != MASK).all()
    # the identity settings change nothing
    assert torch.equal(base, model.generate(max_length=10, num_inference_steps=8, seed=0, temperature=1.0, top_p=1.0))


@pytest.mark.parametrize("model_class", [MDLMForDiffusionLM, SEDDForDiffusionLM])
def test_top_k_1_reveals_the_most_likely_token(models, model_class):
    """With top_k=1 every token a step unmasks is the argmax, over clean tokens, of the model's
    output at the state before that step (the output at that step's t)."""
    model = models[model_class]
    steps = 12
    out = model.generate(
        max_length=8,
        num_return_sequences=2,
        num_inference_steps=steps,
        top_k=1,
        seed=0,
        return_dict_in_generate=True,
        output_trajectory=True,
    )
    timesteps = torch.linspace(1, model.generation_config.t_min, steps + 1)
    states = [torch.full_like(out.sequences, MASK), *out.trajectory]
    revealed = 0
    for k in range(steps + 1):  # the last one is the final denoising step at t_min
        before, after = states[k], states[k + 1]
        new = (before == MASK) & (after != MASK)
        if not new.any():
            continue
        t = timesteps[min(k, steps)].expand(before.shape[0])
        with torch.no_grad():
            best = model(input_ids=before, timesteps=t).logits[..., :MASK].argmax(-1)
        assert torch.equal(after[new], best[new]), f"step {k}"
        revealed += int(new.sum())
    assert revealed == out.sequences.numel()


@pytest.mark.parametrize("noise_removal", [True, False])
def test_callback_and_streamer_see_every_step(models, noise_removal):
    model = models[MDLMForDiffusionLM]
    steps = 6

    class DraftStreamer:
        def __init__(self):
            self.drafts, self.final, self.ended = [], None, False

        def put_draft(self, x):
            self.drafts.append(x.clone())

        def put(self, x):
            self.final = x.clone()

        def end(self):
            self.ended = True

    calls = []
    streamer = DraftStreamer()
    out = model.generate(
        max_length=8,
        num_inference_steps=steps,
        noise_removal=noise_removal,
        seed=0,
        callback=lambda step, t, x: calls.append((step, t, x.clone())),
        streamer=streamer,
    )
    expected_calls = steps + int(noise_removal)
    assert [c[0] for c in calls] == list(range(expected_calls))
    ts = [c[1] for c in calls]
    assert all(a >= b for a, b in zip(ts, ts[1:])) and ts[0] == 1.0
    assert len(streamer.drafts) == expected_calls
    assert all(torch.equal(d, c[2]) for d, c in zip(streamer.drafts, calls))
    assert torch.equal(streamer.final, out) and streamer.ended
    # intermediate canvases: the masks disappear over the run
    masks = [int((d == MASK).sum()) for d in streamer.drafts]
    assert masks == sorted(masks, reverse=True) and masks[0] > 0
    if noise_removal:
        assert masks[-1] == 0


def test_progress_bar(models, capsys):
    model = models[MDLMForDiffusionLM]
    a = model.generate(max_length=8, num_inference_steps=5, seed=0, progress_bar=True)
    assert "denoising" in capsys.readouterr().err
    assert torch.equal(a, model.generate(max_length=8, num_inference_steps=5, seed=0, progress_bar=False))
    assert "denoising" not in capsys.readouterr().err


def _changed_steps(sequences_shape, trajectory, steps):
    states = [torch.full(sequences_shape, MASK, dtype=torch.long), *trajectory[:steps]]
    return sum(not torch.equal(states[k], states[k + 1]) for k in range(steps))


@pytest.mark.parametrize("sampler_kwargs", [{}, {"move_chance": "linear"}])
def test_mdlm_reuses_outputs_of_unchanged_steps(models, sampler_kwargs):
    """A model that is not time-conditioned gives the same output for the same input, so a step
    that changed nothing costs no network call: NFE = 1 + (steps that changed the canvas)."""
    model = models[MDLMForDiffusionLM]
    assert not model.config.time_conditioning
    steps, length, batch = 80, 6, 2
    kwargs = dict(
        max_length=length,
        num_return_sequences=batch,
        num_inference_steps=steps,
        sampler_kwargs=sampler_kwargs,
        return_dict_in_generate=True,
        output_trajectory=True,
    )
    cached = model.generate(seed=4, **kwargs)
    changed = _changed_steps(cached.sequences.shape, cached.trajectory, steps)
    assert cached.num_function_evaluations == 1 + changed
    assert cached.num_function_evaluations <= 1 + length * batch < steps
    uncached = model.generate(seed=4, use_cache=False, **kwargs)
    assert uncached.num_function_evaluations == steps + 1
    assert torch.equal(cached.sequences, uncached.sequences)
    assert all(torch.equal(a, b) for a, b in zip(cached.trajectory, uncached.trajectory))


def test_time_conditioned_models_never_reuse_outputs(models):
    steps = 20
    for model in (tiny_model(MDLMForDiffusionLM, time_conditioning=True), models[SEDDForDiffusionLM]):
        out = model.generate(max_length=4, num_inference_steps=steps, seed=0, return_dict_in_generate=True)
        assert out.num_function_evaluations == steps + 1


@pytest.mark.parametrize(
    "model_class,sampler,sampler_kwargs",
    [
        (SEDDForDiffusionLM, "euler", {}),
        (MDLMForDiffusionLM, "ancestral", {"move_chance": "linear"}),
    ],
    ids=["sedd", "mdlm"],
)
def test_save_pretrained_keeps_the_generation_config(model_class, sampler, sampler_kwargs, tmp_path):
    model = tiny_model(model_class)
    model.generation_config = DiffusionGenerationConfig(
        sampler=sampler, sampler_kwargs=sampler_kwargs, num_inference_steps=7, t_min=1e-4
    )
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path)
    gc = loaded.generation_config
    assert isinstance(gc, DiffusionGenerationConfig)
    assert (gc.sampler, gc.sampler_kwargs, gc.num_inference_steps, gc.t_min) == (sampler, sampler_kwargs, 7, 1e-4)
    # the saved settings drive generate: the loaded model reproduces the original's run
    loaded_out = loaded.generate(max_length=6, seed=0, return_dict_in_generate=True)
    assert loaded_out.sequences.shape == (1, 6)
    reference = model.generate(
        max_length=6, seed=0, sampler=sampler, sampler_kwargs=sampler_kwargs, num_inference_steps=7, t_min=1e-4
    )
    assert torch.equal(loaded_out.sequences, reference)


def test_generation_config_argument_overrides_the_model_default(models):
    model = models[SEDDForDiffusionLM]
    gc = DiffusionGenerationConfig(sampler="euler", num_inference_steps=5)
    out = model.generate(generation_config=gc, max_length=6, seed=0, return_dict_in_generate=True)
    assert out.num_function_evaluations == 6
    assert torch.equal(out.sequences, model.generate(max_length=6, seed=0, sampler="euler", num_inference_steps=5))
    assert model.generation_config.sampler == "analytic"  # the model's own config is untouched


def test_default_generation_config_takes_special_token_ids_from_the_model_config(tmp_path):
    """As GenerationConfig.from_model_config does for AR models: ids stored on the config carry over
    (so a Trainer given a tokenizer has nothing to realign), and they survive save/load."""
    model = tiny_model(MDLMForDiffusionLM, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    gc = model.generation_config
    assert (gc.pad_token_id, gc.eos_token_id, gc.bos_token_id) == (0, 1, 1) and gc.sampler == "ancestral"
    plain = tiny_model(MDLMForDiffusionLM)
    assert plain.generation_config.pad_token_id is None
    model.save_pretrained(tmp_path)
    reloaded = MDLMForDiffusionLM.from_pretrained(tmp_path)
    assert (reloaded.generation_config.pad_token_id, reloaded.generation_config.eos_token_id) == (0, 1)
