"""Convert an official MDLM checkpoint folder (``kuleshov-group/mdlm-owt`` layout) to hf_ddlm's.

A LLaDA or Dream folder (``official_formats``) converts too: MDLM on the transformers decoder its
code computes, its weights renamed (every official key and shape checked first), and the published
sampler as ``generation_config.json``.

The official folder holds ``config.json`` (``model_type: "mdlm"``, ``auto_map`` to remote code,
the official field names ``hidden_dim`` / ``n_blocks`` / ``n_heads`` / ``model_length``,
``return_dict: false``) and ``model.safetensors`` whose keys already carry the ``backbone.`` prefix
our model uses. The conversion drops the remote-code fields, maps the names, checks every key and
shape, and adds ``generation_config.json`` with the published sampler (the official default
``ddpm_cache``: ancestral steps with move chance t, 128 steps down to 1e-5, then an argmax).

    python -m hf_ddlm.models.mdlm.convert_mdlm_checkpoint SRC DST [--overwrite]
"""

from __future__ import annotations

from pathlib import Path

from ...generation.configuration import DiffusionGenerationConfig
from ..sedd.convert_sedd_checkpoint import check_state_dict, converter_main, load_weights, read_json, write_checkpoint
from .configuration_mdlm import MDLMConfig
from .modeling_mdlm import MDLMForDiffusionLM
from .official_formats import SPECIAL_TOKENS, official_format, official_state_dict

# configs/config.yaml of kuleshov-group/mdlm: sampling.predictor ddpm_cache, steps 128,
# noise_removal True; the grid ends at 1e-5 (diffusion.py ``_sample``).
PUBLISHED_GENERATION_CONFIG = {
    "sampler": "ancestral",
    "sampler_kwargs": {"move_chance": "linear"},
    "num_inference_steps": 128,
    "t_min": 1e-5,
    "noise_removal": True,
}

# fields of the official config that describe its remote code, not the model
_REMOTE_CODE_FIELDS = ("auto_map", "architectures", "return_dict", "transformers_version")


def convert_official_mdlm(src_dir, dst_dir, overwrite: bool = False):
    """Convert the official MDLM folder ``src_dir`` into an hf_ddlm checkpoint in ``dst_dir``.

    Returns the output folder. Raises ValueError if ``src_dir`` is not an MDLM folder, if its
    weights do not match the architecture its config describes (every offending key named), or if
    ``dst_dir`` is a non-empty folder and ``overwrite`` is False.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"src_dir {src} is not a folder")
    official = read_json(src / "config.json", "src_dir")
    fmt = official_format(official)
    if fmt is not None:  # a LLaDA or Dream folder: MDLM on a transformers backbone
        config = MDLMConfig.from_dict(official)
        state = official_state_dict(fmt, official, src)
        check_state_dict(state, MDLMForDiffusionLM, config)
        path = src / "generation_config.json"
        folder_config = read_json(path, "src_dir") if path.is_file() else {}
        folder_config = {**{k: getattr(config, k, None) for k in SPECIAL_TOKENS}, **folder_config}
        generation_config = DiffusionGenerationConfig(**fmt.generation_config_fields(folder_config))
        return write_checkpoint(dst_dir, config, state, generation_config, overwrite)
    if official.get("model_type") != "mdlm":
        raise ValueError(
            f"src_dir: {src / 'config.json'} is not an MDLM config (model_type must be 'mdlm', got {official.get('model_type')!r})"
        )
    config = MDLMConfig.from_dict({k: v for k, v in official.items() if k not in _REMOTE_CODE_FIELDS})
    config.architectures = [MDLMForDiffusionLM.__name__]
    state = load_weights(src)
    check_state_dict(state, MDLMForDiffusionLM, config)
    return write_checkpoint(dst_dir, config, state, DiffusionGenerationConfig(**PUBLISHED_GENERATION_CONFIG), overwrite)


def main(argv=None):
    converter_main(
        convert_official_mdlm,
        "python -m hf_ddlm.models.mdlm.convert_mdlm_checkpoint",
        "Convert an official MDLM checkpoint folder (config.json + model.safetensors, as in kuleshov-group/mdlm-owt) "
        "into a self-contained hf_ddlm folder loadable with AutoModel.from_pretrained (our code replaces the official remote code).",
        "the official folder (a local copy of kuleshov-group/mdlm-owt)",
        argv,
    )


__all__ = ["convert_official_mdlm", "main"]

if __name__ == "__main__":
    main()
