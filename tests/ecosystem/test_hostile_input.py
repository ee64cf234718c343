"""Files and security (issue 10): booleans of the lm-eval adapter parsed strictly, the model card's
usage snippet quoting a hostile ``repo_id``, a hostile ``model_type`` refused before anything is
written, and control characters in token text shown visibly in trajectory pictures and by
``hf-ddlm generate``."""

from __future__ import annotations

import ast
import re

import pytest
import torch

from hf_ddlm.export import add_remote_code, export_model, render_model_card

from .common import find_model, tiny_model

# --- the lm-eval adapter: strict booleans ------------------------------------------------------


class _Refused(Exception):
    pass


@pytest.fixture
def captured_load(monkeypatch):
    """AutoModel.from_pretrained replaced by a spy that records its keywords and stops."""
    import transformers

    seen = {}

    def spy(path, **kwargs):
        seen.update(kwargs)
        raise _Refused

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    return seen


@pytest.mark.parametrize(
    "value,expected",
    [
        ("no", False),
        ("False", False),
        ("false", False),
        ("0", False),
        ("NO", False),
        (0, False),
        (False, False),
        ("yes", True),
        ("True", True),
        ("1", True),
        (1, True),
        (True, True),
    ],
)
def test_lm_eval_trust_remote_code_is_parsed_strictly(captured_load, value, expected):
    pytest.importorskip("lm_eval")
    from hf_ddlm.lm_eval_adapter import DiffusionLMEval

    with pytest.raises(_Refused):
        DiffusionLMEval(pretrained="some/folder", trust_remote_code=value, device="cpu")
    assert captured_load["trust_remote_code"] is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, "ja", 0.5, None])
def test_lm_eval_bad_booleans_name_the_argument(captured_load, value):
    pytest.importorskip("lm_eval")
    from hf_ddlm.lm_eval_adapter import DiffusionLMEval

    with pytest.raises(ValueError, match="trust_remote_code.*true/false"):
        DiffusionLMEval(pretrained="some/folder", trust_remote_code=value, device="cpu")
    assert not captured_load  # refused before any loading


# --- the model card: a hostile repo_id stays one string literal ---------------------------------

HOSTILE_REPO_IDS = [
    'x", trust_remote_code=True)\nimport os; os.system("echo pwned")\n("',
    "x')\nimport os  # ' \" \\",
    "a/b\r\n__import__('os').system('id')",
    "a/b```\n```python\nimport os\n",
    "a/b\u2028print(1)",
    "owner/\U0001f600-emoji",
]


def _snippet(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)\n```", card, flags=re.S)
    assert len(blocks) == 1, card
    return blocks[0]


@pytest.mark.parametrize("repo_id", HOSTILE_REPO_IDS)
def test_model_card_quotes_a_hostile_repo_id(repo_id):
    _, model_class = find_model("mdlm")
    model = tiny_model(model_class)
    benign = _snippet(render_model_card(model, repo_id="owner/name"))
    snippet = _snippet(render_model_card(model, repo_id=repo_id))
    # the snippet is the benign one with the name replaced: no line was added or broken
    assert len(snippet.splitlines()) == len(benign.splitlines())
    tree = ast.parse(snippet)
    assert [type(node).__name__ for node in tree.body] == [type(node).__name__ for node in ast.parse(benign).body]
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert {f.attr if isinstance(f, ast.Attribute) else f.id for f in calls} == {
        "from_pretrained",
        "generate",
        "negative_elbo",
    }
    (load,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "from_pretrained"
    ]
    (where,) = load.args
    assert isinstance(where, ast.Constant) and where.value == repo_id  # exactly one string literal, the id
    # the commented tokenizer line is one comment line whose literal is the id too
    (comment,) = [line for line in snippet.splitlines() if line.startswith("# tokenizer")]
    literal = comment.split("from_pretrained(", 1)[1].split("); print", 1)[0]
    assert ast.literal_eval(literal) == repo_id


# --- a hostile model_type: refused before anything is written ------------------------------------


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("model_type", ["../../x", "x/y", "x\nimport os", "", "1abc", "a-b", "a.b", "ü"])
@pytest.mark.parametrize("how", ["save_pretrained", "export_model", "add_remote_code"])
def test_hostile_model_type_writes_nothing(tmp_path, model_type, how):
    _, model_class = find_model("mdlm")
    model = tiny_model(model_class)
    folder = tmp_path / "a" / "b" / "out"
    if how == "add_remote_code":
        model.save_pretrained(folder, self_contained=False)
    before = _tree(tmp_path)
    model.config.model_type = model_type
    with pytest.raises(ValueError, match="model_type"):
        if how == "save_pretrained":
            model.save_pretrained(folder)
        elif how == "export_model":
            export_model(model, folder)
        else:
            add_remote_code(model, folder)
    assert _tree(tmp_path) == before


# --- control characters in token text ------------------------------------------------------------

CONTROL_WORDS = ["a\rb", "\x85", "x\ny", "\t", "\x00", "\x1b[31m", "\u2028", "\x7f", "z"]


def control_tokenizer():
    """A word-level tokenizer (13 ids, the tiny models' vocabulary) whose words decode to control
    characters: ``<pad>`` (0), ``<eos>`` (1), the words of ``CONTROL_WORDS`` and ``<mask>`` (12)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(CONTROL_WORDS)}, "<mask>": 12}
    vocab["w11"] = 11
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<pad>", pad_token="<pad>", eos_token="<eos>", mask_token="<mask>"
    )


def test_pieces_show_control_characters_visibly():
    from hf_ddlm.visualization.trajectory import _Pieces

    pieces = _Pieces(control_tokenizer())
    shown = {w: pieces(i + 2) for i, w in enumerate(CONTROL_WORDS)}
    assert shown == {
        "a\rb": "a\\rb",
        "\x85": "\\x85",
        "x\ny": "x\\ny",
        "\t": "\\t",
        "\x00": "\u2400",
        "\x1b[31m": "\u241b[31m",
        "\u2028": "\\u2028",
        "\x7f": "\u2421",
        "z": "z",
    }
    assert all(ch.isprintable() for text in shown.values() for ch in text)


@pytest.mark.parametrize("suffix", [".png", ".gif", ".html"])
def test_pictures_of_control_tokens(tmp_path, suffix):
    pytest.importorskip("PIL")
    from hf_ddlm.visualization import save_trajectory

    final = torch.arange(2, 11)
    trajectory = [torch.full_like(final, 12), torch.where(torch.arange(9) % 2 == 0, final, 12), final]
    path = save_trajectory(tmp_path / f"t{suffix}", trajectory, control_tokenizer(), mask_token_id=12)
    assert path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [f"t{suffix}"]  # no temporary file left behind


@pytest.fixture(scope="module")
def control_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("control") / "model"
    _, model_class = find_model("mdlm")
    tiny_model(model_class).save_pretrained(folder)
    control_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_generate_saves_a_picture_of_control_tokens_and_prints_the_samples(control_model, tmp_path, capsys, suffix):
    from hf_ddlm.cli import main

    picture = tmp_path / f"denoising{suffix}"
    argv = ["generate", str(control_model), "--length", "8", "--steps", "3", "--seed", "0", "--no-live", "--quiet"]
    assert main([*argv, "--save-trajectory", str(picture), "--json"]) == 0
    samples = capsys.readouterr().out
    assert picture.stat().st_size > 0 and '"ids"' in samples


def test_generate_prints_the_samples_before_the_picture(control_model, tmp_path, capsys, monkeypatch):
    import hf_ddlm.visualization as visualization
    from hf_ddlm.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("the picture could not be drawn")

    monkeypatch.setattr(visualization, "save_trajectory", broken)
    argv = ["generate", str(control_model), "--length", "8", "--steps", "3", "--seed", "0", "--no-live", "--quiet"]
    with pytest.raises(RuntimeError, match="could not be drawn"):
        main([*argv, "--save-trajectory", str(tmp_path / "x.png"), "--json"])
    assert '"ids"' in capsys.readouterr().out  # the samples came out before the picture failed
