"""Training one method under the shared budget: AdamW, linear warmup then cosine decay, gradient
clipping, the shared data order; the small validation subset evaluated every ``eval_every`` steps
(the plot); a checkpoint every ``checkpoint_every`` steps (:mod:`.checkpoint`)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .builders import build_model, has_bound, row_bound, training_loss
from .checkpoint import load_checkpoint, save_checkpoint
from .data import batch_indices


def lr_factor(step: int, settings) -> float:
    """Multiplier of the peak rate before optimiser step ``step`` (0-based): linear warmup over
    ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at the last step."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model, settings):
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings))
    return optimizer, scheduler


@torch.no_grad()
def subset_bound(model, rows: torch.Tensor, settings) -> float | None:
    """Nats per token on the fixed validation subset: exact NLL (AR) or one Monte-Carlo draw of the
    NELBO per row with a fixed seed (the same draws at every evaluation). The global RNG is left
    untouched, so evaluating does not change training."""
    if not has_bound(model):
        return None
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=settings.device).manual_seed(settings.seed + 1)
    total = 0.0
    with torch.random.fork_rng(devices=[settings.device] if settings.device.startswith("cuda") else []):
        for i in range(0, rows.shape[0], settings.batch_size):
            total += float(row_bound(model, rows[i : i + settings.batch_size].to(settings.device), generator).sum())
    model.train(was_training)
    return total / rows.numel()


def train_method(method: str, settings, data, run_dir, log=print, stop_after: int | None = None):
    """Train ``method`` to ``settings.steps`` (resuming from ``run_dir/checkpoint`` if there) and
    return (model, state). ``stop_after``: stop (after a checkpoint) once this many steps are done;
    the tests use it to simulate a killed run."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)  # the same initialisation seed for every method
    model = build_model(method, settings, len(data.tokenizer), data.tokenizer.bos_token_id).to(settings.device)
    model.train()
    optimizer, scheduler = make_optimizer(model, settings)
    state = {"step": 0, "train_seconds": 0.0, "history": [], "last_loss": None}
    if (run_dir / "checkpoint" / "state.json").is_file():
        state = load_checkpoint(run_dir / "checkpoint", model, optimizer, scheduler)
        log(f"[{method}] resumed at step {state['step']}")
    else:
        state["history"].append(_point(model, data, settings, 0, 0.0, None))
    params = [p for p in model.parameters() if p.requires_grad]
    window, window_start = [], time.perf_counter()
    while state["step"] < settings.steps:
        step = state["step"]
        ids = data.train[batch_indices(step, data.train.shape[0], settings.batch_size, settings.seed)]
        start = time.perf_counter()
        loss = training_loss(model, ids.to(settings.device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if settings.device.startswith("cuda"):
            torch.cuda.synchronize()
        state["train_seconds"] += time.perf_counter() - start
        state["step"] = step = step + 1
        window.append(float(loss.detach()))
        if step % settings.eval_every == 0 or step == settings.steps:
            state["last_loss"] = sum(window) / len(window)
            state["history"].append(_point(model, data, settings, step, state["train_seconds"], state["last_loss"]))
            bound = state["history"][-1]["subset_nats_per_token"]
            log(
                f"[{method}] step {step}/{settings.steps}  loss {state['last_loss']:.3f}  "
                + (f"subset bound {bound:.3f} nats/token  " if bound is not None else "")
                + f"{state['train_seconds']:.1f} s training ({time.perf_counter() - window_start:.0f} s wall)"
            )
            window, window_start = [], time.perf_counter()
        if step < settings.steps and (step % settings.checkpoint_every == 0 or step == stop_after):
            save_checkpoint(run_dir / "checkpoint", model, optimizer, scheduler, state)
        if stop_after is not None and step >= stop_after and step < settings.steps:
            return model, state
    model.eval()
    return model, state


def _point(model, data, settings, step, seconds, loss) -> dict:
    return {
        "step": step,
        "tokens": step * settings.tokens_per_step,
        "train_seconds": seconds,
        "train_loss": loss,
        "subset_nats_per_token": subset_bound(model, data.eval_subset, settings),
    }


__all__ = ["lr_factor", "make_optimizer", "subset_bound", "train_method"]
