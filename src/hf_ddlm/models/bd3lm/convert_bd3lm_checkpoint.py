"""Convert an official BD3-LM checkpoint (``kuleshov-group/bd3lm-owt-block_size{4,8,16}``: config.json
+ model.safetensors with ``backbone.*`` keys and the ``sampling_eps_min/max`` buffers) to hf_ddlm's
format.

``BD3LMForDiffusionLM.from_pretrained`` already reads the official folder; converting rewrites
``config.json`` in hf_ddlm's field names (the tuned clipped range from the buffers included, the
remote-code ``auto_map`` dropped) and adds a ``generation_config.json`` with the official sampler
settings: first-hitting with nucleus p = 0.9 (every reported BD3-LM generation), BOS = EOS = 50256
for the GPT-2 vocabulary. The weights are copied unchanged.

    python -m hf_ddlm.models.bd3lm.convert_bd3lm_checkpoint <official folder or Hub id> <output folder>
"""

from __future__ import annotations

import argparse

from ...generation.configuration import DiffusionGenerationConfig
from .modeling_bd3lm import BD3LMForDiffusionLM

GPT2_VOCAB_WITH_MASK = 50258
GPT2_EOS = 50256  # GPT-2's <|endoftext|>, used as both BOS and EOS by the official data pipeline


def convert_bd3lm_checkpoint(
    source, destination, nucleus_p: float = 0.9, **from_pretrained_kwargs
) -> BD3LMForDiffusionLM:
    model = BD3LMForDiffusionLM.from_pretrained(source, **from_pretrained_kwargs)
    special = {}
    if model.config.vocab_size == GPT2_VOCAB_WITH_MASK:
        special = dict(bos_token_id=GPT2_EOS, eos_token_id=GPT2_EOS, pad_token_id=GPT2_EOS)
    model.generation_config = DiffusionGenerationConfig(
        sampler="first_hitting", sampler_kwargs={"nucleus_p": nucleus_p}, **special
    )
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(destination)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="official checkpoint folder or Hub id")
    parser.add_argument("destination", help="output folder")
    parser.add_argument("--nucleus-p", type=float, default=0.9, help="official nucleus p of the default sampler")
    args = parser.parse_args(argv)
    convert_bd3lm_checkpoint(args.source, args.destination, nucleus_p=args.nucleus_p)


__all__ = ["convert_bd3lm_checkpoint", "main"]

if __name__ == "__main__":
    main()
