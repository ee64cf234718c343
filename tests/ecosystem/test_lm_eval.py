"""lm-evaluation-harness: the ``hf_ddlm`` model on local tasks with local data files.

The likelihood is checked against exact enumeration: with the oracle denoiser of an enumerable
p_data (``hf_ddlm.testing``), -NELBO of a continuation given its context is an unbiased
estimate of log p(continuation | context) (absorbing graph, mask probability 1 at t = 1).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

import lm_eval
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hf_ddlm.lm_eval_adapter import DiffusionLMEval
from hf_ddlm.testing import ExactOracle, oracle_model

from .common import find_model, model_params, tiny_model, word_tokenizer

WORDS = ["a", "b", "c"]  # the oracle's clean tokens 0, 1, 2; the mask is 3
LENGTH = 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: threads only add synchronisation
    yield
    torch.set_num_threads(before)


def letters_tokenizer():
    vocab = {w: i for i, w in enumerate(WORDS)} | {"<mask>": len(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="a"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, mask_token="<mask>")  # no special word: decode keeps all


@pytest.fixture(scope="module")
def oracle_lm():
    _, mdlm = find_model("mdlm")
    oracle = ExactOracle.random(len(WORDS) + 1, LENGTH, graph="absorbing", seed=0)
    # noise_eps = 0: everything is masked at t = 1, so the ELBO of the exact denoiser is exact;
    # sampling_eps = 1e-4 leaves out t < 1e-4, a bias of ~1e-4 nats per token
    model = oracle_model(mdlm, oracle, noise_eps=0.0, sampling_eps=1e-4)
    lm = DiffusionLMEval(model, tokenizer=letters_tokenizer(), device="cpu", batch_size=256, mc_num=64, seed=0)
    return lm, oracle


def conditional_log_prob(oracle, ctx, cont):
    """log p(cont | ctx) by enumeration over p_data's sequences."""
    seqs, probs = oracle.sequences, oracle.probs
    prefix = (seqs[:, : len(ctx)] == torch.tensor(ctx)).all(-1)
    full = prefix & (seqs[:, len(ctx) :] == torch.tensor(cont)).all(-1)
    return float(probs[full].sum().log() - probs[prefix].sum().log())


def _instance(kind, args, idx=0):
    return Instance(request_type=kind, doc={}, arguments=args, idx=idx)


def test_loglikelihood_is_the_exact_conditional_log_prob(oracle_lm):
    lm, oracle = oracle_lm
    cases = [([0, 1], [2, 0]), ([2, 2], [1, 1]), ([1], [0, 2, 1])]
    replicates = 12
    requests = [
        _instance("loglikelihood", (" ".join(WORDS[i] for i in ctx), " " + " ".join(WORDS[i] for i in cont)))
        for ctx, cont in cases
        for _ in range(replicates)
    ]
    results = lm.loglikelihood(requests)
    estimates = torch.tensor([value for value, _ in results], dtype=torch.float64).view(len(cases), replicates)
    for (ctx, cont), row in zip(cases, estimates):
        exact = conditional_log_prob(oracle, ctx, cont)
        mean, stderr = row.mean().item(), row.std().item() / math.sqrt(replicates)
        # the Monte-Carlo estimator is heavy-tailed (see tests/test_exactness.py): 6 standard errors
        assert abs(mean - exact) < 6 * stderr + 1e-3, (ctx, cont, mean, exact, stderr)
        assert mean <= 1e-6  # a log-probability


def test_is_greedy_is_the_one_step_argmax(oracle_lm):
    lm, oracle = oracle_lm
    ctx = [0, 1, 2]
    log_probs = [conditional_log_prob(oracle, ctx, [y]) for y in range(3)]
    best = max(range(3), key=log_probs.__getitem__)
    answers = lm.loglikelihood([_instance("loglikelihood", ("a b c", " " + WORDS[y])) for y in range(3)])
    assert [greedy for _, greedy in answers] == [y == best for y in range(3)]


def test_rolling_loglikelihood_is_the_unconditional_bound(oracle_lm):
    lm, oracle = oracle_lm
    text = "c a b a"
    ids = [WORDS.index(w) for w in text.split()]
    values = lm.loglikelihood_rolling([_instance("loglikelihood_rolling", (text,)) for _ in range(12)])
    mean = sum(values) / len(values)
    stderr = torch.tensor(values, dtype=torch.float64).std().item() / math.sqrt(len(values))
    exact = float(oracle.log_prob(torch.tensor([ids]))[0])
    assert abs(mean - exact) < 6 * stderr + 1e-3


def test_empty_context_is_a_clear_error(oracle_lm):
    lm, _ = oracle_lm
    with pytest.raises(ValueError, match="request 1 has an empty context"):
        lm.loglikelihood([_instance("loglikelihood", ("a", " b")), _instance("loglikelihood", ("", "a b"))])
    with pytest.raises(ValueError, match="empty context"):
        lm.generate_until([_instance("generate_until", ("", {"until": ["\n"]}))])


def _write_tasks(folder, oracle):
    """A multiple-choice task whose right answer is the more probable continuation under p_data,
    and a generate_until task, both on local JSON files."""
    docs = []
    for ctx in ([0, 1], [2, 0], [1, 2], [0, 0]):
        scores = {tuple(c): conditional_log_prob(oracle, ctx, c) for c in ([0, 0], [1, 2], [2, 1], [2, 2])}
        ranked = sorted(scores, key=scores.get, reverse=True)
        if scores[ranked[0]] - scores[ranked[-1]] > 1.0:  # well separated: the estimate cannot swap them
            label = int(torch.randint(2, (1,), generator=torch.Generator().manual_seed(len(docs))))
            pair = [ranked[0], ranked[-1]] if label == 0 else [ranked[-1], ranked[0]]
            docs.append(
                {
                    "context": " ".join(WORDS[i] for i in ctx),
                    "choices": [" ".join(WORDS[i] for i in c) for c in pair],
                    "label": label,
                }
            )
    assert len(docs) >= 2
    (folder / "mc.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (folder / "gen.jsonl").write_text(
        "\n".join(json.dumps({"context": d["context"], "answer": d["choices"][d["label"]]}) for d in docs)
    )
    (folder / "toy_mc.yaml").write_text(
        textwrap.dedent(f"""\
        task: toy_mc
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / "mc.jsonl"}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{{{context}}}}"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: "{{{{label}}}}"
        metric_list:
          - metric: acc
        """)
    )
    (folder / "toy_gen.yaml").write_text(
        textwrap.dedent(f"""\
        task: toy_gen
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / "gen.jsonl"}
        test_split: test
        output_type: generate_until
        doc_to_text: "{{{{context}}}}"
        doc_to_target: "{{{{answer}}}}"
        generation_kwargs:
          until: ["c c c"]
          max_gen_toks: 2
        metric_list:
          - metric: exact_match
        """)
    )
    return len(docs)


def test_simple_evaluate_on_local_tasks(oracle_lm, tmp_path):
    lm, oracle = oracle_lm
    n_docs = _write_tasks(tmp_path, oracle)
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    results = lm_eval.simple_evaluate(model=lm, tasks=["toy_mc", "toy_gen"], task_manager=manager, log_samples=True)
    assert results["results"]["toy_mc"]["acc,none"] == 1.0
    assert 0.0 <= results["results"]["toy_gen"]["exact_match,none"] <= 1.0
    generations = [s["resps"][0][0] for s in results["samples"]["toy_gen"]]
    assert len(generations) == n_docs and all(len(g.split()) == 2 and set(g.split()) <= set(WORDS) for g in generations)


def _write_cli_task(folder):
    folder.mkdir()
    (folder / "d.jsonl").write_text(
        "\n".join(json.dumps({"q": "w2 w3", "choices": ["w4 w5", "w6"], "label": 0}) for _ in range(3))
    )
    (folder / "t.yaml").write_text(
        textwrap.dedent(f"""\
        task: toy_cli
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / "d.jsonl"}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{{{q}}}}"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: "{{{{label}}}}"
        metric_list:
          - metric: acc
        """)
    )


def test_the_command_line_runs_a_saved_model(tmp_path, monkeypatch, capsys):
    """``hf-ddlm lm-eval --model hf_ddlm --model_args pretrained=PATH``: lm_eval's own command line
    with our model registered. lm_eval indexes its ~15k built-in tasks on every run (~20 s); the
    test keeps only the --include_path folder."""
    from lm_eval.tasks import manager as task_manager_module

    original = task_manager_module.TaskManager.__init__

    def only_included(self, *args, **kwargs):
        kwargs["include_defaults"] = False
        original(self, *args, **kwargs)

    monkeypatch.setattr(task_manager_module.TaskManager, "__init__", only_included)
    _, mdlm = find_model("mdlm")
    model = tiny_model(mdlm)
    model.save_pretrained(tmp_path / "model")
    word_tokenizer().save_pretrained(tmp_path / "model")
    _write_cli_task(tmp_path / "tasks")
    from hf_ddlm.cli import main

    code = main(
        [
            "lm-eval",
            "--model",
            "hf_ddlm",
            "--model_args",
            f"pretrained={tmp_path / 'model'},mc_num=2",
            "--tasks",
            "toy_cli",
            "--include_path",
            str(tmp_path / "tasks"),
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "toy_cli" in out and "acc" in out


def _offline_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def test_the_pth_hook_is_lazy_and_keeps_lm_evals_own_models():
    """hf_ddlm_lm_eval.pth runs at every interpreter start: it must import nothing heavy, and once
    lm_eval fills its registry, both its own models and ours resolve."""
    code = (
        "import sys\n"
        "heavy = sorted(m for m in ('torch', 'lm_eval', 'hf_ddlm', 'transformers') if m in sys.modules)\n"
        "from lm_eval.api.registry import get_model\n"
        "print(heavy, get_model('hf').__name__, get_model('hf_ddlm').__module__, get_model('hf-ddlm').__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["[]", "HFLM", "hf_ddlm.lm_eval_adapter", "DiffusionLMEval"]


def test_the_plain_lm_eval_command_finds_the_model(tmp_path):
    """``lm_eval --model hf_ddlm --model_args pretrained=PATH``: lm-eval's own console script, in a
    new process that imports nothing of hf_ddlm itself (the installed .pth hook registers it)."""
    script = Path(sys.executable).with_name("lm_eval")
    assert script.is_file(), f"lm-eval's console script is missing next to {sys.executable} (pip install lm-eval)"
    _, mdlm = find_model("mdlm")
    tiny_model(mdlm).save_pretrained(tmp_path / "model")
    word_tokenizer().save_pretrained(tmp_path / "model")
    _write_cli_task(tmp_path / "tasks")
    proc = subprocess.run(
        [str(script), "--model", "hf_ddlm", "--model_args", f"pretrained={tmp_path / 'model'},mc_num=2"]
        + ["--tasks", "toy_cli", "--include_path", str(tmp_path / "tasks"), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=_offline_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "hf_ddlm (" in proc.stdout and "|toy_cli|" in proc.stdout and "acc" in proc.stdout


@pytest.mark.parametrize("config_class,model_class", model_params("lm_eval"))
def test_every_model_answers_every_request_type(config_class, model_class):
    lm = DiffusionLMEval(
        tiny_model(model_class),
        tokenizer=word_tokenizer(),
        device="cpu",
        batch_size=8,
        mc_num=4,
        max_gen_toks=5,
        num_inference_steps=3,
    )
    scores = lm.loglikelihood(
        [_instance("loglikelihood", ("w2 w3 w4", " w5 w6")), _instance("loglikelihood", ("w7", " w8 w9 w10"))]
    )
    assert all(math.isfinite(v) and v <= 0 and isinstance(g, bool) for v, g in scores)
    rolling = lm.loglikelihood_rolling(
        [_instance("loglikelihood_rolling", (" ".join(f"w{2 + i % 10}" for i in range(20)),))]
    )
    assert math.isfinite(rolling[0]) and rolling[0] <= 0
    (text,) = lm.generate_until([_instance("generate_until", ("w2 w3 w4", {"until": ["<eos>"], "max_gen_toks": 5}))])
    assert isinstance(text, str) and len(text.split()) <= 5
