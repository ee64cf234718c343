"""One builder per compared method, and the three things the harness asks of a model: the training
loss of a batch, the per-row negative log-likelihood bound, and unconditional samples.

The diffusion models share one DiT size; the autoregressive baseline is a ``transformers``
``LlamaForCausalLM`` of the same depth, width, heads and vocabulary (MLP ratio 4, like the DiT). It
reads each row after a beginning-of-text token (the tokenizer's ``<|endoftext|>``), so its exact
NLL scores all ``seq_len`` tokens of a row, like the diffusion bounds.

Method choices (the papers' defaults where they fit): SEDD with the absorbing and the uniform
graph (loglinear schedule, score entropy); MDLM (SUBS, not time-conditioned); BD3-LM with blocks of
4 and 16 (``ignore_bos=False``: a row here starts with text, not a BOS token, so position 0 is
noised and scored like every other, as in the other methods' bounds); D3PM with absorbing noise and ``d3pm_timesteps`` steps (1000 by default: the paper's T);
CTMC (tau-LDR's continuous-time ELBO) on ``ctmc_graph`` (uniform: tau-LDR's own choice); CSM
(concrete score matching on the uniform Hamming graph: it has no likelihood bound). Every diffusion
loss is a per-token mean (SEDD's ``loss_reduction="token_mean"``: its default sums over positions),
so the one learning rate means the same for all.
"""

from __future__ import annotations

import torch

from ..models import (
    BD3LMConfig,
    BD3LMForDiffusionLM,
    CSMConfig,
    CSMForDiffusionLM,
    CTMCConfig,
    CTMCForDiffusionLM,
    D3PMConfig,
    D3PMForDiffusionLM,
    MDLMConfig,
    MDLMForDiffusionLM,
    SEDDConfig,
    SEDDForDiffusionLM,
)

# method -> (config class, model class, method-specific config fields (a function of the settings))
DIFFUSION = {
    "sedd_absorb": (SEDDConfig, SEDDForDiffusionLM, lambda s: {"graph": "absorbing", "loss_reduction": "token_mean"}),
    "sedd_uniform": (SEDDConfig, SEDDForDiffusionLM, lambda s: {"graph": "uniform", "loss_reduction": "token_mean"}),
    "mdlm": (MDLMConfig, MDLMForDiffusionLM, lambda s: {}),
    "bd3lm_4": (BD3LMConfig, BD3LMForDiffusionLM, lambda s: {"block_size": 4, "ignore_bos": False}),
    "bd3lm_16": (BD3LMConfig, BD3LMForDiffusionLM, lambda s: {"block_size": 16, "ignore_bos": False}),
    "d3pm": (D3PMConfig, D3PMForDiffusionLM, lambda s: {"graph": "absorbing", "num_timesteps": s.d3pm_timesteps}),
    "ctmc": (CTMCConfig, CTMCForDiffusionLM, lambda s: {"graph": s.ctmc_graph}),
    "csm": (CSMConfig, CSMForDiffusionLM, lambda s: {}),
}

LABELS = {
    "ar": "AR (Llama)",
    "sedd_absorb": "SEDD absorb",
    "sedd_uniform": "SEDD uniform",
    "mdlm": "MDLM",
    "bd3lm_4": "BD3-LM L'=4",
    "bd3lm_16": "BD3-LM L'=16",
    "d3pm": "D3PM absorb",
    "ctmc": "CTMC (tau-LDR)",
    "csm": "CSM",
}


def method_label(method: str, settings=None) -> str:
    if settings is not None and method == "d3pm":
        return f"D3PM absorb T={settings.d3pm_timesteps}"
    if settings is not None and method == "ctmc":
        return f"CTMC {settings.ctmc_graph}"
    return LABELS[method]


def is_autoregressive(model) -> bool:
    return not hasattr(model, "negative_elbo")


def has_bound(model) -> bool:
    return is_autoregressive(model) or getattr(model, "has_likelihood_bound", True)


def build_model(method: str, settings, vocab_size: int, bos_token_id: int):
    """A freshly initialised model of ``method`` at the settings' size (seed the global RNG first)."""
    if method == "ar":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=settings.hidden_size,
            intermediate_size=4 * settings.hidden_size,
            num_hidden_layers=settings.num_layers,
            num_attention_heads=settings.num_heads,
            num_key_value_heads=settings.num_heads,
            max_position_embeddings=settings.seq_len + 1,  # the beginning-of-text token, then the row
            bos_token_id=bos_token_id,
            eos_token_id=None,  # samples run to the full length, like the diffusion canvases
            pad_token_id=bos_token_id,
        )
        model = LlamaForCausalLM(config)
        model.generation_config.eos_token_id = None
        return model
    if method not in DIFFUSION:
        raise ValueError(f"method must be one of {['ar', *DIFFUSION]}, got {method!r}")
    config_class, model_class, extra = DIFFUSION[method]
    config = config_class(
        vocab_size=vocab_size,
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        cond_dim=settings.cond_dim,
        max_position_embeddings=settings.seq_len,
        dropout=0.0,
        **extra(settings),
    )
    return model_class(config)


def _with_bos(model, ids: torch.Tensor) -> torch.Tensor:
    bos = torch.full((ids.shape[0], 1), model.config.bos_token_id, dtype=ids.dtype, device=ids.device)
    return torch.cat([bos, ids], dim=1)


def ar_token_nll(model, ids: torch.Tensor) -> torch.Tensor:
    """[B, L] exact -log p(x_l | <bos>, x_<l) of ``ids`` under the causal LM."""
    logits = model(input_ids=_with_bos(model, ids)[:, :-1]).logits.float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")


def training_loss(model, ids: torch.Tensor) -> torch.Tensor:
    """The method's own training objective on a batch of rows (per-token mean)."""
    if is_autoregressive(model):
        return ar_token_nll(model, ids).mean()
    return model(input_ids=ids, labels=ids).loss


@torch.no_grad()
def row_bound(model, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[B] float64: -log p(row) in nats, exact for the AR model, one Monte-Carlo draw of the NELBO
    (an upper bound in expectation) for a diffusion model."""
    if is_autoregressive(model):
        return ar_token_nll(model, ids).double().sum(-1)
    return model.negative_elbo(ids, num_samples=1, generator=generator).double()


@torch.no_grad()
def generate_samples(model, num: int, seq_len: int, steps: int, seed: int) -> torch.Tensor:
    """[num, seq_len] unconditional samples at temperature 1 (the model's own distribution)."""
    if is_autoregressive(model):
        with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
            torch.manual_seed(seed)
            start = torch.full((num, 1), model.config.bos_token_id, dtype=torch.long, device=model.device)
            out = model.generate(
                input_ids=start,
                attention_mask=torch.ones_like(start),
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                max_new_tokens=seq_len,
                min_new_tokens=seq_len,
            )
        return out[:, 1:].cpu()
    out = model.generate(num_return_sequences=num, max_length=seq_len, num_inference_steps=steps, seed=seed)
    return out.cpu()


@torch.no_grad()
def generative_perplexity(judge, samples: torch.Tensor, batch_size: int = 16) -> float:
    """exp of the mean per-token NLL of ``samples`` under the AR ``judge`` (every token scored)."""
    judge.eval()
    total, count = 0.0, 0
    for i in range(0, samples.shape[0], batch_size):
        ids = samples[i : i + batch_size].to(judge.device)
        total += float(ar_token_nll(judge, ids).double().sum())
        count += ids.numel()
    return float(torch.tensor(total / count).exp())


def unigram_entropy(samples: torch.Tensor) -> float:
    """Mean over samples of the entropy (nats) of each sample's own token histogram (a low value
    flags repetition), as the MDLM / ReMDM papers report it."""
    values = []
    for row in samples:
        counts = torch.unique(row, return_counts=True)[1].double()
        p = counts / counts.sum()
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)


__all__ = [
    "DIFFUSION",
    "LABELS",
    "ar_token_nll",
    "build_model",
    "generate_samples",
    "generative_perplexity",
    "has_bound",
    "is_autoregressive",
    "method_label",
    "row_bound",
    "training_loss",
    "unigram_entropy",
]
