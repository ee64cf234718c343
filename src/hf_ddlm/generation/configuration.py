"""``DiffusionGenerationConfig``: the sampler settings saved as ``generation_config.json``."""

from __future__ import annotations

from transformers import GenerationConfig


class DiffusionGenerationConfig(GenerationConfig):
    r"""A `GenerationConfig` for iterative denoising.

    Args:
        sampler (`str`, *optional*): a registered sampler name (`"analytic"`, `"euler"`,
            `"ancestral"`, ...). `None` takes the model's default.
        sampler_kwargs (`dict`, *optional*): keyword arguments of the sampler's constructor.
        num_inference_steps (`int`, defaults to 128): denoising steps from t=1 to `t_min`.
        t_min (`float`, defaults to 1e-5): the last time of the grid (the official samplers' eps).
        noise_removal (`bool`, defaults to True): run the sampler's final denoising step at `t_min`.
        use_cache (`bool`, defaults to True): reuse the network output when a step changed no token
            and the model is not time-conditioned (exact; saves function evaluations).
        The usual `max_length`, `max_new_tokens`, `num_return_sequences`, `temperature`, `top_k`
        and `top_p` keep their `transformers` meaning; `do_sample=False` is greedy decoding: every
        revealed token is the most likely clean token (`top_k=1`; which positions are revealed at a
        step stays random). transformers' options of autoregressive decoding (`num_beams`,
        `repetition_penalty`, `no_repeat_ngram_size`, `min_new_tokens`, ...: ``AUTOREGRESSIVE_ONLY``
        in ``generation.utils``) are refused unless neutral. `num_inference_steps` is at most 10^6.
    """

    def __init__(
        self,
        sampler: str | None = None,
        sampler_kwargs: dict | None = None,
        num_inference_steps: int = 128,
        t_min: float = 1e-5,
        noise_removal: bool = True,
        **kwargs,
    ):
        self.sampler = sampler
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self.num_inference_steps = num_inference_steps
        self.t_min = t_min
        self.noise_removal = noise_removal
        kwargs.setdefault("do_sample", True)
        kwargs.setdefault("max_length", None)  # None: the model's training length (not the AR default of 20)
        super().__init__(**kwargs)

    @classmethod
    def from_model_config(cls, model_config, **kwargs):
        # the base version compares against a plain GenerationConfig and fails on our extra fields
        raise NotImplementedError


__all__ = ["DiffusionGenerationConfig"]
