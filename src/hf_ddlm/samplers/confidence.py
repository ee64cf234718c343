"""Confidence-ordered unmasking of masked diffusion (MaskGIT, Chang et al. 2022; LLaDA's
"low-confidence remasking", Nie et al. 2025, "Large Language Diffusion Models", sec. 2.4 / app. B.3).

At each step the network gives p_theta(x0^i | x_t) at every masked position i. Every masked
position proposes a token (the argmax, or a draw from p_theta), the positions are ranked by a
confidence, and the most confident ones are committed; the others stay masked. Committed tokens
stay committed. Unlike the ancestral sampler (which reveals positions at random, independently
of p_theta) this is not the reverse process of the model: it is biased towards likely tokens, and
typically makes better text in few steps. ``ConfidenceSampler`` commits a number of tokens per step;
``threshold`` (Fast-dLLM) and ``entropy_bounded`` (EB-sampler) choose how many from the confidences.

The samplers read log p_theta(x0 | x_t) (``"log_probs"``: MDLM, BD3-LM) or, on the absorbing
graph, SEDD's log score (``"log_score"``): by RADD's theorem 1 the score at a masked position is
p0(y) / (e^sigma - 1), so p0 is the score normalised over the clean tokens. ``build_sampler`` sets
``needs`` to the kind the model outputs (``reads`` lists both).
"""

from __future__ import annotations

import torch

from ..categorical import draw_categorical_rows, neg_infinity, sample_categorical
from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import Sampler, SamplerOutput, register_sampler

ORDERINGS = ("top_prob", "margin", "entropy")
ALLOCATIONS = ("even", "linear")


def clean_log_probs(model_output: torch.Tensor, kind: str, mask_token_id: int) -> torch.Tensor:
    """log p_theta(x0 | x_t) over the clean tokens [.., V] (the mask column a finite log 0) from the
    model output of ``kind``: log_probs are used as they are; a log score is normalised over y != mask
    (RADD, thm 1: at a masked position s(y) = p0(y) / (e^sigma - 1))."""
    if kind == "log_probs":
        return model_output
    if kind != "log_score":
        raise ValueError(f"confidence samplers read 'log_probs' or 'log_score', got {kind!r}")
    dtype = torch.promote_types(model_output.dtype, torch.float32)  # half precision normalises in float32
    clean = model_output.to(dtype).index_fill(-1, torch.tensor([mask_token_id], device=model_output.device), -torch.inf)
    return clean.log_softmax(-1).clamp_min(neg_infinity(clean.dtype))


def token_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_y p_y log p_y over the last dim, with 0 log 0 = 0."""
    log_p = log_p.float()
    return -(log_p.exp() * log_p.clamp_min(torch.finfo(log_p.dtype).min)).sum(-1)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def commit_top(confidence: torch.Tensor, masked: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The ``count`` [B] most confident masked positions of each row ([B, L] bool); ties go to the
    leftmost position (a stable sort)."""
    score = confidence.double().masked_fill(~masked, -torch.inf)
    order = score.sort(dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    return masked & (rank < count[:, None])


@register_sampler
class ConfidenceSampler(Sampler):
    """Confidence-ordered unmasking with a number of tokens per step (LLaDA's low-confidence remasking).

    Each step: every masked position i proposes a token y_i (``deterministic``: argmax_y p_theta(y);
    else a draw y_i ~ p_theta), and gets a confidence c_i by ``ordering``:

    * ``"top_prob"``: c_i = p_theta(y_i), the probability of the proposed token (LLaDA: the most
      confident stay, the others are remasked);
    * ``"margin"``: c_i = p_(1) - p_(2), the top probability minus the second (Kim et al. 2025);
    * ``"entropy"``: c_i = -H(p_theta(. | x_t)^i), lowest entropy first.

    The k most confident masked positions of each row take their proposal. k is ``tokens_per_step``
    or, when None, by ``allocation``: ``"even"`` spreads the masked count n evenly over the steps
    left on the grid as LLaDA's ``get_num_transfer_tokens`` does: k = ceil(n / r), r = (t - t_end) /
    (t - s) the steps left (n = q r + m: the next m steps commit q + 1, the rest q); ``"linear"``
    commits what the reverse process of the linear schedule alpha_t = 1 - t unmasks in expectation,
    k = floor(n (1 - s / t)) (Dream's ``generation_utils``; a step may commit none). Either way the
    last step commits every token left. With ``tokens_per_step`` the grid may end with masks: ``denoise`` (the loop's noise
    removal) commits them all. Not the reverse process: biased (reported on the oracle's toys in
    tests/test_confidence_samplers.py) when a step commits several tokens (their joint is drawn as a
    product of marginals) or when the ranking reads the drawn token (``"top_prob"`` with
    ``deterministic=False``: a selection bias). With one token per step, proposals drawn from p_theta
    and an ordering that reads p_theta(. | x_t) only (``"margin"``, ``"entropy"``), an exact denoiser
    gives exact samples: the chain rule in an order chosen from x_t.
    ``temperature`` / ``top_k`` / ``top_p`` act on p_theta before the ranking; ``do_sample=False``
    means argmax proposals (``deterministic=True``), not top_k=1, which would leave no ranking.

    Args:
        tokens_per_step: positions committed per step (a positive integer), or None (spread evenly).
        ordering: ``"top_prob"``, ``"margin"`` or ``"entropy"``.
        deterministic: propose the argmax token (True) or a draw from p_theta (False).
        allocation: ``"even"`` (LLaDA) or ``"linear"`` (Dream): how many tokens a step commits when
            ``tokens_per_step`` is None.
    """

    name = "confidence"
    needs = "log_probs"
    reads = ("log_probs", "log_score")  # build_sampler sets needs to the model's kind
    orderings = ORDERINGS

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule | None,
        tokens_per_step: int | None = None,
        ordering: str = "top_prob",
        deterministic: bool = True,
        allocation: str = "even",
    ):
        super().__init__(graph, schedule)
        if not graph.absorbing:
            raise ValueError(f"the {self.name!r} sampler unmasks positions: it needs an absorbing (masked) graph")
        if tokens_per_step is not None and (
            not isinstance(tokens_per_step, int) or isinstance(tokens_per_step, bool) or tokens_per_step < 1
        ):
            raise ValueError(f"tokens_per_step must be a positive integer or None, got {tokens_per_step!r}")
        if ordering not in self.orderings:
            raise ValueError(f"ordering must be one of {self.orderings}, got {ordering!r}")
        self.tokens_per_step = tokens_per_step
        self.ordering = ordering
        self.deterministic = _check_bool("deterministic", deterministic)
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
        self.allocation = allocation

    # --- the proposal and its confidence -----------------------------------------------------
    def _propose(self, model_output, x_t, generator, uniform_noise):
        """(log p [B, L, V], masked [B, L], proposal [B, L], log p of the proposal [B, L])."""
        mask = self.graph.mask_token_id
        log_p = clean_log_probs(model_output, self.needs, mask)
        masked = x_t == mask
        if self.deterministic:
            proposal = log_p.argmax(-1)
        elif uniform_noise is not None:  # the shared race on the supplied noise (tests)
            probs = log_p.double().exp()
            if uniform_noise.shape[-1] == probs.shape[-1] - 1:  # a loop that leaves out the (last) mask column
                probs = probs[..., :-1]
            proposal = sample_categorical(probs, generator, uniform_noise)
        else:  # one draw per masked position (inverse CDF), the vocabulary touched on those rows only
            proposal = x_t.clone()
            proposal[masked] = draw_categorical_rows(log_p, masked, generator, None)
        proposal = torch.where(masked, proposal, x_t)
        return log_p, masked, proposal, log_p.gather(-1, proposal[..., None])[..., 0]

    def _confidence(self, log_p, log_p_proposal, ordering=None):
        ordering = ordering or self.ordering
        if ordering == "top_prob":
            return log_p_proposal.float().exp()
        if ordering == "margin":
            top2 = log_p.float().topk(2, dim=-1).values.exp()
            return top2[..., 0] - top2[..., 1]
        return -token_entropy(log_p)

    def _count(self, masked, t, s):
        """k [B]: tokens_per_step, or ceil(n / r) with r the grid steps left (r >= 1)."""
        n = masked.sum(-1)
        if self.tokens_per_step is not None:
            return torch.full_like(n, self.tokens_per_step)
        t_end = self.timesteps[-1] if self.timesteps is not None else torch.zeros(())
        if self.allocation == "linear":
            # in the grid's float32, as Dream computes int(n * (1 - s / t)); all that is left at the end
            share = (n.float() * (1 - s.float() / t.float())).long()
            return torch.where(s.float() <= t_end.to(s.device).float(), n, share)
        t, s = t.double(), s.double()
        left = ((t - t_end.to(t)) / (t - s).clamp_min(1e-300)).round().clamp_min(1).long()
        return (n + left - 1) // left  # ceil in integers (a float ceil of n / r would round up r | n)

    def _select(self, log_p, masked, log_p_proposal, t, s):
        """The masked positions committed at this step, [B, L] bool."""
        return commit_top(self._confidence(log_p, log_p_proposal), masked, self._count(masked, t, s))

    # --- the contract -------------------------------------------------------------------------
    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """Commits the chosen masked positions to their proposals; ``probs`` is p_theta over clean tokens."""
        log_p, masked, proposal, log_p_proposal = self._propose(model_output, x_t, generator, uniform_noise)
        commit = self._select(log_p, masked, log_p_proposal, t, s)
        return SamplerOutput(torch.where(commit, proposal, x_t), log_p.exp())

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """Commits every masked position left to its proposal (argmax, or a draw)."""
        log_p, masked, proposal, _ = self._propose(model_output, x_t, generator, uniform_noise)
        return SamplerOutput(torch.where(masked, proposal, x_t), log_p.exp())


__all__ = ["ALLOCATIONS", "ORDERINGS", "ConfidenceSampler", "clean_log_probs", "commit_top", "token_entropy"]
