"""Lets the plain ``lm_eval`` command find hf_ddlm's model: ``lm_eval --model hf_ddlm ...``.

lm-evaluation-harness 0.4 looks models up in its own registry, which it fills when
``lm_eval.models`` is imported, and it has no plugin entry points. So the hf_ddlm wheel ships
``hf_ddlm_lm_eval.pth``, whose one line imports this module when the interpreter starts. It uses
the standard library only and imports nothing else: it puts one finder on ``sys.meta_path`` that
does nothing until ``lm_eval.models`` is imported; then, right after lm_eval has registered its
own models, it registers ``hf_ddlm`` and ``hf-ddlm`` as lazy entries (the ``"module:Class"``
strings that lm_eval itself uses), so hf_ddlm and torch load only when the model is asked for.
Any failure is swallowed: ``hf-ddlm lm-eval ...`` remains, which registers the model by import.
"""

import sys

WATCHED = "lm_eval.models"
ALIASES = ("hf_ddlm", "hf-ddlm")
TARGET = "hf_ddlm.lm_eval_adapter:DiffusionLMEval"


def register() -> None:
    try:
        from lm_eval.api.registry import model_registry

        for alias in ALIASES:
            if alias not in model_registry:
                model_registry.register(alias, target=TARGET)
    except Exception:  # noqa: BLE001 - never break lm_eval (an older registry, a frozen one)
        pass


class _RegisterAfterExec:
    """Wraps the real loader of ``lm_eval.models``: runs it, then registers hf_ddlm's model."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        register()

    def __getattr__(self, name):  # get_code, get_source, is_package, resource readers...
        return getattr(self.loader, name)


class LmEvalModelFinder:
    """On ``sys.meta_path``; answers only for ``lm_eval.models``, through the other finders."""

    def find_spec(self, name, path=None, target=None):
        if name != WATCHED:
            return None
        try:
            for finder in sys.meta_path:
                if isinstance(finder, LmEvalModelFinder) or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    if hasattr(spec.loader, "exec_module"):
                        spec.loader = _RegisterAfterExec(spec.loader)
                    return spec
        except Exception:  # noqa: BLE001 - fall back to the normal import
            return None
        return None


def install() -> None:
    if not any(type(f).__name__ == "LmEvalModelFinder" for f in sys.meta_path):
        sys.meta_path.insert(0, LmEvalModelFinder())
    if WATCHED in sys.modules:  # lm_eval already imported (this module imported late)
        register()


install()
