"""The run settings of the comparison (:class:`CompareSettings`) and its two presets.

Every method gets the same settings: one DiT size for the diffusion models (the AR baseline has the
same depth, width, heads and vocabulary), one token budget (``steps * batch_size * seq_len``), one
optimiser (AdamW), one schedule (linear warmup, cosine decay to ``min_lr_ratio``), one data order.

* ``tiny``: a CI smoke run (seconds per method on one core): every code path, meaningless numbers.
* ``small``: about 50 minutes on 2 idle CPU cores (calibrated in docs/comparison.md): 4 layers of
  width 128, sequences of 128 tokens, 800 steps of 16 rows (1.6M training tokens per method), one
  torch thread (on a shared, loaded 2-core machine two threads contend and run several times slower).

The papers' scale is a matter of flags (``hf-ddlm compare --help``): e.g. ``--text-file owt.txt
--seq-len 1024 --hidden-size 768 --num-layers 12 --num-heads 12 --steps 1000000 --batch-size 512
--device cuda``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# the order of the table: the autoregressive baseline first (it judges the others' samples)
METHODS = (
    "ar",
    "sedd_absorb",
    "sedd_uniform",
    "mdlm",
    "bd3lm_4",
    "bd3lm_16",
    "d3pm",
    "ctmc",
    "csm",
)


@dataclass
class CompareSettings:
    """Everything a run depends on; written into ``settings.json`` of the output folder, and a
    resumed run must match it (see :func:`check_resumable`)."""

    preset: str = "custom"
    methods: tuple[str, ...] = METHODS
    # data: the offline Shakespeare text (or ``text_file``), the quickstart's BPE tokenizer
    text_file: str | None = None
    max_chars: int = 2_000_000
    tokenizer: str = "bpe"  # "bpe": trained on the text (vocab_size tokens); "gpt2": GPT-2's + mask (50258)
    vocab_size: int = 1024
    seq_len: int = 128
    validation_fraction: float = 0.05
    # one model size for all
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    cond_dim: int = 64
    # one token budget and optimiser for all
    steps: int = 800
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    max_grad_norm: float = 1.0
    # method choices
    d3pm_timesteps: int = 1000
    ctmc_graph: str = "uniform"
    # evaluation
    eval_every: int = 50  # steps between evaluations of the small subset (the plot)
    eval_subset: int = 32  # validation rows in that subset (fixed, fixed seed)
    eval_max_rows: int | None = None  # cap on the final evaluation's rows (None: the whole split)
    mc_samples: int = 2  # Monte-Carlo draws of t per validation row in the final bound
    num_samples: int = 16  # generated sequences per method (sample quality)
    sample_steps: int = 128  # denoising steps per sample
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self):
        self.methods = tuple(self.methods)
        self.betas = tuple(self.betas)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty selection of {list(METHODS)}, got {list(self.methods)}")
        positive = ("max_chars", "seq_len", "hidden_size", "num_layers", "num_heads", "cond_dim", "steps",
                    "batch_size", "eval_every", "eval_subset", "mc_samples", "num_samples", "sample_steps",
                    "checkpoint_every", "d3pm_timesteps")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.seq_len % 16:
            raise ValueError(f"seq_len must be a multiple of 16 (BD3-LM's block sizes 4 and 16), got {self.seq_len}")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads}) "
                "with an even head dimension"
            )
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must be in (0, 0.5), got {self.validation_fraction}")
        if not self.lr > 0 or not 0.0 <= self.min_lr_ratio <= 1.0 or self.warmup_steps < 0:
            raise ValueError("lr must be > 0, min_lr_ratio in [0, 1] and warmup_steps >= 0")
        if self.tokenizer not in ("bpe", "gpt2"):
            raise ValueError(f"tokenizer must be 'bpe' or 'gpt2', got {self.tokenizer!r}")
        if self.ctmc_graph not in ("uniform", "absorbing"):
            raise ValueError(f"ctmc_graph must be 'uniform' or 'absorbing', got {self.ctmc_graph!r}")
        if self.eval_max_rows is not None and self.eval_max_rows < 1:
            raise ValueError(f"eval_max_rows must be a positive integer or None, got {self.eval_max_rows!r}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"], d["betas"] = list(self.methods), list(self.betas)
        return d

    def replace(self, **changes) -> CompareSettings:
        return dataclasses.replace(self, **changes)


PRESETS = {
    "tiny": dict(
        preset="tiny", max_chars=200_000, vocab_size=300, seq_len=32, hidden_size=32, num_layers=2, num_heads=2,
        cond_dim=32, steps=30, batch_size=8, warmup_steps=5, eval_every=10, eval_subset=8, eval_max_rows=32,
        mc_samples=2, num_samples=4, sample_steps=16, checkpoint_every=10, d3pm_timesteps=100, threads=1,
    ),
    "small": dict(preset="small", threads=1, eval_subset=64, mc_samples=4),
}  # fmt: skip


def preset(name: str, **overrides) -> CompareSettings:
    """The preset ``name`` (``tiny`` or ``small``) with ``overrides`` (fields of CompareSettings)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {name!r}")
    unknown = [k for k in overrides if k not in {f.name for f in dataclasses.fields(CompareSettings)}]
    if unknown:
        raise ValueError(
            f"unknown settings {unknown}; allowed: {[f.name for f in dataclasses.fields(CompareSettings)]}"
        )
    return CompareSettings(**{**PRESETS[name], **overrides})


# settings that do not change what is trained or measured: a resumed run may change them
RESUME_FREE = {"methods", "device", "threads", "preset"}


def check_resumable(saved: dict, settings: CompareSettings) -> None:
    """Raise if ``settings`` differ from a folder's saved ones in anything that changes the numbers."""
    current = settings.to_dict()
    diff = {k: (saved.get(k), v) for k, v in current.items() if k not in RESUME_FREE and saved.get(k) != v}
    if diff:
        raise ValueError(
            "the output folder holds a run with other settings (saved, now): "
            + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items())
            + "; use another --output-dir"
        )


__all__ = ["METHODS", "PRESETS", "CompareSettings", "check_resumable", "preset"]
