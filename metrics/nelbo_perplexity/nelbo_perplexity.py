"""ELBO perplexity of discrete diffusion language models, as an `evaluate` metric.

A diffusion LM gives no exact likelihood; its evidence lower bound (ELBO) gives an upper bound on
the negative log-likelihood, NELBO(x) >= -log p(x), so exp(sum NELBO / number of tokens) is an
upper bound on the perplexity: the number the SEDD and MDLM papers report ("PPL <= ...").

Two ways to feed it:

1. per-sequence bounds you computed (``model.negative_elbo``, in nats) and token counts:

    metric = evaluate.load("metrics/nelbo_perplexity")
    metric.compute(nelbo=[41.2, 39.8], num_tokens=[16, 16])

2. texts and an hf_ddlm model (a folder or a model object; needs hf_ddlm installed), with the
   configuration ``"texts"``:

    metric = evaluate.load("metrics/nelbo_perplexity", "texts")
    metric.compute(predictions=["some text", ...], model_id="path/to/model", num_samples=8)

The result holds ``perplexity`` (the bound), ``nats_per_token``, ``bits_per_token``, ``nelbo``
(total nats) and ``num_tokens``.
"""

import math

import datasets
import evaluate

_CITATION = """\
@inproceedings{lou2024discrete,
  title={Discrete Diffusion Modeling by Estimating the Ratios of the Data Distribution},
  author={Lou, Aaron and Meng, Chenlin and Ermon, Stefano},
  booktitle={International Conference on Machine Learning},
  year={2024}
}
@inproceedings{sahoo2024simple,
  title={Simple and Effective Masked Diffusion Language Models},
  author={Sahoo, Subham Sekhar and others},
  booktitle={Advances in Neural Information Processing Systems},
  year={2024}
}
"""

_DESCRIPTION = """\
Upper bound on the perplexity from the negative ELBO of a discrete diffusion language model:
exp(total NELBO in nats / total number of scored tokens).
"""

_KWARGS_DESCRIPTION = """
Args (the default configuration takes the first two; the "texts" configuration the others):
    nelbo (`list` of `float`): per-sequence negative ELBO, in nats.
    num_tokens (`list` of `int`): tokens scored in each sequence.
    predictions (`list` of `str`): texts to score with the model ("texts" configuration).
    model_id (`str` or model): an hf_ddlm model folder (or hub id), or a loaded model.
    tokenizer (`str` or tokenizer, optional): defaults to the one saved with `model_id`.
    num_samples (`int`, defaults to 4): Monte-Carlo draws of the diffusion time per text.
    batch_size (`int`, defaults to 8).
    max_length (`int`, optional): texts are cut to this many tokens (default: the model's length).
    seed (`int`, defaults to 0): the Monte-Carlo draws are reproducible.
    device (`str`, optional): defaults to cuda when available.
Returns:
    perplexity: the perplexity bound; nats_per_token; bits_per_token; nelbo (total, nats);
    num_tokens (total).
Examples:
    >>> metric = evaluate.load("metrics/nelbo_perplexity")
    >>> round(metric.compute(nelbo=[2.0, 4.0], num_tokens=[2, 2])["perplexity"], 4)
    4.4817
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NelboPerplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=(
                datasets.Features({"predictions": datasets.Value("string")})
                if self.config_name == "texts"
                else datasets.Features({"nelbo": datasets.Value("float64"), "num_tokens": datasets.Value("int64")})
            ),
        )

    def _compute(
        self,
        nelbo=None,
        num_tokens=None,
        predictions=None,
        model_id=None,
        tokenizer=None,
        num_samples=4,
        batch_size=8,
        max_length=None,
        seed=0,
        device=None,
    ):
        if predictions is not None:
            if model_id is None:
                raise ValueError("model_id is required to score predictions (texts)")
            nelbo, num_tokens = _score_texts(
                predictions, model_id, tokenizer, num_samples, batch_size, max_length, seed, device
            )
        if nelbo is None or num_tokens is None:
            raise ValueError("pass nelbo and num_tokens, or predictions with a model_id")
        if len(nelbo) != len(num_tokens):
            raise ValueError(
                f"nelbo and num_tokens must have one entry per sequence, got {len(nelbo)} and {len(num_tokens)}"
            )
        if any(n < 0 for n in num_tokens):
            raise ValueError("num_tokens must be non-negative")
        if any(not math.isfinite(v) for v in nelbo):
            raise ValueError("nelbo must hold finite numbers (nats)")
        total_tokens = int(sum(num_tokens))
        if total_tokens == 0:
            raise ValueError("num_tokens sums to 0: nothing was scored")
        total = float(sum(nelbo))
        nats = total / total_tokens
        return {
            "perplexity": math.exp(nats),
            "nats_per_token": nats,
            "bits_per_token": nats / math.log(2),
            "nelbo": total,
            "num_tokens": total_tokens,
        }


def _score_texts(texts, model_id, tokenizer, num_samples, batch_size, max_length, seed, device):
    """Per-text NELBO (nats) and token counts under an hf_ddlm model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    import hf_ddlm  # noqa: F401  (registers the models with AutoModel)

    if isinstance(model_id, str):
        model = AutoModel.from_pretrained(model_id)
        tokenizer = tokenizer if tokenizer is not None else model_id
    else:
        model = model_id
        if tokenizer is None:
            raise ValueError("pass tokenizer along with a model object")
    if isinstance(tokenizer, str):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    max_length = max_length or model.config.max_position_embeddings
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    generator = torch.Generator(device=device).manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    nelbos, counts = [], []
    for start in range(0, len(texts), batch_size):
        encoded = [
            tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] for t in texts[start : start + batch_size]
        ]
        empty = [start + i for i, ids in enumerate(encoded) if not ids]
        if empty:
            raise ValueError(f"predictions {empty} are empty after tokenization")
        width = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(encoded):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with torch.no_grad():
            values = model.negative_elbo(
                ids.to(device), attention_mask=mask.to(device), num_samples=num_samples, generator=generator
            )
        nelbos.extend(values.double().cpu().tolist())
        counts.extend(len(row) for row in encoded)
    return nelbos, counts
