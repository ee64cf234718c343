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
        block_length (`int`, *optional*): semi-autoregressive decoding (LLaDA) in the full-sequence
            loop: the generated part is decoded left to right in blocks of this many positions, each
            with its share of `num_inference_steps`, later blocks masked but visible
            (`samplers.SemiAutoregressiveSampler`). Not for block diffusion models (BD3-LM), whose
            blocks are `config.block_size`. `None`: the whole canvas at once.
        stability_threshold (`int`, *optional*) and confidence_threshold (`float`, *optional*):
            adaptive stopping, as transformers' DiffusionGemma: a row stops once its argmax canvas has
            not changed for `stability_threshold` steps and the mean entropy of p_theta over its
            generated positions is below `confidence_threshold` (nats); it then takes its argmax
            canvas (`generation.stopping`). Set both or neither.
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
        block_length: int | None = None,
        stability_threshold: int | None = None,
        confidence_threshold: float | None = None,
        **kwargs,
    ):
        self.sampler = sampler
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self.num_inference_steps = num_inference_steps
        self.t_min = t_min
        self.noise_removal = noise_removal
        self.block_length = block_length
        self.stability_threshold = stability_threshold
        self.confidence_threshold = confidence_threshold
        kwargs.setdefault("do_sample", True)
        kwargs.setdefault("max_length", None)  # None: the model's training length (not the AR default of 20)
        super().__init__(**kwargs)

    @classmethod
    def from_model_config(cls, model_config, **kwargs):
        # the base version compares against a plain GenerationConfig and fails on our extra fields
        raise NotImplementedError


__all__ = ["DiffusionGenerationConfig"]
