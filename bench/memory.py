"""What the memory benchmarks share: the peak of one step, and a DiT whose zero-initialised parts
are made random so that every kernel does real work."""

from __future__ import annotations

import resource

import torch


def peak_bytes(fn, device) -> int:
    """Peak memory ``fn()`` adds: CUDA ``max_memory_allocated`` above what was allocated before; on
    CPU the growth of the process's peak RSS (so run each configuration in a fresh process)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024


@torch.no_grad()
def randomize_zero_init(model):
    """The DiT's adaLN and output head start at zero; random values make the step's work real."""
    for name, p in model.named_parameters():
        if "adaLN_modulation" in name or "output_layer.linear" in name:
            p.normal_(0.0, 0.02)
    return model


def training_step_peak(model, vocab_size: int, batch: int, length: int, device) -> int:
    """Peak memory of one training step (forward + backward) of ``model`` on random tokens
    [batch, length] (ids below the last, the mask), after a short warm-up step so that allocator and
    library growth is not counted."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x0 = torch.randint(0, vocab_size - 1, (batch, length), generator=g).to(device)
    model(input_ids=x0[:, :16], labels=x0[:, :16]).loss.backward()
    model.zero_grad(set_to_none=True)

    def step():
        model(input_ids=x0, labels=x0).loss.backward()

    return peak_bytes(step, device)


__all__ = ["peak_bytes", "randomize_zero_init", "training_step_peak"]
