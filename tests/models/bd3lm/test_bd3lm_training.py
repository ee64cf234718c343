"""The stock ``transformers.Trainer`` trains BD3-LM on variable-length rows, with padding honoured."""

from __future__ import annotations

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import set_seed

from hf_ddlm.data import DiffusionDataCollator

from .bd3lm_testlib import tiny_bd3lm

V, L, BLOCK, PAD = 13, 16, 4, 0


def toy_dataset(rows=64, seed=0):
    """A learnable distribution: 3 fixed sequences, cut to lengths that are not multiples of the
    block size (the collator pads them to whole blocks)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(1, V - 1, (3, L), generator=g)
    lengths = [16, 13, 10, 7]
    ids = [patterns[i % 3][: lengths[i % 4]].tolist() for i in range(rows)]
    return Dataset.from_dict({"input_ids": ids})


def test_trainer_trains_bd3lm_with_padded_batches(tmp_path):
    model = tiny_bd3lm(block_size=BLOCK, length=L, layers=1, randomize=False).train()
    data = toy_dataset()
    collate = DiffusionDataCollator(pad_token_id=PAD, pad_to_multiple_of=BLOCK)
    args = TrainingArguments(
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
        max_steps=120,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data, data_collator=collate)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 120 and all(torch.isfinite(torch.tensor(losses)))
    early, late = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert late < 0.7 * early, (early, late)
    set_seed(0)
    metrics = trainer.evaluate()
    assert torch.isfinite(torch.tensor(metrics["eval_loss"])) and metrics["eval_loss"] < early


def test_padding_changes_no_real_position():
    # the same rows with and without extra padding blocks: the same per-token losses and logits
    model = tiny_bd3lm(block_size=BLOCK, length=L)
    collate = DiffusionDataCollator(pad_token_id=PAD, pad_to_multiple_of=BLOCK)
    rows = [{"input_ids": list(range(1, 9))}, {"input_ids": list(range(2, 7))}]
    small = collate(rows)  # length 8
    large = DiffusionDataCollator(pad_token_id=PAD, max_length=16)(rows)
    t = torch.tensor([[0.4, 0.7, 0.2, 0.9], [0.6, 0.3, 0.8, 0.5]])
    noisy_small = small["input_ids"].masked_fill(
        torch.rand(2, 8, generator=torch.Generator().manual_seed(0)) < 0.5, V - 1
    )
    noisy_large = torch.cat([noisy_small, large["input_ids"][:, 8:]], 1)
    with torch.no_grad():
        a = model(
            input_ids=noisy_small, labels=small["labels"], attention_mask=small["attention_mask"], timesteps=t[:, :2]
        )
        b = model(input_ids=noisy_large, labels=large["labels"], attention_mask=large["attention_mask"], timesteps=t)
    real = small["attention_mask"].bool()
    torch.testing.assert_close(a.loss_per_token, b.loss_per_token[:, :8])
    torch.testing.assert_close(a.logits[real], b.logits[:, :8][real], rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(a.loss, b.loss)
