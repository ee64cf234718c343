"""Numerics that must not corrupt training, for every method and variant: empty batches, the ends
of the time axis, half precision, and reproducible eval-mode losses."""

from __future__ import annotations

import pytest
import torch
from ecosystem.common import word_tokenizer
from transformers import Trainer, TrainingArguments

from hf_ddlm.processes import TimeSampler
from hf_ddlm.testing import tiny_model

# every method, and each variant whose loss takes another code path
VARIANTS = {
    "sedd-absorbing": ("sedd", {}),
    "sedd-uniform": ("sedd", {"graph": "uniform", "noise_schedule": "geometric"}),
    "mdlm": ("mdlm", {}),
    "bd3lm": ("bd3lm", {}),
    "d3pm-absorbing": ("d3pm", {}),
    "d3pm-uniform": ("d3pm", {"graph": "uniform"}),
    "ctmc-uniform-one_pass": ("ctmc", {}),
    "ctmc-uniform-exact": ("ctmc", {"ctmc_estimator": "exact"}),
    "ctmc-absorbing-one_pass": ("ctmc", {"graph": "absorbing"}),
    "ctmc-absorbing-exact": ("ctmc", {"graph": "absorbing", "ctmc_estimator": "exact"}),
    "csm": ("csm", {}),
}
B, L = 2, 8


def build(name, **overrides):
    method, kwargs = VARIANTS[name]
    return tiny_model(method, **{**kwargs, **overrides})


def clean(model, batch=B, length=L, seed=0):
    high = model.config.vocab_size - (1 if model.graph.mask_token_id is not None else 0)
    return torch.randint(0, high, (batch, length), generator=torch.Generator().manual_seed(seed))


def grads(model):
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


# --- 1. empty batches: loss exactly 0, zero gradients, weights untouched -------------------------
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("empty", ["labels", "attention_mask"])
def test_an_empty_batch_gives_zero_loss_and_zero_gradients(name, empty):
    model = build(name).train()
    x = clean(model)
    labels = torch.full_like(x, -100) if empty == "labels" else x
    attention_mask = torch.zeros_like(x) if empty == "attention_mask" else None
    for timesteps in (None, 0.5):
        model.zero_grad(set_to_none=True)
        out = model(
            input_ids=x,
            labels=labels,
            attention_mask=attention_mask,
            timesteps=timesteps,
            generator=torch.Generator().manual_seed(0),
        )
        assert out.loss.item() == 0.0, (timesteps, out.loss)
        assert torch.isfinite(out.loss_per_token).all() and (out.loss_per_token == 0).all()
        out.loss.backward()
        for n, g in grads(model).items():
            assert (g == 0).all(), (timesteps, n)
    # and under gradient accumulation (the Trainer passes the number of loss tokens: here 0)
    out = model(input_ids=x, labels=labels, attention_mask=attention_mask, num_items_in_batch=torch.tensor(0))
    assert out.loss.item() == 0.0


@pytest.mark.parametrize("name", VARIANTS)
def test_a_batch_with_some_empty_rows_is_finite_and_the_empty_rows_carry_nothing(name):
    model = build(name).train()
    x = clean(model)
    labels = x.clone()
    labels[1] = -100
    g = torch.Generator().manual_seed(0)
    out = model(input_ids=x, labels=labels, generator=g)
    assert torch.isfinite(out.loss) and (out.loss_per_token[1] == 0).all()
    out.loss.backward()
    assert all(torch.isfinite(g).all() for g in grads(model).values())
    assert any((g != 0).any() for g in grads(model).values())


@pytest.mark.parametrize("name", VARIANTS)
def test_an_optimiser_step_on_an_empty_batch_leaves_every_weight_unchanged(name):
    model = build(name).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    x = clean(model)
    model(input_ids=x, labels=torch.full_like(x, -100)).loss.backward()
    optimiser.step()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


@pytest.mark.parametrize("name", ["sedd-absorbing", "mdlm", "bd3lm", "d3pm-uniform", "ctmc-uniform-one_pass", "csm"])
def test_the_stock_trainer_on_empty_batches_puts_no_nan_into_the_weights(name, tmp_path):
    model = build(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = clean(model, batch=4)
    rows = [{"input_ids": row, "labels": torch.full_like(row, -100)} for row in x]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        weight_decay=0.0,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    Trainer(model=model, args=args, train_dataset=_Rows(rows)).train()
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n
        assert torch.equal(p, before[n]), n


# --- 2. the ends of the time axis --------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_t_zero_and_one_in_sampling_mode_give_finite_outputs(name):
    model = build(name)
    x = clean(model)
    if model.graph.mask_token_id is not None:
        x[:, ::2] = model.graph.mask_token_id
    for t in (0.0, 1.0):
        assert torch.isfinite(model(input_ids=x, timesteps=t).logits).all(), t


@pytest.mark.parametrize("name", VARIANTS)
def test_the_loss_is_finite_at_t_one_and_t_zero_is_rejected_naming_timesteps(name):
    model = build(name)
    x0 = clean(model)
    x1 = model.graph.sample_prior(x0.shape, generator=torch.Generator().manual_seed(0))
    out = model(input_ids=x1, labels=x0, timesteps=1.0)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()
    if not model.uses_time:  # CSM: no forward process, timesteps are ignored
        assert torch.isfinite(model(input_ids=x0, labels=x0, timesteps=0.0).loss)
        return
    with pytest.raises(ValueError, match=r"timesteps.*\(0, 1\]"):
        model(input_ids=x0, labels=x0, timesteps=0.0)
    with pytest.raises(ValueError, match=r"timesteps.*\(0, 1\]"):
        model(input_ids=x0, labels=x0, timesteps=torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("sedd-absorbing", {"noise_eps": 0.0}),
        ("sedd-uniform", {"noise_schedule": "loglinear", "noise_eps": 0.0}),
        ("mdlm", {"noise_eps": 0.0, "time_conditioning": True}),
        ("ctmc-uniform-exact", {"noise_schedule": "loglinear", "noise_eps": 0.0}),
    ],
)
def test_t_one_is_finite_where_sigma_one_is_infinite(name, overrides):
    # the log-linear schedule with noise_eps = 0: sigma(1) = dsigma(1) = inf
    model = build(name, **overrides)
    x0 = clean(model)
    x1 = model.graph.sample_prior(x0.shape, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(model(input_ids=x1, timesteps=1.0).logits).all()
    out = model(input_ids=x1, labels=x0, timesteps=1.0)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()


def test_a_drawn_t_is_never_zero(monkeypatch):
    # u = 0 is a possible draw of torch.rand; with sampling_eps = 0 it would be t = 0
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.zeros(shape, dtype=kw.get("dtype")))
    for antithetic in (False, True):
        t = TimeSampler(0.0, antithetic)(4)
        assert (t > 0).all(), antithetic


@pytest.mark.parametrize("method", ["sedd", "mdlm", "ctmc"])
def test_training_with_sampling_eps_zero_stays_finite_when_t_zero_is_drawn(method, monkeypatch):
    model = build({"sedd": "sedd-absorbing", "ctmc": "ctmc-absorbing-exact"}.get(method, method), sampling_eps=0.0)
    model.train()
    x = clean(model)
    real_rand = torch.rand

    def rand(*shape, **kw):  # the first draw (t) is 0
        monkeypatch.setattr(torch, "rand", real_rand)
        return torch.zeros(*shape, dtype=kw.get("dtype") or torch.float32)

    monkeypatch.setattr(torch, "rand", rand)
    out = model(input_ids=x, labels=x)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(g).all() for g in grads(model).values())


# --- 3. half precision ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward_backward_and_generate(name, dtype):
    model = build(name).to(dtype).train()
    x = clean(model)
    out = model(input_ids=x, labels=x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss), out.loss
    out.loss.backward()
    assert all(torch.isfinite(g).all() for g in grads(model).values())
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=x, timesteps=0.5).logits).all()
        kwargs = {"max_length": L} if model.config.model_type != "d3pm" else {}
        steps = {"num_inference_steps": 4} if model.config.model_type not in ("d3pm", "bd3lm") else {}
        sample = model.generate(**kwargs, **steps, seed=0)
    assert sample.shape[-1] >= 1 and (sample >= 0).all() and (sample < model.config.vocab_size).all()


def test_the_cli_generates_in_float16(tmp_path, capsys):
    from hf_ddlm.cli import main

    model = tiny_model("mdlm")
    model.save_pretrained(tmp_path / "m")
    word_tokenizer().save_pretrained(tmp_path / "m")
    argv = ["generate", str(tmp_path / "m"), "--length", "8", "--steps", "4", "--seed", "0", "--json", "--quiet"]
    assert main([*argv, "--dtype", "float16", "--device", "cpu"]) == 0
    assert "ids" in capsys.readouterr().out


# --- 4. reproducible eval-mode losses ------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_eval_mode_losses_are_reproducible(name):
    model = build(name).eval()
    x = clean(model)
    # with a generator: the same draw of t, x_t (and CSM's neighbours)
    a = model(input_ids=x, labels=x, generator=torch.Generator().manual_seed(3))
    b = model(input_ids=x, labels=x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.noisy_input_ids, b.noisy_input_ids)
    # without one: eval mode draws from its own seeded generator, not the global RNG
    torch.manual_seed(1)
    state = torch.get_rng_state()
    c = model(input_ids=x, labels=x).loss
    assert torch.equal(torch.get_rng_state(), state), "an eval-mode loss must not consume the global RNG"
    torch.manual_seed(2)
    assert torch.equal(c, model(input_ids=x, labels=x).loss)
    # training mode still draws fresh noise from the global RNG
    model.train()
    torch.manual_seed(1)
    e = model(input_ids=x, labels=x).loss
    torch.manual_seed(1)
    assert torch.equal(e, model(input_ids=x, labels=x).loss)
