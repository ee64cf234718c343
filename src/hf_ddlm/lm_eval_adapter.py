"""lm-evaluation-harness support: the model ``hf_ddlm`` for ``lm_eval``.

    pip install lm-eval
    lm_eval --model hf_ddlm --model_args pretrained=PATH,mc_num=32 --tasks TASK [--include_path DIR]
    hf-ddlm lm-eval ...  /  python -m hf_ddlm.lm_eval_adapter ...   (the same arguments)

lm-eval 0.4 discovers models only through its own registry (it has no plugin entry points). The
installed hf_ddlm adds ``hf_ddlm`` (and ``hf-ddlm``) to that registry as a lazy entry when lm_eval
loads its models, through a one-line ``.pth`` startup hook (``_hf_ddlm_lm_eval.py``), so the plain
``lm_eval`` command and ``lm_eval.simple_evaluate(model="hf_ddlm", ...)`` find it. Importing this
module registers it too; the two other commands do that, then run lm_eval's own command line.

How requests are answered:

* ``loglikelihood(context, continuation)``: -NELBO of the continuation given the context, a lower
  bound on log p(continuation | context). The context stays clean and is attended to; the
  continuation is noised as in training, and the bound is the mean over ``mc_num`` Monte-Carlo
  draws of (t, x_t) of the per-token losses summed over the continuation (each draw is an
  unbiased estimate; LLaDA's evaluation uses 128, ``mc_num`` defaults to 32). ``is_greedy``
  compares the continuation with the argmax of p(x0 | context, continuation fully noised) in
  one model call (absorbing-state models; False where that distribution is not defined).
* ``loglikelihood_rolling(text)``: the same bound, unconditional, summed over disjoint windows of
  the model's length.
* ``generate_until(context, {until, max_gen_toks, temperature, ...})``: ``model.generate`` after the
  context (left-truncated to fit), cut at the first stop string. Diffusion sampling is always
  stochastic: ``do_sample=False`` / ``temperature=0`` keep the sampler's default temperature.

Contexts must not be empty: a diffusion LM scores a continuation given a context (use
``loglikelihood_rolling`` for unconditional text); an empty context raises ValueError.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import torch

from .generation import BlockDiffusionGenerationMixin

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as error:  # pragma: no cover - exercised only without lm-eval
    raise ImportError("the lm-eval adapter needs lm-evaluation-harness: pip install lm-eval") from error


def _int(value, name):
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _bool(value, name):
    """A boolean model_arg, parsed strictly: ``bool("no")`` is True, so a string is read as one of
    true/false/1/0/yes/no (any case) and anything else is an error, never a guess."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # lm_eval turns "0" / "1" into ints
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean (true/false, 1/0 or yes/no, any case), got {value!r}")


@register_model("hf_ddlm", "hf-ddlm")
class DiffusionLMEval(LM):
    """An hf_ddlm model for lm-evaluation-harness (see the module docstring).

    Args:
        pretrained: a model folder / hub id, or a loaded hf_ddlm model.
        tokenizer: a tokenizer folder or object (default: ``pretrained``'s).
        mc_num: Monte-Carlo draws of (t, x_t) per likelihood request (default 32).
        batch_size: rows per forward pass (Monte-Carlo draws of all requests are packed together).
        max_gen_toks: default number of tokens for ``generate_until``.
        num_inference_steps, sampler: generation settings (default: the model's generation config).
        seed: seeds the Monte-Carlo draws and the sampling.
        device, dtype, trust_remote_code: as for ``from_pretrained``; ``trust_remote_code`` is
            true/false, 1/0 or yes/no (any case) and anything else is an error.
    """

    def __init__(
        self,
        pretrained,
        tokenizer=None,
        device: str | None = None,
        batch_size=8,
        max_batch_size=None,
        dtype: str | None = None,
        mc_num=32,
        max_gen_toks=64,
        num_inference_steps=None,
        sampler: str | None = None,
        seed=1234,
        trust_remote_code: bool = False,
        **kwargs,
    ):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        import hf_ddlm  # noqa: F401  (registers the models)

        if kwargs:
            raise ValueError(f"unknown model_args for hf_ddlm: {sorted(kwargs)}")
        trust_remote_code = _bool(trust_remote_code, "trust_remote_code")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(pretrained, str):
            load = {"trust_remote_code": trust_remote_code}
            if dtype:
                load["dtype"] = getattr(torch, dtype)
            self.model = AutoModel.from_pretrained(pretrained, **load)
            if tokenizer is None:
                tokenizer = pretrained
        else:
            self.model = pretrained
            if tokenizer is None:
                raise ValueError("pass tokenizer along with a model object")
        self.model = self.model.to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self._device = torch.device(device)
        self.batch_size = 8 if batch_size in (None, "auto") else _int(batch_size, "batch_size")
        self.mc_num = _int(mc_num, "mc_num")
        self.max_gen_toks = _int(max_gen_toks, "max_gen_toks")
        self.num_inference_steps = (
            None if num_inference_steps is None else _int(num_inference_steps, "num_inference_steps")
        )
        self.sampler = sampler
        self.seed = int(seed)
        self.generator = torch.Generator(device=self._device).manual_seed(self.seed)
        self.max_length = self.model.config.max_position_embeddings
        mask = getattr(self.model.config, "mask_token_id", None)
        pad = self.tokenizer.pad_token_id
        if pad is None or pad == mask:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id not in (None, mask) else 0
        self.pad_id = pad  # never attended to nor scored; it only has to be a valid, non-mask id

    @property
    def device(self):
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return getattr(self.tokenizer, "name_or_path", "hf_ddlm").replace("/", "__")

    # --- encoding ------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _encode_pair(self, context: str, continuation: str, index: int):
        if not context:
            raise ValueError(
                f"lm-eval request {index} has an empty context: a diffusion LM scores a continuation given a context; "
                "give the task a context (or use loglikelihood_rolling for unconditional text)"
            )
        # a trailing space belongs to the continuation's first token in BPE vocabularies
        spaces = len(context) - len(context.rstrip(" "))
        if spaces and len(context) > spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self._encode(context + continuation)
        ctx = self._encode(context)
        cont = whole[len(ctx) :] if whole[: len(ctx)] == ctx else self._encode(continuation)
        if not ctx:
            raise ValueError(f"lm-eval request {index}: the context {context!r} is empty after tokenization")
        if not cont:
            raise ValueError(f"lm-eval request {index}: the continuation {continuation!r} is empty after tokenization")
        if len(cont) >= self.max_length:
            raise ValueError(
                f"lm-eval request {index}: the continuation has {len(cont)} tokens; the model's length is {self.max_length}"
            )
        ctx = ctx[-(self.max_length - len(cont)) :]  # keep the end of a long context
        return ctx, cont

    # --- the ELBO ------------------------------------------------------------------------------
    @torch.no_grad()
    def _nelbo(self, rows: list[tuple[list[int], list[int]]]) -> list[float]:
        """Monte-Carlo NELBO of each (context, target) row: mean over ``mc_num`` draws of the
        summed per-token loss of the target positions, the context clean."""
        # Requests of similar lengths share a batch (little padding), and a request's draws are
        # interleaved with the other requests' so that they sit at evenly spaced rows: with an
        # antithetic time sampler (t_i = u + i / B mod 1) they are then stratified over [0, 1).
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        per_batch = max(1, self.batch_size // self.mc_num)
        draws = [
            (i, k)
            for chunk in range(0, len(order), per_batch)
            for k in range(self.mc_num)
            for i in order[chunk : chunk + per_batch]
        ]
        totals = defaultdict(float)
        for start in range(0, len(draws), self.batch_size):
            batch = draws[start : start + self.batch_size]
            width = max(len(rows[i][0]) + len(rows[i][1]) for i, _ in batch)
            # block-wise models (BD3-LM) take whole blocks: pad up to one (padding is never attended)
            block = getattr(self.model.config, "block_size", None) or 1
            width = min(-(-width // block) * block, max(self.max_length, width))
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            labels = torch.full_like(ids, -100)
            mask = torch.zeros_like(ids)
            for r, (i, _) in enumerate(batch):
                ctx, target = rows[i]
                n = len(ctx) + len(target)
                ids[r, :n] = torch.tensor(ctx + target)
                labels[r, len(ctx) : n] = torch.tensor(target)
                mask[r, :n] = 1
            out = self.model(
                input_ids=ids.to(self.device),
                labels=labels.to(self.device),
                attention_mask=mask.to(self.device),
                generator=self.generator,
            )
            per_row = out.loss_per_token.double().sum(-1).cpu()
            for r, (i, _) in enumerate(batch):
                totals[i] += float(per_row[r])
        return [totals[i] / self.mc_num for i in range(len(rows))]

    @torch.no_grad()
    def _is_greedy(self, ctx: list[int], cont: list[int]) -> bool:
        model = self.model
        graph = getattr(model, "graph", None)
        kind = getattr(model, "model_output_kind", None)
        if graph is None or not getattr(graph, "absorbing", False) or kind not in ("log_probs", "log_score"):
            return False
        if isinstance(model, BlockDiffusionGenerationMixin):
            return False
        mask_id = graph.mask_token_id
        ids = torch.tensor([ctx + [mask_id] * len(cont)], device=self.device)
        logits = model(input_ids=ids, timesteps=torch.ones(1, device=self.device)).logits[0, len(ctx) :]
        logits = logits.clone()
        logits[:, mask_id] = float("-inf")
        return logits.argmax(-1).tolist() == cont

    # --- the lm-eval API -----------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        pairs = [self._encode_pair(*req.args[:2], index=i) for i, req in enumerate(requests)]
        nelbo = self._nelbo(pairs)
        return [(-value, self._is_greedy(ctx, cont)) for value, (ctx, cont) in zip(nelbo, pairs)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        rows, owner = [], []
        for i, req in enumerate(requests):
            ids = self._encode(req.args[0])
            if not ids:
                raise ValueError(f"lm-eval request {i}: the text is empty after tokenization")
            for start in range(0, len(ids), self.max_length):
                rows.append(([], ids[start : start + self.max_length]))
                owner.append(i)
        nelbo = self._nelbo(rows)
        totals = [0.0] * len(requests)
        for i, value in zip(owner, nelbo):
            totals[i] -= value
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False):
        outputs = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args[0], dict(req.args[1] if len(req.args) > 1 else {})
            if not context:
                raise ValueError(f"lm-eval request {i} has an empty context: generate_until needs a prompt")
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            new_tokens = _int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks), "max_gen_toks")
            new_tokens = min(new_tokens, self.max_length - 1)
            ctx = self._encode(context)[-(self.max_length - new_tokens) :]
            if not ctx:
                raise ValueError(f"lm-eval request {i}: the context is empty after tokenization")
            kwargs = {"max_new_tokens": new_tokens}
            temperature = gen_kwargs.pop("temperature", None)
            if gen_kwargs.pop("do_sample", True) and temperature:
                kwargs["temperature"] = float(temperature)
            for name in ("top_p", "top_k"):
                if gen_kwargs.get(name) is not None:
                    kwargs[name] = gen_kwargs[name]
            if self.num_inference_steps:
                kwargs["num_inference_steps"] = self.num_inference_steps
            if self.sampler:
                kwargs["sampler"] = self.sampler
            ids = self.model.generate(
                input_ids=torch.tensor([ctx], device=self.device), generator=self.generator, **kwargs
            )
            text = self.tokenizer.decode(ids[0, len(ctx) :], skip_special_tokens=True)
            for stop in until:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            outputs.append(text)
        return outputs


def cli_evaluate(argv=None) -> int:
    """lm_eval's command line (``lm-eval run ...``) with the ``hf_ddlm`` model registered."""
    from lm_eval.__main__ import cli_evaluate as lm_eval_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        lm_eval_cli()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = saved
    return 0


__all__ = ["DiffusionLMEval", "cli_evaluate"]

if __name__ == "__main__":
    sys.exit(cli_evaluate())
