"""The shape of generation and the sampler layer: one sampler registry with aliases, block decoding as
its own mixin (no flag), and no import cycle between hf_ddlm's modules (lazy imports included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hf_ddlm
from hf_ddlm import BD3LMConfig, BD3LMForDiffusionLM, MDLMForDiffusionLM
from hf_ddlm.generation import BlockDiffusionGenerationMixin, DiffusionGenerationConfig, DiffusionGenerationMixin
from hf_ddlm.processes import LogLinearSchedule, get_graph
from hf_ddlm.samplers import AncestralSampler, Sampler, get_sampler
from hf_ddlm.testing_utils import tiny_config

PACKAGE_ROOT = Path(hf_ddlm.__file__).parent


def test_block_ancestral_is_an_alias_of_ancestral():
    graph, schedule = get_graph("absorbing", 7), LogLinearSchedule(eps=0.0)
    sampler = get_sampler("block_ancestral", graph, schedule, nucleus_p=0.9)
    assert type(sampler) is AncestralSampler and sampler.variant == "bd3lm" and sampler.nucleus_p == 0.9
    explicit = get_sampler("ancestral", graph, schedule, variant="bd3lm", nucleus_p=0.9)
    log_probs = torch.randn(2, 5, 7, dtype=torch.float64).log_softmax(-1)
    x_t = torch.tensor([[6, 6, 1, 6, 2], [6, 3, 6, 6, 6]])
    t, s = torch.full((2,), 0.8), torch.full((2,), 0.5)
    noise = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(0))
    a, b = (
        sampler.step(log_probs, x_t, t, s, uniform_noise=noise),
        explicit.step(log_probs, x_t, t, s, uniform_noise=noise),
    )
    assert torch.equal(a.prev_sample, b.prev_sample) and torch.equal(a.probs, b.probs)
    with pytest.raises(ValueError, match="variant"):
        get_sampler("block_ancestral", graph, schedule, variant="mdlm")
    with pytest.raises(ValueError, match="block_ancestral"):
        get_sampler("no_such_sampler", graph, schedule)
    with pytest.raises(ValueError, match="nucleus_p"):
        get_sampler("ancestral", graph, schedule, nucleus_p=0.5)


def test_block_ancestral_from_a_saved_generation_config(tmp_path):
    torch.manual_seed(0)
    config = BD3LMConfig(
        vocab_size=11,
        num_hidden_layers=1,
        max_position_embeddings=8,
        block_size=4,
        hidden_size=16,
        num_attention_heads=2,
        cond_dim=8,
    )
    model = BD3LMForDiffusionLM(config).eval()
    DiffusionGenerationConfig(sampler="block_ancestral", num_inference_steps=3).save_pretrained(tmp_path)
    model.generation_config = DiffusionGenerationConfig.from_pretrained(tmp_path)
    out = model.generate(max_length=8, seed=0)
    assert out.shape == (1, 8) and not (out == model.graph.mask_token_id).any()


def test_block_decoding_is_a_mixin_not_a_flag():
    assert BD3LMForDiffusionLM.can_generate() and MDLMForDiffusionLM.can_generate()
    assert BlockDiffusionGenerationMixin in BD3LMForDiffusionLM.__bases__
    assert not issubclass(MDLMForDiffusionLM, BlockDiffusionGenerationMixin)
    assert issubclass(BlockDiffusionGenerationMixin, DiffusionGenerationMixin)
    model = MDLMForDiffusionLM(tiny_config(MDLMForDiffusionLM))
    assert not hasattr(model, "is_block_diffusion")
    # the first-hitting protocol is part of the Sampler contract, off by default
    assert (
        Sampler.first_hitting is False and get_sampler("first_hitting", model.graph, LogLinearSchedule()).first_hitting
    )


def test_block_decoding_imports_first_in_a_fresh_interpreter():
    code = "import hf_ddlm.generation.block_decoding, hf_ddlm.generation.mixin; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def _import_graph() -> dict[str, set[str]]:
    """module -> the hf_ddlm modules it imports, at import time or lazily inside functions. Importing
    ``a.b.c`` runs the packages ``a`` and ``a.b`` first: an import also points at those (except
    the importer's own ancestors, which always run before it)."""
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("hf_ddlm")):
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    targets.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.startswith("hf_ddlm")}
        graph[name] = set()
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                    graph[name].add(prefix)
    return graph


def test_no_import_cycle():
    graph = _import_graph()
    assert "hf_ddlm.generation.block_decoding" in graph["hf_ddlm.models.bd3lm.modeling_bd3lm"]
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
