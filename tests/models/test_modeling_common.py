"""The checks every method shares, run once per method through a small tester class.

As in ``transformers`` (``ModelTesterMixin`` and one ``XModelTest`` per model): each folder
``tests/models/<method>/`` has a ``test_modeling_<method>.py`` with a class

    class TestSEDDModel(DiffusionModelTesterMixin):
        method = "sedd"

that pytest collects with every test below. The tiny model comes from the one factory
``hf_ddlm.testing.tiny_model`` and the ``MODELS`` table; a variant (another graph, estimator or
parameterization) is another class with ``config_overrides``. The method-specific tests (exactness
by enumeration, golden comparisons with the official codes) live beside the tester in the same folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

import hf_ddlm
from hf_ddlm.testing import MODELS, tiny_model


class DiffusionModelTesterMixin:
    """Shared checks of a method's tiny model. Subclasses set ``method`` (a key of ``MODELS``)."""

    method: str = ""
    config_overrides: dict = {}
    batch_size = 3
    seq_length = 8  # a multiple of every block size used
    timesteps = (0.25, 0.5, 0.875)  # k / T for D3PM's T = 8 as well
    num_inference_steps = 4

    # --- inputs -------------------------------------------------------------------------------
    def get_model(self, seed: int = 0, **overrides):
        return tiny_model(self.method, seed=seed, **{**self.config_overrides, **overrides})

    def clean_ids(self, model, batch_size=None, seed=0):
        """Clean tokens: below vocab_size - 1, so never the absorbing mask."""
        shape = (batch_size or self.batch_size, self.seq_length)
        return torch.randint(0, model.config.vocab_size - 1, shape, generator=torch.Generator().manual_seed(seed))

    def deterministic_output(self, model, input_ids):
        """The forward pass at fixed timesteps, without labels: no randomness anywhere."""
        t = torch.tensor(self.timesteps).repeat(len(input_ids))[: len(input_ids)]
        return model(input_ids=input_ids, timesteps=t)

    def training_output(self, model, labels, seed=1):
        return model(input_ids=labels, labels=labels, generator=torch.Generator().manual_seed(seed))

    # --- configuration ------------------------------------------------------------------------
    def test_registered_in_models_table_and_auto_classes(self):
        spec = MODELS[self.method]
        model = self.get_model()
        assert type(model) is spec.model_class and type(model.config) is spec.config_class
        assert model.config_class is spec.config_class
        assert type(AutoModel.from_config(model.config)) is spec.model_class
        assert type(AutoModelForMaskedLM.from_config(model.config)) is spec.model_class

    def test_config_round_trip(self, tmp_path):
        config = self.get_model().config
        again = type(config).from_dict(config.to_dict())
        assert again.to_dict() == config.to_dict()
        config.save_pretrained(tmp_path)
        loaded = AutoConfig.from_pretrained(tmp_path)
        assert type(loaded) is type(config)
        assert {**loaded.to_dict(), "_name_or_path": ""} == {**config.to_dict(), "_name_or_path": ""}

    # --- forward ------------------------------------------------------------------------------
    def test_training_forward_shapes_and_finite_loss(self):
        model = self.get_model()
        labels = self.clean_ids(model)
        out = self.training_output(model, labels)
        b, length, v = self.batch_size, self.seq_length, model.config.vocab_size
        assert out.logits.shape == (b, length, v)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert out.loss_per_token.shape == (b, length) and torch.isfinite(out.loss_per_token).all()

    def test_unlabelled_positions_carry_no_loss(self):
        model = self.get_model()
        labels = self.clean_ids(model)
        labels[:, -1] = -100
        out = model(input_ids=self.clean_ids(model), labels=labels, generator=torch.Generator().manual_seed(1))
        assert torch.isfinite(out.loss)
        assert (out.loss_per_token[:, -1] == 0).all()

    def test_deterministic_forward_shapes_and_values(self):
        model = self.get_model()
        x = self.clean_ids(model)
        out = self.deterministic_output(model, x)
        assert out.logits.shape == (self.batch_size, self.seq_length, model.config.vocab_size)
        assert not torch.isnan(out.logits).any()
        assert torch.equal(out.logits, self.deterministic_output(model, x).logits)

    def test_batch_rows_are_independent(self):
        """A row's output does not depend on the other rows of its batch."""
        model = self.get_model()
        x = self.clean_ids(model)
        full = self.deterministic_output(model, x).logits
        alone = self.deterministic_output(model, x[:1]).logits
        finite = torch.isfinite(full[:1])
        assert torch.equal(finite, torch.isfinite(alone))
        torch.testing.assert_close(alone[finite], full[:1][finite], rtol=1e-5, atol=1e-5)

    def test_loss_is_deterministic_given_the_generator(self):
        model = self.get_model()
        labels = self.clean_ids(model)
        first = self.training_output(model, labels, seed=1)
        again = self.training_output(model, labels, seed=1)
        assert torch.equal(first.loss, again.loss) and torch.equal(first.logits, again.logits)
        assert not torch.equal(first.loss, self.training_output(model, labels, seed=2).loss)

    # --- save / load --------------------------------------------------------------------------
    def test_save_pretrained_from_pretrained_round_trip(self, tmp_path):
        model = self.get_model()
        model.save_pretrained(tmp_path)
        x = self.clean_ids(model)
        expected = self.deterministic_output(model, x).logits
        expected_loss = self.training_output(model, x).loss
        for loader in (type(model), AutoModel, AutoModelForMaskedLM):
            loaded = loader.from_pretrained(tmp_path).eval()
            assert type(loaded) is type(model)
            assert loaded.state_dict().keys() == model.state_dict().keys()
            assert torch.equal(self.deterministic_output(loaded, x).logits, expected)
            assert torch.equal(self.training_output(loaded, x).loss, expected_loss)
            assert loaded.generation_config.to_dict() == model.generation_config.to_dict()

    # --- generation ---------------------------------------------------------------------------
    def generate(self, model, **kwargs):
        return model.generate(num_inference_steps=self.num_inference_steps, **kwargs)

    def test_generate_shape_range_and_seed(self):
        model = self.get_model()
        out = self.generate(model, max_length=self.seq_length, num_return_sequences=2, seed=0)
        assert out.shape == (2, self.seq_length) and out.dtype == torch.long
        assert ((out >= 0) & (out < model.config.vocab_size)).all()
        if model.graph.absorbing:  # the last step reveals every position
            assert (out != model.config.mask_token_id).all()
        again = self.generate(model, max_length=self.seq_length, num_return_sequences=2, seed=0)
        assert torch.equal(out, again)

    def test_generate_keeps_the_prompt(self):
        model = self.get_model()
        prompt = self.clean_ids(model, batch_size=1)[:, : self.seq_length // 2]
        out = self.generate(model, input_ids=prompt, max_new_tokens=self.seq_length // 2, seed=0)
        assert out.shape == (1, self.seq_length) and torch.equal(out[:, : prompt.shape[1]], prompt)

    # --- training -----------------------------------------------------------------------------
    def test_one_optimizer_step_keeps_everything_finite(self):
        model = self.get_model().train()
        labels = self.clean_ids(model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        loss = self.training_output(model, labels).loss
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads and all(torch.isfinite(g).all() for g in grads.values())
        assert any(g.abs().sum() > 0 for g in grads.values())
        optimizer.step()
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
        assert torch.isfinite(self.training_output(model, labels).loss)

    def test_gradient_checkpointing_gives_the_same_gradients(self):
        labels = None
        grads = []
        for checkpointing in (False, True):
            model = self.get_model().train()
            if checkpointing:
                model.gradient_checkpointing_enable()
            labels = self.clean_ids(model) if labels is None else labels
            self.training_output(model, labels).loss.backward()
            grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6)


# --- the table itself -------------------------------------------------------------------------
def test_every_model_class_is_in_the_table_and_has_a_tester():
    exported = {getattr(hf_ddlm, name) for name in hf_ddlm.__all__ if name.endswith("ForDiffusionLM")}
    assert exported == {spec.model_class for spec in MODELS.values()}
    here = Path(__file__).parent
    for method in MODELS:
        module = importlib.import_module(f"{__package__}.{method}.test_modeling_{method}")
        testers = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, DiffusionModelTesterMixin) and obj.method == method
        ]
        assert testers, f"{here / method} has no DiffusionModelTesterMixin class for {method!r}"


@pytest.mark.parametrize("method", sorted(MODELS))
def test_tiny_model_factory_is_seeded(method):
    a, b = tiny_model(method, seed=3), tiny_model(method, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = tiny_model(method, seed=4)
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
