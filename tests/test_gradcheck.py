"""``torch.autograd.gradcheck`` (float64) for every hand-written backward in ``src/``.

Each custom ``torch.autograd.Function`` is checked against finite differences on small random
inputs that include the edge cases its backward treats specially: masked and unmasked (carried-over)
rows, all-masked and all-unmasked sequences, and noise levels at t near 0 and near 1. Every check is
paired with a faulted copy of the same Function (its gradients scaled by 1.01) that gradcheck must
reject, so that a check which could never fail is itself a failure.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from hf_ddlm.objectives.ctmc import SumLogAffineExp
from hf_ddlm.parameterizations import NEG_INFINITY, _SubsLogProbs, subs_log_probs
from hf_ddlm.processes.graphs import AbsorbingGraph, _AbsorbingScoreEntropy
from hf_ddlm.processes.schedules import GeometricSchedule, LogLinearSchedule, expm1_sigma

F64 = torch.float64
V = 6  # vocabulary with the mask: ids 0..4 are tokens, 5 is the mask (the absorbing convention)
MASK = V - 1
# t at both ends of [0, 1] and inside; the samplers and the ELBO evaluate 1e-5 .. 1
EDGE_T = torch.tensor([1e-5, 1e-3, 0.5, 1 - 1e-3, 1.0], dtype=F64)


def _faulty(function: type[torch.autograd.Function], scale: float = 1.01) -> type[torch.autograd.Function]:
    """The same Function with every input gradient scaled: gradcheck must reject it."""

    class Faulty(function):
        @staticmethod
        def backward(ctx, *grads):
            return tuple(None if g is None else g * scale for g in function.backward(ctx, *grads))

    return Faulty


def _masked_tokens(batch: int, length: int, generator: torch.Generator):
    """x0 (no mask) and x_t with a mix of masked rows, plus one all-masked and one all-unmasked row."""
    x0 = torch.randint(0, MASK, (batch, length), generator=generator)
    masked = torch.rand(batch, length, generator=generator) < 0.5
    masked[0] = True
    masked[1] = False
    masked[2, 0], masked[2, 1] = True, False  # both kinds in one row whatever the draw
    return x0, torch.where(masked, MASK, x0)


# --- each case: (Function) -> (callable for gradcheck, its float64 inputs, finite-difference step) -
# The step is 1e-4 where the outputs reach ~1e6 (SUBS's finite -1e6, r (log r - 1) at t -> 0): there a
# float64 ulp is ~1e-10, which a 1e-6 step would turn into ~1e-4 of noise in the numerical Jacobian.


def _subs_case(function):
    g = torch.Generator().manual_seed(0)
    _, x_t = _masked_tokens(5, 4, g)
    logits = (torch.randn(5, 4, V, generator=g, dtype=F64) * 3).requires_grad_()
    return (lambda lg: function.apply(lg, x_t, MASK)), (logits,), 1e-4


def _score_entropy_case(function, schedule=None):
    g = torch.Generator().manual_seed(1)
    x0, x_t = _masked_tokens(5, 4, g)
    log_score = torch.randn(5, 4, V, generator=g, dtype=F64).requires_grad_()
    # the ratio r = 1/(e^sigma - 1) at t near 0 (r ~ 1e5) and near 1 (r ~ 1e-3 log-linear, ~2e-9
    # geometric); the gradient flows into r too. Differentiated through log r: finite differences
    # in r itself would cross 0 at r ~ 2e-9 and be dominated by curvature at r ~ 1e5.
    sigma = (schedule or LogLinearSchedule())(EDGE_T).sigma
    log_ratio = (-expm1_sigma(sigma).log()).requires_grad_()

    def fn(ls, lr):
        return function.apply(ls, lr[:, None].exp().expand_as(x_t), x_t, x0, MASK)

    return fn, (log_score, log_ratio), 1e-4


def _sum_log_affine_exp_case(function):
    g = torch.Generator().manual_seed(2)
    log_p = torch.log_softmax(torch.randn(4, 3, V, generator=g, dtype=F64) * 3, -1)
    log_p[0, 0] = torch.log_softmax(torch.tensor([40.0, 0, 0, 0, 0, 0], dtype=F64), -1)  # one p ~ 1, others ~ 4e-18
    c0 = torch.rand(4, 3, generator=g, dtype=F64) + 0.1
    c1 = torch.rand(4, 3, generator=g, dtype=F64) + 0.5
    # the CTMC uniform loss's extremes: c1 = N / (e^sigma - 1) huge at t -> 0, tiny at t -> 1
    c1[1, 0], c1[1, 1] = 1e4, 1e-6
    c0[0, 0] = 1e-3  # beside the peaked row: c0 + c1 p_y ~ c0 small for every y but one
    return function.apply, (log_p.requires_grad_(), c0.requires_grad_(), c1.requires_grad_()), 1e-6


CASES = {
    "subs_log_probs": (_SubsLogProbs, _subs_case),
    "absorbing_score_entropy_loglinear": (_AbsorbingScoreEntropy, _score_entropy_case),
    "absorbing_score_entropy_geometric": (
        _AbsorbingScoreEntropy,
        lambda fn: _score_entropy_case(fn, GeometricSchedule()),
    ),
    "sum_log_affine_exp": (SumLogAffineExp, _sum_log_affine_exp_case),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_matches_finite_differences(name):
    function, case = CASES[name]
    fn, inputs, eps = case(function)
    assert torch.autograd.gradcheck(fn, inputs, eps=eps, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_rejects_a_one_percent_fault(name):
    function, case = CASES[name]
    fn, inputs, eps = case(_faulty(function))
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(fn, inputs, eps=eps, atol=1e-5, rtol=1e-4)


def test_every_custom_autograd_function_is_checked():
    """A new hand-written backward in src/ must get a case above."""
    import pathlib

    import hf_ddlm

    root = pathlib.Path(hf_ddlm.__file__).parent
    found = {
        line.split("class ", 1)[1].split("(", 1)[0]
        for path in root.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.startswith("class ") and "torch.autograd.Function" in line
    }
    assert found == {function.__name__ for function, _ in CASES.values()}


def test_subs_gradient_is_zero_on_carried_rows_and_sums_to_zero_on_masked_rows():
    """SUBS's backward structure, exactly: a carried-over row is a constant, and a masked row is a
    log-softmax, whose gradient for an upstream gradient of ones is 1 - V softmax (summing to 0)."""
    g = torch.Generator().manual_seed(3)
    _, x_t = _masked_tokens(4, 5, g)
    logits = torch.randn(4, 5, V, generator=g, dtype=F64).requires_grad_()
    out = subs_log_probs(logits, x_t, MASK)
    (grad,) = torch.autograd.grad(out.sum(), logits)
    carried = x_t != MASK
    assert (grad[carried] == 0).all()
    torch.testing.assert_close(grad[~carried].sum(-1), torch.zeros((~carried).sum().item(), dtype=F64))
    assert (
        out[carried] == torch.where(torch.nn.functional.one_hot(x_t[carried], V).bool(), 0.0, NEG_INFINITY).to(F64)
    ).all()


def test_absorbing_score_entropy_through_the_graph_equals_the_plain_formula():
    """The public path (``AbsorbingGraph.score_entropy``) gives the plain autograd formula's values
    and gradients, at t near 0 and 1, masked and unmasked rows."""
    graph = AbsorbingGraph(V)
    g = torch.Generator().manual_seed(4)
    x0, x_t = _masked_tokens(5, 4, g)
    log_score = torch.randn(5, 4, V, generator=g, dtype=F64).requires_grad_()
    sigma = LogLinearSchedule()(EDGE_T).sigma.detach().requires_grad_()
    ours = graph.score_entropy(log_score, sigma[:, None], x_t, x0)

    ratio = 1 / expm1_sigma(sigma[:, None]).expand_as(x_t)
    score = log_score.exp()
    plain = score[..., :MASK].sum(-1) - ratio * log_score.gather(-1, x0[..., None]).squeeze(-1)
    plain = torch.where(x_t == MASK, plain + ratio * (ratio.log() - 1), 0.0)
    torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)
    weights = torch.rand(ours.shape, generator=g, dtype=F64)
    torch.testing.assert_close(
        torch.autograd.grad((ours * weights).sum(), (log_score, sigma)),
        torch.autograd.grad((plain * weights).sum(), (log_score, sigma)),
        rtol=1e-10,
        atol=1e-12,
    )


def test_sum_log_affine_exp_backward_is_exact():
    g = torch.Generator().manual_seed(1)
    log_p = torch.log_softmax(torch.randn(2, 3, 7, generator=g, dtype=F64), -1).requires_grad_()
    c0 = (torch.rand(2, 3, generator=g, dtype=F64) + 0.1).requires_grad_()
    c1 = (torch.rand(2, 3, generator=g, dtype=F64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(SumLogAffineExp.apply, (log_p, c0, c1))
    plain = torch.log(c0[..., None] + c1[..., None] * log_p.exp()).sum(-1)
    torch.testing.assert_close(SumLogAffineExp.apply(log_p, c0, c1), plain, rtol=1e-12, atol=1e-12)
