"""The published configs (``modeling_configs/``) and the official-checkpoint converters.

Parameter counts at real size are taken on the meta device (no memory). The expected numbers are
derived from the official key table (golden README section 4) in ``official_parameter_count``.
Conversion is checked on the golden checkpoints, which are laid out as the official Hub folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

import hf_ddlm  # noqa: F401  (registers the Auto classes)
from hf_ddlm import DiffusionGenerationConfig, MDLMForDiffusionLM, SEDDForDiffusionLM
from hf_ddlm.models.mdlm import convert_mdlm_checkpoint
from hf_ddlm.models.mdlm.convert_mdlm_checkpoint import convert_official_mdlm
from hf_ddlm.models.sedd import convert_sedd_checkpoint
from hf_ddlm.models.sedd.convert_sedd_checkpoint import convert_official_sedd
from hf_ddlm.testing import golden_cases, load_golden

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "modeling_configs"


# --- the official key table -------------------------------------------------------------------
def official_state_shapes(V, D, C, n_blocks, n_heads, mlp_ratio=4, freq_dim=256):
    """Every key of the official DiT state dict with its shape (golden README section 4; SEDD's
    model/transformer.py module names)."""
    shapes = {
        "vocab_embed.embedding": (V, D),
        "sigma_map.mlp.0.weight": (C, freq_dim),
        "sigma_map.mlp.0.bias": (C,),
        "sigma_map.mlp.2.weight": (C, C),
        "sigma_map.mlp.2.bias": (C,),
        "rotary_emb.inv_freq": (D // n_heads // 2,),
        "output_layer.norm_final.weight": (D,),
        "output_layer.linear.weight": (V, D),
        "output_layer.linear.bias": (V,),
        "output_layer.adaLN_modulation.weight": (2 * D, C),
        "output_layer.adaLN_modulation.bias": (2 * D,),
    }
    for i in range(n_blocks):
        shapes.update(
            {
                f"blocks.{i}.norm1.weight": (D,),
                f"blocks.{i}.attn_qkv.weight": (3 * D, D),
                f"blocks.{i}.attn_out.weight": (D, D),
                f"blocks.{i}.norm2.weight": (D,),
                f"blocks.{i}.mlp.0.weight": (mlp_ratio * D, D),
                f"blocks.{i}.mlp.0.bias": (mlp_ratio * D,),
                f"blocks.{i}.mlp.2.weight": (D, mlp_ratio * D),
                f"blocks.{i}.mlp.2.bias": (D,),
                f"blocks.{i}.adaLN_modulation.weight": (6 * D, C),
                f"blocks.{i}.adaLN_modulation.bias": (6 * D,),
            }
        )
    return shapes


def official_parameter_count(**dims):
    """Trainable parameters: every key but the rotary ``inv_freq`` (a buffer, saved but not trained)."""
    return sum(torch.Size(s).numel() for k, s in official_state_shapes(**dims).items() if k != "rotary_emb.inv_freq")


PUBLISHED = {
    # folder: (model class, dims, the published parameter count (sedd.md section 1.6), sampler)
    "sedd-small": (SEDDForDiffusionLM, dict(V=50258, D=768, C=128, n_blocks=12, n_heads=12), 169_627_218, "analytic"),
    "sedd-medium": (SEDDForDiffusionLM, dict(V=50258, D=1024, C=128, n_blocks=24, n_heads=16), 424_477_010, "analytic"),
    "mdlm-owt": (MDLMForDiffusionLM, dict(V=50258, D=768, C=128, n_blocks=12, n_heads=12), 169_627_218, "ancestral"),
}


def test_published_counts_follow_from_the_official_key_table():
    # the numbers quoted for louaaron/sedd-{small,medium} are parameters, without the 32 / 32
    # entries of the rotary buffer (which the .bin also stores: 169,627,250 floats = 678.5 MB)
    for _, dims, count, _ in PUBLISHED.values():
        assert official_parameter_count(**dims) == count


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_builds_the_published_architecture(name):
    model_class, dims, count, _ = PUBLISHED[name]
    config = AutoConfig.from_pretrained(CONFIGS / name)
    assert type(config) is model_class.config_class
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (dims["V"], dims["D"], dims["n_blocks"])
    assert (config.num_attention_heads, config.cond_dim, config.max_position_embeddings) == (
        dims["n_heads"],
        dims["C"],
        1024,
    )
    assert config.graph == "absorbing" and config.mask_token_id == 50257 and config.noise_schedule == "loglinear"
    if model_class is SEDDForDiffusionLM:
        assert config.scale_by_sigma and config.time_conditioning
    else:
        assert not config.time_conditioning
    with torch.device("meta"):  # no memory: shapes only
        model = AutoModel.from_config(config)
    assert type(model) is model_class
    assert sum(p.numel() for p in model.parameters()) == count
    official = {f"backbone.{k}": s for k, s in official_state_shapes(**dims).items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_generation_config(name):
    model_class, _, _, sampler = PUBLISHED[name]
    gc = DiffusionGenerationConfig.from_pretrained(CONFIGS / name)
    assert gc.sampler == sampler
    converter = convert_sedd_checkpoint if model_class is SEDDForDiffusionLM else convert_mdlm_checkpoint
    for key, value in converter.PUBLISHED_GENERATION_CONFIG.items():
        assert getattr(gc, key) == value, key


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_at_tiny_size_round_trips_through_auto_model(name, tmp_path):
    """The published fields (graph, schedule, conditioning...) survive save / AutoModel.from_pretrained."""
    model_class = PUBLISHED[name][0]
    published = json.loads((CONFIGS / name / "config.json").read_text())
    tiny = dict(
        vocab_size=11, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, cond_dim=8, max_position_embeddings=8
    )
    config = model_class.config_class.from_dict({**published, **tiny})
    torch.manual_seed(0)
    model = model_class(config).eval()
    model.generation_config = DiffusionGenerationConfig.from_pretrained(CONFIGS / name)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(loaded) is model_class
    for key in ("graph", "noise_schedule", "noise_eps", "time_conditioning", "loss_reduction", "mask_token_id"):
        assert getattr(loaded.config, key) == getattr(config, key), key
    assert loaded.generation_config.sampler == model.generation_config.sampler
    assert loaded.generation_config.num_inference_steps == model.generation_config.num_inference_steps
    x = torch.tensor([[1, 10, 3, 10, 5, 10, 7, 0]])
    with torch.no_grad():
        # equal weights; loaded tensors live in the safetensors file's memory map, whose alignment
        # can change BLAS's summation order (~1e-7), hence not torch.equal
        torch.testing.assert_close(
            loaded(input_ids=x, timesteps=0.5).logits, model(input_ids=x, timesteps=0.5).logits, rtol=0, atol=1e-5
        )


# --- converters on the golden checkpoints -----------------------------------------------------
def _official_folder(family, case, tmp_path, state_fn=None, as_bin=False):
    """A copy of a golden checkpoint folder (the official layout), optionally with edited weights
    or as a ``pytorch_model.bin``."""
    src, *_ = load_golden(family, case)
    dst = tmp_path / f"official-{family}-{case}"
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    state = load_file(src / "model.safetensors")
    if state_fn is not None:
        state = state_fn(dict(state))
    if as_bin:
        torch.save(state, dst / "pytorch_model.bin")
    else:
        save_file(state, dst / "model.safetensors")
    return dst


def _sedd_outputs(model, inputs):
    return model(input_ids=inputs["x_t"], timesteps=inputs["t"]).logits


@pytest.mark.parametrize("case", golden_cases("sedd"))
def test_convert_official_sedd(case, tmp_path):
    src, inputs, expected, _ = load_golden("sedd", case)
    out = convert_official_sedd(src, tmp_path / "converted")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",  # the model card and the code: a self-contained folder, like any save_pretrained
        "config.json",
        "configuration_sedd.py",
        "generation_config.json",
        "generation_sedd.py",
        "model.safetensors",
        "modeling_sedd.py",
    ]
    assert json.loads((out / "config.json").read_text())["model_type"] == "sedd"
    assert all(k.startswith("backbone.") for k in load_file(out / "model.safetensors"))
    converted = AutoModel.from_pretrained(out)
    assert type(converted) is SEDDForDiffusionLM
    assert converted.generation_config.sampler == "analytic"
    direct = AutoModel.from_pretrained(src)  # the official folder also loads as is
    with torch.no_grad():
        ours = _sedd_outputs(converted, inputs)
        assert torch.equal(ours, _sedd_outputs(direct, inputs))
        torch.testing.assert_close(ours, expected["log_score"], rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_convert_official_sedd_from_pytorch_model_bin(tmp_path):
    src, inputs, expected, _ = load_golden("sedd", "absorb_loglinear")
    official = _official_folder("sedd", "absorb_loglinear", tmp_path, as_bin=True)
    assert not (official / "model.safetensors").exists()
    out = convert_official_sedd(official, tmp_path / "converted")
    reference = convert_official_sedd(src, tmp_path / "reference")
    a, b = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # transformers reads the .bin with torch.load(weights_only=True); the official folder loads directly
    direct = AutoModel.from_pretrained(official)
    with torch.no_grad():
        torch.testing.assert_close(_sedd_outputs(direct, inputs), expected["log_score"], rtol=1e-4, atol=1e-5)


def test_convert_official_mdlm(tmp_path):
    src, inputs, expected, _ = load_golden("mdlm", "owt_style_tc_false")
    out = convert_official_mdlm(src, tmp_path / "converted")
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "mdlm" and saved.get("return_dict", True) is not False
    assert saved["auto_map"]["AutoModel"] == "modeling_mdlm.MDLMForDiffusionLM"  # ours, not the official remote code
    assert saved["hidden_size"] == 64 and saved["num_hidden_layers"] == 2 and not saved["time_conditioning"]
    converted = AutoModel.from_pretrained(out)
    assert type(converted) is MDLMForDiffusionLM
    assert converted.generation_config.sampler == "ancestral"
    assert converted.generation_config.sampler_kwargs == {"move_chance": "linear"}
    direct = AutoModel.from_pretrained(src)
    with torch.no_grad():
        ours = converted(input_ids=inputs["x_t"], timesteps=inputs["t"]).logits
        assert torch.equal(ours, direct(input_ids=inputs["x_t"], timesteps=inputs["t"]).logits)
        finite = expected["subs_log_probs"] > -1e5
        torch.testing.assert_close(ours[finite], expected["subs_log_probs"][finite], rtol=1e-4, atol=1e-5)
        assert (ours[~finite] < -1e5).all()


def test_mdlm_cli_converts_and_prints(tmp_path):
    src, *_ = load_golden("mdlm", "owt_style_tc_false")
    dst = tmp_path / "cli"
    run = subprocess.run(
        [sys.executable, "-m", "hf_ddlm.models.mdlm.convert_mdlm_checkpoint", str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert type(AutoModel.from_pretrained(dst)) is MDLMForDiffusionLM


@pytest.mark.parametrize("module", [convert_sedd_checkpoint, convert_mdlm_checkpoint])
def test_cli_help(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "src_dir" in text and "dst_dir" in text and "--overwrite" in text


def test_sedd_cli_in_process(tmp_path, capsys):
    src, *_ = load_golden("sedd", "uniform_loglinear")
    convert_sedd_checkpoint.main([str(src), str(tmp_path / "out")])
    assert "wrote" in capsys.readouterr().out
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert model.config.graph == "uniform" and not model.config.scale_by_sigma


def test_existing_destination_needs_overwrite(tmp_path):
    src, *_ = load_golden("sedd", "absorb_loglinear")
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "stale.txt").write_text("old")
    with pytest.raises(ValueError, match="dst_dir"):
        convert_official_sedd(src, dst)
    assert (dst / "stale.txt").exists()  # untouched
    convert_official_sedd(src, dst, overwrite=True)
    assert not (dst / "stale.txt").exists() and (dst / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or old folder left


def test_failed_conversion_writes_nothing(tmp_path):
    official = _official_folder(
        "sedd",
        "absorb_loglinear",
        tmp_path,
        state_fn=lambda s: {k: v for k, v in s.items() if k != "blocks.1.mlp.2.bias"},
    )
    with pytest.raises(ValueError, match="blocks.1.mlp.2.bias"):
        convert_official_sedd(official, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [official.name]


def test_wrong_source_folders(tmp_path):
    sedd, *_ = load_golden("sedd", "absorb_loglinear")
    mdlm, *_ = load_golden("mdlm", "owt_style_tc_false")
    with pytest.raises(ValueError, match="src_dir"):
        convert_official_sedd(mdlm, tmp_path / "a")  # an MDLM folder is not an official SEDD one
    with pytest.raises(ValueError, match="src_dir"):
        convert_official_mdlm(sedd, tmp_path / "b")
    with pytest.raises(ValueError, match="src_dir"):
        convert_official_sedd(tmp_path / "does-not-exist", tmp_path / "c")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    shutil.copy(sedd / "config.json", empty / "config.json")
    with pytest.raises(ValueError, match="src_dir.*pytorch_model.bin"):
        convert_official_sedd(empty, tmp_path / "d")


def _drop(key):
    return lambda s: {k: v for k, v in s.items() if k != key}


def _add(key):
    return lambda s: {**s, key: torch.zeros(3)}


def _reshape(key):
    return lambda s: {**s, key: torch.zeros(s[key].shape[0] + 1, *s[key].shape[1:])}


BROKEN = [
    ("missing", _drop, "blocks.0.norm1.weight"),
    ("unexpected", _add, "blocks.0.attn_bias"),
    ("mismatched", _reshape, "output_layer.linear.bias"),
]


@pytest.mark.parametrize("kind,edit,key", BROKEN)
@pytest.mark.parametrize("as_bin", [False, True])
def test_broken_official_sedd_weights_are_named(kind, edit, key, as_bin, tmp_path):
    official = _official_folder("sedd", "absorb_loglinear", tmp_path, state_fn=edit(key), as_bin=as_bin)
    with pytest.raises(ValueError, match=rf"{kind}.*{key}"):
        convert_official_sedd(official, tmp_path / "out")
    # loading the official folder directly is strict too
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        AutoModel.from_pretrained(official)


@pytest.mark.parametrize("kind,edit,key", BROKEN)
def test_broken_official_mdlm_weights_are_named(kind, edit, key, tmp_path):
    key = f"backbone.{key}"
    official = _official_folder("mdlm", "owt_style_tc_false", tmp_path, state_fn=edit(key))
    with pytest.raises(ValueError, match=rf"{kind}.*{key}"):
        convert_official_mdlm(official, tmp_path / "out")
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        AutoModel.from_pretrained(official)


def test_from_pretrained_overrides_are_validated_and_rederive_the_mask_id(tmp_path):
    """transformers sets from_pretrained's keyword overrides after __init__, unchecked; ours go
    through __post_init__: an overridden vocab_size moves the absorbing mask to its new last id, and
    a bad value is refused by name."""
    from hf_ddlm import MDLMConfig

    MDLMConfig(vocab_size=20, hidden_size=32, num_attention_heads=2, num_hidden_layers=1, cond_dim=16).save_pretrained(
        tmp_path
    )
    assert MDLMConfig.from_pretrained(tmp_path).mask_token_id == 19
    config = MDLMConfig.from_pretrained(tmp_path, vocab_size=40)
    assert (config.vocab_size, config.mask_token_id) == (40, 39)
    config, unused = MDLMConfig.from_pretrained(tmp_path, hidden_dim=64, unknown_key=1, return_unused_kwargs=True)
    assert config.hidden_size == 64 and unused == {"unknown_key": 1}  # official alias honoured
    with pytest.raises(ValueError, match="noise_schedule must be one of"):
        MDLMConfig.from_pretrained(tmp_path, noise_schedule="bogus")


def test_official_sedd_folders_load_without_patching_auto_config(tmp_path):
    """AutoConfig is transformers' own; AutoModel / AutoModelForMaskedLM fall back to
    SEDDForDiffusionLM only on an official SEDD folder (see hf_ddlm.models.auto)."""
    from hf_ddlm import SEDDConfig

    official, *_ = load_golden("sedd", "uniform_geometric")
    assert not hasattr(AutoConfig.from_pretrained, "__wrapped__")
    with pytest.raises(ValueError, match="model_type"):
        AutoConfig.from_pretrained(official)  # stock behaviour: no model_type, no config class
    config = SEDDConfig.from_pretrained(official)  # the class is named: the official layout is mapped
    assert (config.graph, config.noise_schedule, config.sigma_max) == ("uniform", "geometric", 20)
    for auto_class in (AutoModel, AutoModelForMaskedLM):
        model = auto_class.from_pretrained(official, dtype=torch.float64, dropout=0.0)
        assert type(model) is SEDDForDiffusionLM and model.config.dropout == 0.0
        assert next(model.parameters()).dtype == torch.float64
    other = tmp_path / "no-model-type"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="model_type"):  # any other folder without model_type: as before
        AutoModel.from_pretrained(other)
