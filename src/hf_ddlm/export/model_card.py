"""The model card (README.md) of an exported model."""

from __future__ import annotations

import inspect
import sys

# model_type -> (method name, paper title, paper URL)
METHODS = {
    "sedd": (
        "SEDD (Score Entropy Discrete Diffusion)",
        "Discrete Diffusion Modeling by Estimating the Ratios of the Data Distribution (Lou, Meng & Ermon, ICML 2024)",
        "https://arxiv.org/abs/2310.16834",
    ),
    "mdlm": (
        "MDLM (Masked Diffusion Language Model)",
        "Simple and Effective Masked Diffusion Language Models (Sahoo et al., NeurIPS 2024)",
        "https://arxiv.org/abs/2406.07524",
    ),
    "bd3lm": (
        "BD3-LM (Block Discrete Denoising Diffusion Language Model)",
        "Block Diffusion: Interpolating Between Autoregressive and Diffusion Language Models (Arriola et al., ICLR 2025)",
        "https://arxiv.org/abs/2503.09573",
    ),
    "d3pm": (
        "D3PM (Discrete Denoising Diffusion Probabilistic Model)",
        "Structured Denoising Diffusion Models in Discrete State-Spaces (Austin et al., NeurIPS 2021)",
        "https://arxiv.org/abs/2107.03006",
    ),
    "ctmc": (
        "tau-LDR (continuous-time discrete diffusion)",
        "A Continuous Time Framework for Discrete Denoising Models (Campbell et al., NeurIPS 2022)",
        "https://arxiv.org/abs/2205.14987",
    ),
    "csm": (
        "CSM (Concrete Score Matching)",
        "Concrete Score Matching: Generalized Score Matching for Discrete Data (Meng et al., NeurIPS 2022)",
        "https://arxiv.org/abs/2211.00802",
    ),
}


CARD_TAGS = ("hf_ddlm", "discrete-diffusion", "diffusion-language-model")


def is_generated_card(text: str) -> bool:
    """Whether a README.md is a card written by :func:`render_model_card` (its YAML header lists
    the ``hf_ddlm`` tag), which a later save may replace; any other README is the user's."""
    if not text.startswith("---\n"):
        return False
    header = text[4:].split("\n---", 1)[0]
    return "\n- hf_ddlm\n" in f"\n{header}\n"


def method_info(model) -> tuple[str, str, str]:
    model_type = model.config.model_type
    if model_type in METHODS:
        return METHODS[model_type]
    doc = inspect.getdoc(sys.modules[type(model.config).__module__]) or ""
    return model_type, (doc.split("\n\n")[0].replace("\n", " ") or "unknown"), ""


def python_string(text: str) -> str:
    """``text`` as one double-quoted Python string literal for the card's code snippet: quotes and
    backslashes are escaped, and every non-printable character (line breaks, U+2028, controls) is
    written as its escape, so that a hostile ``repo_id`` can end neither the literal nor the
    comment line it sits in; a backtick is written ``\\x60`` so that it cannot close the Markdown
    code fence either. ``ast.literal_eval`` of the result is ``text``."""
    escaped = []
    for ch in str(text):
        if ch in '\\"':
            escaped.append("\\" + ch)
        elif ch == "`":
            escaped.append("\\x60")
        elif ch.isprintable():
            escaped.append(ch)
        else:
            escaped.append(ascii(ch)[1:-1])  # \n, \x85, \u2028, ...
    return '"' + "".join(escaped) + '"'


def _row(key, value):
    return f"| {key} | {value} |\n"


def render_model_card(
    model,
    repo_id: str | None = None,
    training_data: str | None = None,
    evaluation: dict | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    library_version: str = "",
    tags: list[str] | None = None,
) -> str:
    """README.md text: YAML metadata, method and paper, architecture, sampler settings, training
    data, the ELBO perplexity bound when known, and a usage snippet that needs only transformers."""
    config, gc = model.config, model.generation_config
    name, paper, url = method_info(model)
    params = sum(p.numel() for p in model.parameters())
    tags = list(dict.fromkeys([*CARD_TAGS, config.model_type, "custom_code", *(tags or [])]))
    meta = "---\nlibrary_name: transformers\ntags:\n" + "".join(f"- {t}\n" for t in tags)
    if license:
        meta += f"license: {license}\n"
    if datasets:
        meta += "datasets:\n" + "".join(f"- {d}\n" for d in datasets)
    meta += "---\n\n"

    # one Markdown line: a repo_id with line breaks must not start new Markdown blocks
    title = " ".join(repo_id.split("/")[-1].split()) if repo_id else f"{config.model_type} model"
    paper_link = f"[{paper}]({url})" if url else paper
    text = meta + f"# {title}\n\n"
    text += (
        f"A {name} discrete diffusion language model ({params / 1e6:.2f}M parameters), exported by "
        f"`hf_ddlm` {library_version}. Paper: {paper_link}.\n\n"
        "The modeling, configuration and generation code is in this repository: it loads with `transformers` "
        "alone (`trust_remote_code=True`), on CPU or GPU, with no flash-attn.\n\n"
    )
    text += "## Model\n\n| field | value |\n|---|---|\n"
    text += _row("method", f"{name} (`model_type: {config.model_type}`)")
    text += _row("paper", paper_link)
    text += _row(
        "architecture",
        f"{type(model).__name__}: DiT, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, conditioning width {config.cond_dim}",
    )
    text += _row("parameters", f"{params:,}")
    mask = getattr(config, "mask_token_id", None)
    text += _row("vocabulary", f"{config.vocab_size}" + (f" (mask token id {mask})" if mask is not None else ""))
    text += _row("sequence length", config.max_position_embeddings)
    for field in (
        "graph",
        "noise_schedule",
        "noise_eps",
        "time_conditioning",
        "loss_reduction",
        "block_size",
        "num_timesteps",
    ):
        if hasattr(config, field) and getattr(config, field) is not None:
            text += _row(field.replace("_", " "), f"`{getattr(config, field)}`")
    text += "\n## Sampler (`generation_config.json`)\n\n| field | value |\n|---|---|\n"
    for field in ("sampler", "sampler_kwargs", "num_inference_steps", "t_min", "noise_removal", "block_size"):
        if getattr(gc, field, None) is not None:
            text += _row(field, f"`{getattr(gc, field)}`")
    text += "\n## Training data\n\n" + (training_data or "Not recorded.") + "\n\n## Evaluation\n\n"
    if evaluation and evaluation.get("perplexity") is not None:
        text += (
            f"ELBO perplexity bound (exp of the negative ELBO per token; an upper bound on the perplexity): "
            f"**{evaluation['perplexity']:.3f}**"
        )
        details = [f"{k.replace('_', ' ')}: {v}" for k, v in evaluation.items() if k != "perplexity"]
        text += (" (" + "; ".join(details) + ")" if details else "") + ".\n\n"
    else:
        text += "ELBO perplexity: not measured.\n\n"
    where = python_string(repo_id or "path/to/this/folder")
    length = config.max_position_embeddings
    text += (
        "## Usage\n\n```python\nimport torch\nfrom transformers import AutoModel, AutoTokenizer\n\n"
        f"model = AutoModel.from_pretrained({where}, trust_remote_code=True)\n"
        f"ids = model.generate(max_length={length}, num_inference_steps={gc.num_inference_steps}, seed=0)  # denoising, not left-to-right\n"
        f"# tokenizer = AutoTokenizer.from_pretrained({where}); print(tokenizer.batch_decode(ids))\n"
        "nelbo = model.negative_elbo(ids, num_samples=8)  # nats per sequence, an upper bound on -log p\n```\n\n"
        '`pipeline("text-generation")` does not apply: generation is iterative denoising (`model.generate`).\n'
    )
    return text


__all__ = ["CARD_TAGS", "METHODS", "is_generated_card", "method_info", "python_string", "render_model_card"]
