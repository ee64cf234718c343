"""Hub export: every registered model becomes a folder that loads with transformers alone.

The loading side runs in a *fresh virtual environment without hf_ddlm*: ``python -m venv
--without-pip`` (under a second), whose ``site-packages`` holds one ``.pth`` line naming this
environment's ``site-packages``. Python appends that folder to ``sys.path`` but does not process
the ``.pth`` files inside it, so torch and transformers import while the editable install of
hf_ddlm (itself a ``.pth`` file) is invisible; the child asserts ``find_spec("hf_ddlm") is None``
and that no ``hf_ddlm`` module was ever imported. It runs from an empty folder with its own
``HF_HOME``. The child loads every exported folder, and one model pushed to a local Hub endpoint
(``fake_hub.FakeHub``), and compares logits, losses and seeded generations with the library's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file
from transformers import AutoModel, GPT2Config, LlamaConfig

from hf_ddlm import BD3LMConfig, BD3LMForDiffusionLM, MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.export import FlattenError, export_model, flatten, push_to_hub
from hf_ddlm.models.auto import MODELS
from hf_ddlm.peft_utils import get_lora_model

from .common import SKIPPED, find_model, model_params, noisy_inputs, tiny_model, word_tokenizer
from .fake_hub import FakeHub

GEN = {"num_inference_steps": 4, "seed": 0}
PUSHED = "tester/tiny-mdlm"
MODEL_PUSHED = "tester/tiny-sedd"

CHILD = r"""
import importlib.util, json, os, sys
assert importlib.util.find_spec("hf_ddlm") is None, "hf_ddlm must not be importable here"
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

cases, gen = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
def check(folder, expected):
    exp = load_file(expected)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        # a seeded generator: some losses draw more than t and x_t (CSM samples neighbours)
        out = model(input_ids=exp["x_t"], timesteps=exp["timesteps"], labels=exp["x0"], generator=torch.Generator().manual_seed(0))
    generated = model.generate(max_length=exp["x0"].shape[1], **gen)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # it reads config.json's auto_map
    # the remote-code copy saves itself self-contained too (transformers copies its code files)
    resaved = os.path.join(os.getcwd(), "resaved", folder.replace("/", "_"))
    model.save_pretrained(resaved)
    again = AutoModel.from_pretrained(resaved, trust_remote_code=True).eval()
    with torch.no_grad():
        same_call = dict(input_ids=exp["x_t"], timesteps=exp["timesteps"], labels=exp["x0"])
        out_again = again(**same_call, generator=torch.Generator().manual_seed(0))
    return {
        "module": type(model).__module__,
        "config_module": type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__module__,
        "masked_lm_class": type(AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)).__name__,
        "can_generate": model.can_generate(),
        "sampler": model.generation_config.sampler,
        "logits_equal": torch.equal(out.logits, exp["logits"]),
        "loss_equal": torch.equal(out.loss, exp["loss"]),
        "generate_equal": torch.equal(generated, exp["generated"]),
        "decoded": tokenizer.decode(generated[0]),
        "resaved_logits_equal": torch.equal(out_again.logits, out.logits),
        "resaved_sampler": again.generation_config.sampler,
    }


for key, (folder, expected) in cases.items():
    try:
        results[key] = check(folder, expected)
    except Exception as error:  # reported per model by the test
        results[key] = {"error": f"{type(error).__name__}: {str(error)[:500]}"}
print("RESULTS=" + json.dumps({
    "results": results,
    "hf_ddlm_modules": sorted(m for m in sys.modules if m.split(".")[0] == "hf_ddlm"),
    "flash_attn": importlib.util.find_spec("flash_attn") is not None,
}))
"""


def _fresh_venv(root):
    """A venv that sees this environment's packages but not the editable hf_ddlm."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    child_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(child_site, "_parent_site.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _expected(model, path):
    x_t, timesteps, x0 = noisy_inputs(model, batch=2, seed=3)
    with torch.no_grad():
        out = model(input_ids=x_t, timesteps=timesteps, labels=x0, generator=torch.Generator().manual_seed(0))
    generated = model.generate(max_length=x0.shape[1], **GEN)
    save_file(
        {
            "x_t": x_t,
            "timesteps": timesteps,
            "x0": x0,
            "logits": out.logits.contiguous(),
            "loss": out.loss.reshape(()),
            "generated": generated,
        },
        str(path),
    )


@pytest.fixture(scope="module")
def child_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    python = _fresh_venv(root)
    tokenizer = word_tokenizer()
    cases = {}
    models = {}
    for config_class, model_class in MODELS:
        mt = config_class.model_type
        if mt in SKIPPED:
            continue
        model = tiny_model(model_class)
        folder = export_model(
            model,
            root / f"exported_{mt}",
            tokenizer=tokenizer,
            training_data="random tokens (a test)",
            evaluation={"perplexity": 12.5, "dataset": "toy", "num_samples": 4},
        )
        _expected(model, root / f"expected_{mt}.safetensors")
        cases[mt] = [str(folder), str(root / f"expected_{mt}.safetensors")]
        models[mt] = model
        # a plain save_pretrained (what Trainer checkpoints and converters write) is self-contained too
        model.save_pretrained(root / f"saved_{mt}")
        tokenizer.save_pretrained(root / f"saved_{mt}")
        cases[f"saved:{mt}"] = [str(root / f"saved_{mt}"), cases[mt][1]]
    for key, model in backbone_models().items():  # a transformers decoder as the backbone
        _expected(model, root / f"expected_backbone_{key}.safetensors")
        folder = export_model(model, root / f"exported_backbone_{key}", tokenizer=tokenizer)
        cases[f"backbone:{key}"] = [str(folder), str(root / f"expected_backbone_{key}.safetensors")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "VIRTUAL_ENV"))}
    env.update(HF_HOME=str(root / "hf_home"), TOKENIZERS_PARALLELISM="false")
    with FakeHub() as hub:
        # push through huggingface_hub's own API (create_repo + upload_folder) to the local endpoint;
        # the suite runs with HF_HUB_OFFLINE=1, lifted here for 127.0.0.1 only
        offline, hf_constants.HF_HUB_OFFLINE = hf_constants.HF_HUB_OFFLINE, False
        endpoint, hf_constants.ENDPOINT = hf_constants.ENDPOINT, hub.url  # what HF_ENDPOINT sets
        try:
            commit = push_to_hub(models["mdlm"], PUSHED, tokenizer=tokenizer, endpoint=hub.url, token="unused")
            files = HfApi(endpoint=hub.url).list_repo_files(PUSHED)
            # the model's own push_to_hub, as a transformers user calls it
            models["sedd"].push_to_hub(MODEL_PUSHED, token="unused", tags=["my-tag"], commit_message="first")
            tokenizer.save_pretrained(
                root / "tokenizer"
            )  # (tokenizer.push_to_hub would fetch a card from huggingface.co)
            HfApi(endpoint=hub.url, token="unused").upload_folder(repo_id=MODEL_PUSHED, folder_path=root / "tokenizer")
            model_files = HfApi(endpoint=hub.url).list_repo_files(MODEL_PUSHED)
            # save_pretrained(push_to_hub=True) uploads once the code is written
            models["ctmc"].save_pretrained(
                root / "via_save", push_to_hub=True, repo_id="tester/via-save", token="unused"
            )
            via_save_files = HfApi(endpoint=hub.url).list_repo_files("tester/via-save")
            card = hub.repos[MODEL_PUSHED].files["README.md"].decode()  # what the Hub holds
        finally:
            hf_constants.HF_HUB_OFFLINE = offline
            hf_constants.ENDPOINT = endpoint
        cases["hub:mdlm"] = [PUSHED, cases["mdlm"][1]]
        cases["model.push_to_hub:sedd"] = [MODEL_PUSHED, cases["sedd"][1]]
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1")
        proc = subprocess.run(
            [str(python), "-c", CHILD, json.dumps(cases), json.dumps(GEN)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Do you wish to run the custom code" not in proc.stdout, "a load asked for trust_remote_code"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS=")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return {
        "child": json.loads(lines[0][len("RESULTS=") :]),
        "root": root,
        "pushed_files": files,
        "commit": commit,
        "model_pushed_files": model_files,
        "model_pushed_card": card,
        "via_save_files": via_save_files,
    }


def backbone_models():
    """Tiny MDLM (Llama decoder, shifted prediction) and BD3-LM (GPT-2 decoder) models."""
    llama = LlamaConfig(vocab_size=13, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    gpt2 = GPT2Config(vocab_size=13, n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=1, eos_token_id=1)
    torch.manual_seed(0)
    mdlm = MDLMForDiffusionLM(MDLMConfig(backbone_config=llama, shifted_prediction=True, max_position_embeddings=16))
    bd3lm = BD3LMForDiffusionLM(BD3LMConfig(backbone_config=gpt2, block_size=4, max_position_embeddings=16))
    return {"mdlm": mdlm.eval(), "bd3lm": bd3lm.eval()}


@pytest.mark.parametrize("key", ["mdlm", "bd3lm"])
def test_exported_transformers_backbone_loads_without_hf_ddlm(child_results, key):
    r = child_results["child"]["results"][f"backbone:{key}"]
    assert "error" not in r, r.get("error")
    assert r["module"].startswith("transformers_modules.") and r["module"].endswith(f"modeling_{key}")
    assert r["logits_equal"] and r["loss_equal"] and r["generate_equal"] and r["resaved_logits_equal"]


@pytest.mark.parametrize("config_class,model_class", model_params("export"))
def test_exported_folder_loads_without_hf_ddlm(child_results, config_class, model_class):
    mt = config_class.model_type
    child = child_results["child"]
    assert child["hf_ddlm_modules"] == [] and child["flash_attn"] is False
    # export_model's folder, and the folder of a plain model.save_pretrained
    for key in (mt, f"saved:{mt}"):
        r = child["results"][key]
        assert "error" not in r, (key, r.get("error"))
        assert r["module"].startswith("transformers_modules.") and r["module"].endswith(f"modeling_{mt}"), key
        assert r["config_module"].endswith(f"configuration_{mt}")
        assert r["masked_lm_class"] == model_class.__name__
        assert r["can_generate"] and r["sampler"] == model_class.default_sampler
        assert r["logits_equal"] and r["loss_equal"], f"{key}: the exported code computes different outputs"
        assert r["generate_equal"], f"{key}: seeded generation differs from the library's"
        assert r["decoded"]
        assert r["resaved_logits_equal"] and r["resaved_sampler"] == model_class.default_sampler, key

    folder = child_results["root"] / f"exported_{mt}"
    names = {p.name for p in folder.iterdir()}
    assert {
        f"configuration_{mt}.py",
        f"generation_{mt}.py",
        f"modeling_{mt}.py",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "README.md",
        "tokenizer.json",
    } <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": f"modeling_{mt}.{config_class.__name__}",  # one module set: see export_model
        "AutoModel": f"modeling_{mt}.{model_class.__name__}",
        "AutoModelForMaskedLM": f"modeling_{mt}.{model_class.__name__}",
    }
    assert json.loads((folder / "generation_config.json").read_text())["sampler"] == model_class.default_sampler
    for name in (f"configuration_{mt}.py", f"generation_{mt}.py", f"modeling_{mt}.py"):
        code = (folder / name).read_text()
        assert "hf_ddlm import" not in code and "import hf_ddlm" not in code and "flash_attn" not in code
        assert "from ..." not in code and "from .. " not in code
    card = (folder / "README.md").read_text()
    assert "library_name: transformers" in card and "custom_code" in card and "arxiv.org" in card
    assert "**12.500**" in card and "random tokens (a test)" in card and "trust_remote_code=True" in card


def test_push_to_hub_through_a_local_endpoint(child_results):
    files = set(child_results["pushed_files"])
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "README.md",
        "modeling_mdlm.py",
        "configuration_mdlm.py",
        "generation_mdlm.py",
        "tokenizer.json",
    } <= files
    assert child_results["commit"].oid
    r = child_results["child"]["results"]["hub:mdlm"]
    assert r["module"].startswith("transformers_modules.")
    assert r["logits_equal"] and r["loss_equal"] and r["generate_equal"]


def test_model_push_to_hub_uploads_the_self_contained_folder_and_card(child_results):
    """``model.push_to_hub`` (transformers' signature) uploads the code, the sampler and our model
    card with the caller's tags; transformers' own would upload a generic card."""
    via_save = set(child_results["via_save_files"])
    assert {"config.json", "model.safetensors", "modeling_ctmc.py", "generation_ctmc.py", "README.md"} <= via_save
    files = set(child_results["model_pushed_files"])
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md", "modeling_sedd.py"} <= files
    card = child_results["model_pushed_card"]
    assert "Score Entropy Discrete Diffusion" in card and "- my-tag\n" in card and "- hf_ddlm\n" in card
    assert 'AutoModel.from_pretrained("tester/tiny-sedd", trust_remote_code=True)' in card
    r = child_results["child"]["results"]["model.push_to_hub:sedd"]
    assert "error" not in r, r.get("error")
    assert r["module"].startswith("transformers_modules.") and r["logits_equal"] and r["generate_equal"]


def test_save_pretrained_card_policy_plain_mode_and_local_classes(tmp_path):
    """The card is written, refreshed when hf_ddlm wrote it, and a user's own README is kept;
    ``self_contained=False`` writes transformers' plain folder; with hf_ddlm installed, loading
    without ``trust_remote_code`` builds the library's class from the self-contained folder."""
    _, model_class = find_model("mdlm")
    model = tiny_model(model_class)
    model.save_pretrained(tmp_path / "a")
    card = (tmp_path / "a" / "README.md").read_text()
    assert card.startswith("---\n") and "Masked Diffusion Language Model" in card
    reloaded = AutoModel.from_pretrained(tmp_path / "a")
    assert type(reloaded) is model_class and json.loads((tmp_path / "a" / "config.json").read_text())["auto_map"]
    (tmp_path / "a" / "README.md").write_text(card.replace("Masked Diffusion", "STALE"))
    model.save_pretrained(tmp_path / "a")
    assert "STALE" not in (tmp_path / "a" / "README.md").read_text()
    (tmp_path / "a" / "README.md").write_text("# my own notes\n")
    model.save_pretrained(tmp_path / "a")
    assert (tmp_path / "a" / "README.md").read_text() == "# my own notes\n"
    model.save_pretrained(tmp_path / "plain", self_contained=False)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())


def test_save_pretrained_refuses_meta_weights_before_writing(tmp_path):
    _, model_class = find_model("sedd")
    with torch.device("meta"):
        meta_model = model_class(tiny_model(model_class).config)
    with pytest.raises(ValueError, match="meta device"):
        meta_model.save_pretrained(tmp_path / "meta")
    assert not (tmp_path / "meta").exists()


def test_save_pretrained_of_a_user_subclass_is_plain_unless_asked(tmp_path):
    _, model_class = find_model("mdlm")
    sub = type("MyMDLM", (model_class,), {"__module__": "my_project.models"})
    model = sub(tiny_model(model_class).config)
    model.save_pretrained(tmp_path / "sub")
    assert not (tmp_path / "sub" / "modeling_mdlm.py").exists()
    with pytest.raises(ValueError, match="self_contained=True needs an hf_ddlm model class"):
        model.save_pretrained(tmp_path / "sub2", self_contained=True)


def test_export_refuses_meta_weights_peft_models_and_non_empty_folders(tmp_path):
    _, model_class = find_model("mdlm")
    with torch.device("meta"):
        meta_model = model_class(tiny_model(model_class).config)
    with pytest.raises(ValueError, match="meta device"):
        export_model(meta_model, tmp_path / "meta")
    assert not (tmp_path / "meta").exists()
    with pytest.raises(ValueError, match="PeftModel: merge the adapter first"):
        export_model(get_lora_model(tiny_model(model_class), r=2), tmp_path / "peft")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        export_model(tiny_model(model_class), tmp_path / "full")
    export_model(tiny_model(model_class), tmp_path / "full", overwrite=True)
    assert not (tmp_path / "full" / "x").exists()


def _fake_package(tmp_path, files):
    root = tmp_path / "pkgroot"
    for rel, text in files.items():
        path = root / "fakepkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    sys.path.insert(0, str(root))
    return root


def test_flatten_rewrites_imports_and_detects_clashes(tmp_path):
    root = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "from .a import helper\n",
            "sub/a.py": '"""doc"""\nfrom __future__ import annotations\nimport math\n__all__ = ["helper"]\ndef helper():\n    return math.pi\n',
            "b.py": "from .sub import helper as h\n\ndef use():\n    from .sub.a import helper\n    return h() + helper()\n",
            "c.py": "def helper():\n    return 1\n",
            "d.py": "from .b import use\nfrom .c import helper\n",
        },
    )
    try:
        files = flatten([("first", ["fakepkg.sub.a"]), ("second", ["fakepkg.b"])], package="fakepkg")
        first, second = (f.source for f in files)
        assert "__all__" not in first and '"""doc"""' not in first and first.count("from __future__") == 1
        assert "from .first import helper" in second and "h = helper" in second and "from fakepkg" not in second
        namespace = {}
        exec(compile(first.replace("from __future__ import annotations", ""), "first", "exec"), namespace)  # noqa: S102
        second_code = second.replace("from __future__ import annotations", "").replace("from .first import helper", "")
        exec(compile(second_code, "second", "exec"), namespace)  # noqa: S102
        assert namespace["use"]() == pytest.approx(2 * 3.141592653589793)
        with pytest.raises(FlattenError, match="'helper' is defined both in"):
            flatten([("only", ["fakepkg.d", "fakepkg.sub.a"])], package="fakepkg")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.split(".")[0] == "fakepkg"]:
            del sys.modules[name]


def test_add_remote_code_to_a_save_pretrained_folder(tmp_path):
    from hf_ddlm.export import add_remote_code

    _, model_class = find_model("sedd")
    model = tiny_model(model_class)
    with pytest.raises(ValueError, match="holds no config.json"):
        add_remote_code(model, tmp_path)
    model.save_pretrained(tmp_path)
    add_remote_code(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_sedd.SEDDForDiffusionLM"
    card = (tmp_path / "README.md").read_text()
    assert "Score Entropy Discrete Diffusion" in card and "arxiv.org/abs/2310.16834" in card
    assert "ELBO perplexity: not measured." in card and "Not recorded." in card
    assert f"{sum(p.numel() for p in model.parameters()):,}" in card
