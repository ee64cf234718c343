"""The ``hf-ddlm`` command line: train, generate (live view, infilling, trajectory pictures), eval,
convert, export, and its errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

from hf_ddlm.cli import build_parser, main
from hf_ddlm.generation import parse_infill_pattern

from .common import find_model, tiny_model, word_tokenizer

TEXT = " ".join(
    f"the {a} saw the {b} and the {b} ran to the {a}." for a, b in [("cat", "dog"), ("fox", "owl"), ("bee", "ant")] * 40
)
TRAIN = [
    "--set",
    "hidden_size=32",
    "num_hidden_layers=1",
    "num_attention_heads=2",
    "cond_dim=16",
    "dropout=0.0",
    "--seq-len",
    "16",
    "--bpe-vocab-size",
    "300",
    "--max-steps",
    "3",
    "--batch-size",
    "4",
    "--warmup-steps",
    "0",
]
ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "train.txt").write_text(TEXT)
    (root / "eval.txt").write_text(TEXT[: len(TEXT) // 3])
    code = main(
        [
            "train",
            "--config",
            "modeling_configs/mdlm-owt",
            "--train-file",
            str(root / "train.txt"),
            "--output-dir",
            str(root / "model"),
            "--eval-file",
            str(root / "eval.txt"),
            "--eval-samples",
            "1",
            *TRAIN,
        ]
    )
    assert code == 0
    return root


def test_help_of_every_command(capsys):
    for command in ([], ["train"], ["generate"], ["eval"], ["convert"], ["export"]):
        with pytest.raises(SystemExit) as stop:
            main([*command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: hf-ddlm")
    assert {"train", "generate", "eval", "convert", "export", "lm-eval"} <= set(
        build_parser()._subparsers._group_actions[0].choices
    )


def test_console_script_is_declared_and_installed():
    # a subprocess would spend its time importing torch; the entry point and its script suffice
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "hf-ddlm"]
    assert entry.value == "hf_ddlm.cli:main" and entry.load() is main
    script = Path(sys.executable).parent / "hf-ddlm"
    assert script.is_file() and "hf_ddlm.cli" in script.read_text()


def test_train_writes_a_loadable_model(trained):
    folder = trained / "model"
    model = AutoModel.from_pretrained(folder)
    assert type(model).__name__ == "MDLMForDiffusionLM" and model.config.max_position_embeddings == 16
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.hidden_size == 32 and model.config.vocab_size == len(tokenizer) <= 300
    assert tokenizer.mask_token_id == model.config.mask_token_id == len(tokenizer) - 1
    assert (folder / "tokenizer.json").is_file() and (folder / "generation_config.json").is_file()
    assert model.generation_config.sampler == "ancestral"  # the config folder's generation_config.json
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["steps"] == 3 and results["eval_perplexity_bound"] > 1


def test_train_from_a_dataset_on_disk(tmp_path, capsys):
    from datasets import Dataset

    Dataset.from_dict({"text": [TEXT[i : i + 400] for i in range(0, len(TEXT), 400)]}).save_to_disk(
        str(tmp_path / "ds")
    )
    code = main(
        [
            "train",
            "--config",
            "modeling_configs/sedd-small",
            "--dataset",
            str(tmp_path / "ds"),
            "--output-dir",
            str(tmp_path / "sedd"),
            *TRAIN,
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 3
    assert type(AutoModel.from_pretrained(tmp_path / "sedd")).__name__ == "SEDDForDiffusionLM"


def test_generate_prompt_plain_and_json(trained, capsys):
    model = str(trained / "model")
    assert (
        main(
            [
                "generate",
                model,
                "--prompt",
                "the cat",
                "--max-new-tokens",
                "8",
                "--steps",
                "4",
                "--seed",
                "0",
                "--no-live",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out.startswith("the cat") and "\033[" not in captured.out
    assert "denoising" in captured.err  # the progress bar
    assert (
        main(
            [
                "generate",
                model,
                "--length",
                "12",
                "--steps",
                "4",
                "--seed",
                "0",
                "--num-samples",
                "2",
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    samples = json.loads(capsys.readouterr().out)
    assert len(samples) == 2 and all(len(s["ids"]) == 12 for s in samples)


def test_generate_live_view(trained, capsys):
    assert (
        main(
            [
                "generate",
                str(trained / "model"),
                "--prompt",
                "the dog",
                "--max-new-tokens",
                "6",
                "--steps",
                "5",
                "--seed",
                "1",
                "--live",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # redraws are throttled (min_interval); the first view and the final one are always drawn
    assert out.count("\033[J") >= 1 and "1/6" in out and "6/6" in out and "░" in out
    assert ANSI.sub("", out).rstrip().splitlines()[-1].startswith("the dog")


def test_generate_infill_and_save_trajectory(trained, tmp_path, capsys):
    from PIL import Image

    picture = tmp_path / "denoising.png"
    assert (
        main(
            [
                "generate",
                str(trained / "model"),
                "--infill",
                "the [[2]] saw the [[3]].",
                "--steps",
                "4",
                "--seed",
                "0",
                "--no-live",
                "--quiet",
                "--save-trajectory",
                str(picture),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out.strip()
    assert text.startswith("the") and "saw the" in text
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.height > 100
    page = tmp_path / "denoising.html"
    assert (
        main(
            [
                "generate",
                str(trained / "model"),
                "--infill",
                "[[3]] the dog",
                "--steps",
                "3",
                "--no-live",
                "--quiet",
                "--save-trajectory",
                str(page),
            ]
        )
        == 0
    )
    assert "decided" in page.read_text()


def test_eval_prints_the_perplexity_bound(trained, capsys):
    assert (
        main(
            [
                "eval",
                str(trained / "model"),
                str(trained / "eval.txt"),
                "--num-samples",
                "2",
                "--max-sequences",
                "6",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["num_sequences"] == 6 and result["num_tokens"] == 96 and result["perplexity_bound"] > 1
    assert "NELBO" in captured.err  # the progress bar


def test_export_with_an_evaluated_model_card(trained, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                str(trained / "model"),
                str(tmp_path / "hub"),
                "--eval-file",
                str(trained / "eval.txt"),
                "--eval-samples",
                "1",
                "--training-data",
                "a repeated toy sentence",
            ]
        )
        == 0
    )
    files = json.loads(capsys.readouterr().out)["files"]
    assert {"modeling_mdlm.py", "configuration_mdlm.py", "generation_mdlm.py", "README.md", "tokenizer.json"} <= set(
        files
    )
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "ELBO perplexity bound" in card and "eval.txt" in card and "a repeated toy sentence" in card


def _official_sedd(folder, model):
    """The louaaron/sedd-* layout: the nested training config and the bare DiT state dict."""
    folder.mkdir()
    c = model.config
    official = {
        "tokens": c.vocab_size - 1,
        "graph": {"type": "absorb"},
        "noise": {"type": "loglinear"},
        "model": {
            "hidden_size": c.hidden_size,
            "cond_dim": c.cond_dim,
            "n_blocks": c.num_hidden_layers,
            "n_heads": c.num_attention_heads,
            "length": c.max_position_embeddings,
            "dropout": c.dropout,
            "scale_by_sigma": True,
        },
    }
    (folder / "config.json").write_text(json.dumps(official))
    torch.save({k[len("backbone.") :]: v.clone() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")


def _official_mdlm(folder, model):
    """The kuleshov-group/mdlm-owt layout: official field names, auto_map, backbone.* weights."""
    folder.mkdir()
    c = model.config
    official = {
        "model_type": "mdlm",
        "architectures": ["MDLM"],
        "auto_map": {"AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
        "vocab_size": c.vocab_size,
        "hidden_dim": c.hidden_size,
        "cond_dim": c.cond_dim,
        "n_blocks": c.num_hidden_layers,
        "n_heads": c.num_attention_heads,
        "model_length": c.max_position_embeddings,
        "dropout": c.dropout,
        "time_conditioning": False,
        "return_dict": False,
    }
    (folder / "config.json").write_text(json.dumps(official))
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


@pytest.mark.parametrize("method,writer", [("sedd", _official_sedd), ("mdlm", _official_mdlm)])
def test_convert_detects_the_method(method, writer, tmp_path, capsys):
    _, model_class = find_model(method)
    model = tiny_model(model_class)
    writer(tmp_path / "official", model)
    assert main(["convert", str(tmp_path / "official"), str(tmp_path / "ours")]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == method
    converted = AutoModel.from_pretrained(tmp_path / "ours")
    ids = torch.randint(0, model.config.vocab_size - 1, (2, model.config.max_position_embeddings))
    t = torch.full((2,), 0.4)
    assert torch.equal(converted(input_ids=ids, timesteps=t).logits, model(input_ids=ids, timesteps=t).logits)


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "/no/such/model"],
        ["eval", "/no/such/model", "x.txt"],
        ["convert", "/no/such/official", "out"],
        ["export", "/no/such/model", "out"],
        ["train", "--config", "/no/such/config", "--train-file", "x.txt", "--output-dir", "o"],
        ["train", "--config", "modeling_configs/mdlm-owt", "--train-file", "/no/such/file.txt", "--output-dir", "o"],
    ],
)
def test_paths_that_do_not_exist(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_malformed_infill_patterns_are_clear_errors(trained, capsys):
    tok = word_tokenizer()
    ids, holes = parse_infill_pattern("w2 [[2]] w3 [[1]]", tok)
    assert ids.tolist() == [2, 12, 12, 3, 12] and holes.tolist() == [False, True, True, False, True]
    for pattern, message in [
        ("w2 [[2 w3", "is not closed by"),
        ("w2 ]] w3", "has no matching"),
        ("w2 [[x]] w3", "must hold a positive number of tokens"),
        ("w2 [[0]] w3", "must hold a positive number of tokens"),
        ("w2 [[2 [[3]] ]]", "opens a hole inside the hole"),
        ("w2 w3", "has no hole"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_infill_pattern(pattern, tok)
    assert main(["generate", str(trained / "model"), "--infill", "the [[two]] cat", "--no-live"]) == 2
    assert "generate: error: infill pattern: hole '[[two]]'" in capsys.readouterr().err


def test_other_bad_arguments(trained, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--config",
                "modeling_configs/mdlm-owt",
                "--train-file",
                str(trained / "train.txt"),
                "--output-dir",
                str(tmp_path / "o"),
                "--set",
                "no_such_field=3",
            ]
        )
        == 2
    )
    assert "--set" in capsys.readouterr().err
    assert main(["convert", str(trained / "model"), str(tmp_path / "x"), "--method", "nope"]) == 2
    assert "no converter for 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", str(trained / "model"), "--steps", "0"])
    assert "must be a positive integer" in capsys.readouterr().err
