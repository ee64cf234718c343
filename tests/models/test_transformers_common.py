"""transformers' own ``ModelTesterMixin`` run against every hf_ddlm model class.

The mixin is ``tests/test_modeling_common.py`` of the transformers source distribution, fetched at
test time for the installed transformers version (``pip download --no-binary :all:``) and cached
(``HF_DDLM_TEST_CACHE``, default a folder under the temp dir); ``HF_DDLM_TRANSFORMERS_SDIST`` may
point at an sdist already on disk. It is never copied into this repository. A failed fetch fails
the collection of this file (CI has the package registry): the contract is not silently untested.

The sdist ships neither ``tests/exporters`` nor ``tests/generation``, which the file imports: the
two mixins it takes from there are replaced by empty classes. ``ExportTesterMixin`` only adds the
torch.export tests; ``GenerationTesterMixin`` is autoregressive ``generate`` (see the skips).

Each skip below says why the check does not apply to a non-autoregressive diffusion model.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
import unittest.mock
from pathlib import Path

import pytest
import torch
import transformers
from filelock import FileLock

from hf_ddlm.testing import MODELS, tiny_config

_PACKAGE = "_transformers_common_tests"
_STUBS = {
    "__init__.py": "",
    "exporters/__init__.py": "",
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/__init__.py": "",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
}


def _fetch_sdist(version: str, into: Path) -> Path:
    given = os.environ.get("HF_DDLM_TRANSFORMERS_SDIST")
    if given:
        return Path(given)
    into.mkdir(parents=True, exist_ok=True)
    found = sorted(into.glob(f"transformers-{version}.tar.gz"))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(into)]
        result = subprocess.run(
            [*command, f"transformers=={version}"], capture_output=True, text=True, timeout=600, check=False
        )
        found = sorted(into.glob(f"transformers-{version}.tar.gz"))
        if result.returncode or not found:
            raise RuntimeError(
                f"could not download the transformers {version} sdist (for tests/test_modeling_common.py):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
    return found[0]


def load_transformers_test_module():
    """``tests/test_modeling_common.py`` of the installed transformers version, imported as a package."""
    version = transformers.__version__
    cache = Path(os.environ.get("HF_DDLM_TEST_CACHE", Path(tempfile.gettempdir()) / "hf_ddlm_test_cache"))
    root = cache / f"transformers-{version}-tests"
    package = root / _PACKAGE
    target = package / "test_modeling_common.py"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"transformers-{version}.lock")):
        if not target.exists():
            sdist = _fetch_sdist(version, cache / "sdist")
            member = f"transformers-{version}/tests/test_modeling_common.py"
            with tarfile.open(sdist) as archive:
                source = archive.extractfile(member).read()
            for name, text in _STUBS.items():
                (package / name).parent.mkdir(parents=True, exist_ok=True)
                (package / name).write_text(text)
            partial = target.with_suffix(".partial")
            partial.write_bytes(source)
            partial.replace(target)  # a crash mid-write never leaves a truncated module behind
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"{_PACKAGE}.test_modeling_common")


common = load_transformers_test_module()


class DiffusionModelTester:
    """The ``model_tester`` the mixin reads: a tiny config and a batch of noisy states x_t with
    their ``timesteps`` (the model's input without labels is the noisy state at a given time)."""

    def __init__(self, parent, method: str, **overrides):
        self.parent = parent
        self.method = method
        self.overrides = {**MODELS[method].tiny_kwargs, **overrides}
        self.batch_size = 2
        self.seq_length = 8
        self.vocab_size = 99  # transformers' testers' size: resizing tests shrink it by 15
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 2
        self.is_training = True

    def get_config(self):
        return tiny_config(
            MODELS[self.method].config_class,
            num_hidden_layers=self.num_hidden_layers,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            **self.overrides,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        # clean tokens below vocab_size - 1: never the absorbing mask, valid for every graph
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 1)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "timesteps": torch.full((self.batch_size,), 0.5),
        }
        return config, inputs


def _skip(reason: str):
    def test(self):
        self.skipTest(reason)

    return test


class DiffusionModelTest(common.ModelTesterMixin):
    """``ModelTesterMixin`` on one hf_ddlm class; subclasses set ``method``."""

    method = ""
    overrides: dict = {}
    test_resize_embeddings = True
    test_torch_exportable = False  # the export tests live in tests/exporters, which the sdist lacks
    # the mixin runs its _init_weights check (from_pretrained(None, state_dict={}) equals a fresh model,
    # bit for bit) only on models dated 2023 or later by a copyright line; ours have none, so opt in
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.all_model_classes = (MODELS[self.method].model_class,)
        self.model_tester = DiffusionModelTester(self, self.method, **self.overrides)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """The model's input without labels is the noisy state x_t at ``timesteps`` (added where a
        test built its own inputs). With labels (the clean tokens x0) the batch is made
        deterministic, as the mixin compares repeated calls: x_t is x0 with every other token
        corrupted (the mask, or another token on a uniform graph) at the given ``timesteps``; CSM,
        which has no time and draws its neighbours, gets a seeded generator."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        ids = inputs_dict.get("input_ids")
        if ids is None:
            return inputs_dict
        inputs_dict.setdefault("timesteps", torch.full((ids.shape[0],), 0.5))
        if return_labels:
            config = self.model_tester.get_config()
            inputs_dict["labels"] = ids.clone()
            corrupted = ids.clone()
            if config.mask_token_id is not None:
                corrupted[:, ::2] = config.mask_token_id
            else:
                corrupted[:, ::2] = (ids[:, ::2] + 1) % config.vocab_size
            inputs_dict["input_ids"] = corrupted
            if not model_class.uses_time:
                inputs_dict["input_ids"] = ids
                inputs_dict["generator"] = torch.Generator().manual_seed(0)
        return inputs_dict

    def non_strict_loading(self):
        """hf_ddlm loads strictly by default (a missing weight raises, naming it); the mixin's checks
        that read the missing keys transformers reports run with strict=False, which gives them."""
        model_class = self.all_model_classes[0]
        strict_from_pretrained = model_class.from_pretrained.__func__

        def non_strict(cls, *args, **kwargs):
            return strict_from_pretrained(cls, *args, **{"strict": False, **kwargs})

        return unittest.mock.patch.object(model_class, "from_pretrained", classmethod(non_strict))

    def test_model_weights_reload_no_missing_tied_weights(self):
        with self.non_strict_loading():
            super().test_model_weights_reload_no_missing_tied_weights()

    def test_correct_missing_keys(self):
        with self.non_strict_loading():
            super().test_correct_missing_keys()

    def test_can_init_all_missing_weights(self):
        with self.non_strict_loading():  # every key is missing by design (state_dict={})
            super().test_can_init_all_missing_weights()

    def test_resize_tokens_embeddings(self):
        # an absorbing model's mask token stays the last id, so the new rows go before it: the
        # mixin's check of the last 10 rows reads the mask row (test_model_contract.py checks this layout)
        if self.model_tester.get_config().mask_token_id is not None:
            self.skipTest("absorbing graph: resizing inserts rows before the mask token, which stays last")
        super().test_resize_tokens_embeddings()

    def test_resize_embeddings_untied(self):
        # as test_resize_tokens_embeddings: the mask row, not a new one, is the last row
        if self.model_tester.get_config().mask_token_id is not None:
            self.skipTest("absorbing graph: resizing inserts rows before the mask token, which stays last")
        super().test_resize_embeddings_untied()

    # --- what does not apply to a non-autoregressive diffusion model -----------------------------
    # autoregressive generate() (greedy/beam search over a KV cache): our generate is the diffusion
    # sampler loop, tested in tests/test_generation.py; hence no GenerationTesterMixin
    test_generation_tester_mixin_inheritance = _skip(
        "generate is a diffusion sampler loop, not autoregressive decoding: GenerationTesterMixin does not apply"
    )
    # shifted next-token labels: diffusion labels are the clean tokens x0 at the same positions
    test_causal_lm_loss_honors_shift_labels = _skip("diffusion labels are x0 at the same positions: no shift")


def _tester(method: str, variant: str = "", **overrides):
    name = "Test" + MODELS[method].model_class.__name__ + variant + "TransformersCommon"
    cls = type(name, (DiffusionModelTest, unittest.TestCase), {"method": method, "overrides": overrides})
    cls.__module__ = __name__
    return cls


# every registered class with its tiny defaults, plus uniform-graph variants of the absorbing-by-
# default methods (no mask token: the mixin's own resizing checks apply to them unchanged)
_TESTERS = [_tester(method) for method in MODELS] + [
    _tester("sedd", "Uniform", graph="uniform", noise_schedule="geometric"),
    _tester("d3pm", "Uniform", graph="uniform"),
]
for _cls in _TESTERS:
    globals()[_cls.__name__] = _cls
del _cls

pytestmark = pytest.mark.filterwarnings("ignore")
