"""Trainer runs shared by ``test_distributed.py``: imported for the one-process references, and run
under ``torchrun --nproc_per_node 2`` (gloo on CPU) for the two-process runs.

    python -m torch.distributed.run --nproc_per_node 2 tests/ecosystem/ddp_train.py OUT.json [RUN ...]

``deterministic`` datasets carry ``input_ids`` = x_t, ``labels`` = x0 (with a varying number of
-100 positions, so the token count differs between micro-batches) and ``timesteps``: the loss is
then a fixed function of the batch, and any mis-scaling across processes or accumulation steps
shows up as a different loss and different weights.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ecosystem.common import find_model, tiny_model

ROWS, STEPS, RANDOM_STEPS = 64, 6, 40
RUNS = {  # name -> (model_type, deterministic)
    "mdlm_fixed": ("mdlm", True),  # token_mean: the Trainer passes num_items_in_batch
    "sedd_fixed": ("sedd", True),  # sequence_sum: the model declines loss kwargs
    "mdlm_random": ("mdlm", False),  # t and x_t drawn in forward, as in real training
}


def dataset(model, deterministic: bool) -> Dataset:
    g = torch.Generator().manual_seed(0)
    length = model.config.max_position_embeddings
    if not deterministic:  # rows of one repeated token: learnable in a few dozen steps (copy any visible token)
        x0 = (torch.arange(ROWS) % 4 + 2)[:, None].expand(ROWS, length)
        return Dataset.from_dict({"input_ids": x0.tolist(), "labels": x0.tolist()})
    patterns = torch.randint(0, model.config.vocab_size - 1, (4, length), generator=g)
    x0 = patterns[torch.arange(ROWS) % 4]
    t = 0.05 + 0.9 * torch.rand(ROWS, generator=g)
    x_t = model.graph.sample_xt(x0, model.schedule(t).sigma, generator=g)
    labels = x0.clone()
    for i in range(ROWS):  # rows score between length / 2 and length tokens
        labels[i, length - (i % (length // 2)) :] = -100
    return Dataset.from_dict({"input_ids": x_t.tolist(), "labels": labels.tolist(), "timesteps": t.tolist()})


def run(name: str, per_device_batch: int, grad_accum: int, output_dir: str, save_dir: str | None = None) -> dict:
    model_type, deterministic = RUNS[name]
    model = tiny_model(find_model(model_type)[1], seed=0).train()
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=STEPS,
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=grad_accum,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=0.0,  # no clipping: the comparison is of the raw gradient scale
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        train_sampling_strategy="sequential",  # the same global batches in every layout
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    rows = dataset(model, deterministic)
    if not deterministic:  # a longer run, so that the curve stands out of the noise of t
        args.max_steps = RANDOM_STEPS
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    if save_dir is not None:  # every rank calls it: under FSDP the full state dict is gathered
        trainer.save_model(save_dir)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    result = {
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "params": flat.tolist(),
        "world_size": args.world_size,
    }
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered = [torch.zeros_like(flat) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, flat)
        result["ranks_agree"] = all(torch.equal(gathered[0], other) for other in gathered[1:])
    return result


def main(out_path: str, names: list[str] | None = None):
    """The runs ``names`` (all by default) with 4 rows per process; each run's final model is saved
    with ``Trainer.save_model`` to ``<out dir>/<name>/final``."""
    torch.set_num_threads(1)
    root = os.path.dirname(out_path)
    results = {
        name: run(
            name,
            per_device_batch=4,
            grad_accum=1,
            output_dir=os.path.join(root, name),
            save_dir=os.path.join(root, name, "final"),
        )
        for name in (names or RUNS)
    }
    if int(os.environ.get("RANK", "0")) == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # a clean teardown: a rank that exits while another still saves can abort in gloo's
        # background threads ("terminate called without an active exception"), seen once under load
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or None)
