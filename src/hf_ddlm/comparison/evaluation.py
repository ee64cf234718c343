"""The final evaluation of a trained method on the whole validation split, and its samples.

The bound and its standard errors, exactly: for validation row i (N rows of L tokens) and
Monte-Carlo pass s (S passes, ``mc_samples``), e[s, i] is one draw of the NELBO of row i (a fresh
t and x_t; a fixed seed), in nats. Then

* ``nats_per_token`` = mean over s and i of e[s, i], divided by L (the AR model: its exact NLL,
  S = 1); ``perplexity`` = exp(nats_per_token) (a bound on the perplexity for diffusion models);
* ``stderr`` = std over i of the row means mean_s e[s, i] (ddof 1) / sqrt(N) / L: the standard error
  of the estimate over both the choice of validation rows and the Monte-Carlo draws;
* ``mc_stderr`` = sqrt(mean over i of var over s of e[s, i] (ddof 1) / (S N)) / L: the Monte-Carlo
  part alone (the error of the estimate for this fixed validation split; 0 for the AR model).
"""

from __future__ import annotations

import math

import torch

from .builders import generate_samples, has_bound, is_autoregressive, row_bound


@torch.no_grad()
def final_bound(model, rows: torch.Tensor, settings) -> dict:
    if not has_bound(model):
        return {"nats_per_token": None, "perplexity": None, "stderr": None, "mc_stderr": None, "mc_samples": 0}
    model.eval()
    passes = 1 if is_autoregressive(model) else settings.mc_samples
    generator = torch.Generator(device=settings.device).manual_seed(settings.seed + 2)
    draws = []
    with torch.random.fork_rng(devices=[settings.device] if settings.device.startswith("cuda") else []):
        for _ in range(passes):
            parts = [
                row_bound(model, rows[i : i + settings.batch_size].to(settings.device), generator).cpu()
                for i in range(0, rows.shape[0], settings.batch_size)
            ]
            draws.append(torch.cat(parts))
    e = torch.stack(draws)  # [S, N] nats per row
    n, length = e.shape[1], rows.shape[1]
    mean = float(e.mean()) / length
    row_means = e.mean(0)
    stderr = float(row_means.std(unbiased=True)) / math.sqrt(n) / length if n > 1 else float("nan")
    if passes > 1:
        mc = float(e.var(0, unbiased=True).mean() / (passes * n)) ** 0.5 / length
    else:  # exact (AR), or one draw per row: the Monte-Carlo part cannot be told apart
        mc = 0.0 if is_autoregressive(model) else None
    return {
        "nats_per_token": mean,
        "perplexity": math.exp(mean),
        "stderr": stderr,
        "mc_stderr": mc,
        "mc_samples": passes,
        "rows": n,
    }


def method_samples(model, settings) -> torch.Tensor:
    model.eval()
    return generate_samples(model, settings.num_samples, settings.seq_len, settings.sample_steps, settings.seed + 3)


__all__ = ["final_bound", "method_samples"]
