"""The DDiT backbone of SEDD, MDLM and BD3-LM: a bidirectional transformer with adaLN conditioning.

Parameter names equal the official checkpoints' (``vocab_embed.embedding``, ``sigma_map.mlp.0``,
``blocks.N.attn_qkv``, ``output_layer.linear``...), so official weights load key for key.

Forward, for ids X [B, L] and a conditioning scalar ``sigma`` [B]:
  h = E[X];  c = SiLU(MLP(sinusoid(sigma)))   (cos first, 256 features, no rescaling of sigma)
  each block:  h += gate1 * attn(modulate(LN(h)))  and  h += gate2 * mlp(modulate(LN(h)))
  logits = linear(modulate(LN(h)))
with rotary positions (rotate-half layout) on q and k, and attention that takes a boolean mask
(padding, or any [B, 1, Lq, Lk] pattern such as BD3-LM's block mask).

The attention kernel follows transformers' conventions: ``config._attn_implementation`` names a
function of ``ALL_ATTENTION_FUNCTIONS`` ("sdpa", the default; "eager", this file's reference, the
one that returns the attention weights; any registered one), called as
``fn(module, q, k, v, mask, dropout=, scaling=)``. A FlexAttention ``BlockMask`` (BD3-LM's training
mask under "flex_attention") runs FlexAttention. Each block returns ``(hidden, attn_weights)``, so
the model's ``_can_record_outputs`` hooks collect ``hidden_states`` and ``attentions``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.output_capturing import OutputRecorder

from .attention import FLEX_ATTENTION_AVAILABLE, BlockMask, flex_attention_forward


class LayerNorm(nn.Module):
    """Bias-free LayerNorm computed in float32, as in the official DiT."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x):
        return F.layer_norm(x.float(), [self.dim]).to(x.dtype) * self.weight[None, None, :]


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the conditioning scalar followed by a 2-layer MLP (GLIDE / DiT)."""

    def __init__(self, cond_dim: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, cond_dim, bias=True),
            nn.SiLU(),
            nn.Linear(cond_dim, cond_dim, bias=True),
        )

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # cos first, as the checkpoints expect

    def forward(self, t):
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(t_freq.to(self.mlp[0].weight.dtype))


class Rotary(nn.Module):
    """Rotary position tables. ``inv_freq`` is a persistent buffer, as in the checkpoints."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.base = base
        self.register_buffer("inv_freq", self.compute_inv_freq(head_dim, base), persistent=True)

    @staticmethod
    def compute_inv_freq(head_dim: int, base: float = 10000.0) -> torch.Tensor:
        return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))

    def forward(self, position_ids: torch.Tensor):
        """position_ids [B, L] or [L] -> (cos, sin) of shape [B or 1, 1, L, head_dim]."""
        if position_ids.dim() == 1:
            position_ids = position_ids[None]
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x, cos, sin):
    """Rotate-half (GPT-NeoX) layout: feature j pairs with feature j + d/2."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def eager_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """softmax(q k^T * scaling + mask) v, written out: the reference every other kernel must match,
    and the one that returns the weights. q [B, H, Lq, d], k, v [B, H, Lk, d]; ``attention_mask`` is
    boolean (True = attend) or additive, broadcastable to [B, H, Lq, Lk]. Returns
    (output [B, Lq, H, d], weights [B, H, Lq, Lk]), transformers' layout."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class DDiTBlock(GradientCheckpointingLayer):
    is_causal = False

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        cond_dim: int,
        mlp_ratio: int = 4,
        dropout: float = 0.1,
        config=None,
    ):
        super().__init__()
        self.config = config  # read for _attn_implementation at every call (it can change at runtime)
        self.n_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.norm1 = LayerNorm(hidden_size)
        self.attn_qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.attn_out = nn.Linear(hidden_size, hidden_size, bias=False)
        self.norm2 = LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_ratio * hidden_size, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * hidden_size, hidden_size, bias=True),
        )
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * hidden_size, bias=True)
        self.adaLN_modulation.zero_init = True  # adaLN-zero: each block starts as the identity
        self.dropout = dropout

    def attention(self, x, cos, sin, attn_mask, kv_cache=None):
        b, l, _ = x.shape
        qkv = self.attn_qkv(x).view(b, l, 3, self.n_heads, self.head_dim)  # [3][H][d] layout
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, d]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache(k, v)
        # scaling=None: the kernel's own 1/sqrt(d), bit for bit what the official SDPA call computes
        o, weights = self.attention_function(attn_mask)(self, q, k, v, attn_mask, dropout=0.0, scaling=None)
        return o.reshape(b, l, -1), weights

    def attention_function(self, attn_mask):
        if FLEX_ATTENTION_AVAILABLE and isinstance(attn_mask, BlockMask):
            return flex_attention_forward
        implementation = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if implementation == "flex_attention":  # a dense mask (padding, a cache read): SDPA computes the same
            implementation = "sdpa"
        return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)

    def forward(self, x, c, cos, sin, attn_mask=None, kv_cache=None):
        """Returns (x, attention weights or None)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        h, weights = self.attention(modulate(self.norm1(x), shift1, scale1), cos, sin, attn_mask, kv_cache)
        x = x + gate1 * F.dropout(self.attn_out(h), self.dropout, self.training)
        h = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + gate2 * F.dropout(h, self.dropout, self.training), weights


class DDitFinalLayer(nn.Module):
    def __init__(self, hidden_size: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.norm_final = LayerNorm(hidden_size)
        self.linear = nn.Linear(hidden_size, out_channels)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * hidden_size, bias=True)
        self.linear.zero_init = self.adaLN_modulation.zero_init = True  # the model starts at a uniform output

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class EmbeddingLayer(nn.Embedding):
    """A raw [V, D] matrix under the official key ``vocab_embed.embedding``, untied from the output
    layer. An ``nn.Embedding`` to every reader (``weight``, ``num_embeddings``, ``embedding_dim``,
    ``forward``), so PEFT and transformers' embedding utilities accept it, but the parameter keeps
    the checkpoints' name ``embedding`` (nn.Embedding's own ``__init__``, which would register
    ``weight``, is not run)."""

    def __init__(self, dim: int, vocab_size: int):
        nn.Module.__init__(self)
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))
        self.padding_idx, self.max_norm, self.norm_type = None, None, 2.0
        self.scale_grad_by_freq, self.sparse = False, False
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    @property
    def weight(self):
        return self.embedding

    @property
    def num_embeddings(self):
        return self.embedding.shape[0]

    @property
    def embedding_dim(self):
        return self.embedding.shape[1]

    def forward(self, x):
        return F.embedding(x, self.embedding)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


def padding_to_attn_mask(attention_mask: torch.Tensor | None, dtype_bool=True) -> torch.Tensor | None:
    """[B, L] (1 = attend) -> boolean key mask [B, 1, 1, L] for SDPA; 4-D boolean masks pass through."""
    if attention_mask is None or not torch.is_tensor(attention_mask):  # None, or a flex BlockMask
        return attention_mask
    if attention_mask.dim() == 4:
        return attention_mask.bool()
    return attention_mask.bool()[:, None, None, :]


@torch.no_grad()
def init_dit_weights(module: nn.Module):
    """The official DiT init of one module: zero adaLN and output head (the model starts at a
    uniform output; the Linears are flagged ``zero_init``), LayerNorm weights 1, the rotary table,
    every other Linear and the embedding PyTorch's default (Kaiming-uniform, a = sqrt(5); bias
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))). transformers' ``init`` functions skip tensors already
    loaded, so on the meta device only the missing ones are filled."""
    if isinstance(module, Rotary):
        init.copy_(module.inv_freq, Rotary.compute_inv_freq(module.head_dim, module.base))
    elif isinstance(module, EmbeddingLayer):
        init.kaiming_uniform_(module.embedding, a=math.sqrt(5))
    elif isinstance(module, nn.Linear):
        if getattr(module, "zero_init", False):
            # flagged on the Linear itself: transformers skips parameter-less parents such as the blocks
            init.zeros_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features) if module.in_features > 0 else 0
                init.uniform_(module.bias, -bound, bound)
    elif isinstance(module, (LayerNorm, nn.LayerNorm)):
        if module.weight is not None:
            init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            init.zeros_(module.bias)


class DiT(PreTrainedModel):
    """The DDiT trunk: the base model of every method (``base_model_prefix = "backbone"``), a
    ``PreTrainedModel`` so that it saves, loads and initialises as transformers' base models do.
    ``config`` needs vocab_size, hidden_size, num_hidden_layers, num_attention_heads, cond_dim,
    dropout and mlp_ratio."""

    config_class = PreTrainedConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DDiTBlock"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "hidden_states": OutputRecorder(DDiTBlock, index=0),
        "attentions": OutputRecorder(DDiTBlock, index=1),
    }
    # BD3-LM's BlockKVCache may slide past the model length: its rotary keys can be re-based
    block_kv_cache_slides = True

    def __init__(self, config):
        super().__init__(config)
        self.vocab_embed = EmbeddingLayer(config.hidden_size, config.vocab_size)
        self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.rotary_emb = Rotary(config.hidden_size // config.num_attention_heads)
        self.blocks = nn.ModuleList(
            DDiTBlock(
                config.hidden_size,
                config.num_attention_heads,
                config.cond_dim,
                config.mlp_ratio,
                config.dropout,
                config=config,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.output_layer = DDitFinalLayer(config.hidden_size, config.vocab_size, config.cond_dim)

    def _init_weights(self, module):
        init_dit_weights(module)

    def get_input_embeddings(self):
        return self.vocab_embed

    def set_input_embeddings(self, value):
        self.vocab_embed = value

    def get_output_embeddings(self):
        return self.output_layer.linear

    def set_output_embeddings(self, value):
        self.output_layer.linear = value

    def forward(
        self,
        input_ids,
        sigma,
        attention_mask=None,
        position_ids=None,
        kv_caches=None,
        output_positions=None,
        inputs_embeds=None,
    ):
        """input_ids [B, L]; sigma [B] (the conditioning scalar); attention_mask [B, L] or a
        boolean [B|1, 1, L, L_k]; position_ids [B, L] or [L] (default 0..L-1); ``inputs_embeds``
        [B, L, D] replaces the embedding lookup of ``input_ids``. Returns logits [B, L, V], or
        [B, K, V] for the rows ``output_positions`` [B, K] only (the output head skips the others)."""
        if inputs_embeds is None:
            x = self.vocab_embed(input_ids)
        else:
            x = inputs_embeds
        c = F.silu(self.sigma_map(sigma))
        if position_ids is None:
            position_ids = torch.arange(x.shape[1], device=x.device)
        cos, sin = self.rotary_emb(position_ids)
        attn_mask = padding_to_attn_mask(attention_mask)
        for i, block in enumerate(self.blocks):
            x, _ = block(x, c, cos, sin, attn_mask, None if kv_caches is None else kv_caches[i])
        if output_positions is not None:
            x = x.gather(1, output_positions[..., None].expand(-1, -1, x.shape[-1]))
        return self.output_layer(x, c)


__all__ = [
    "DDiTBlock",
    "DDitFinalLayer",
    "DiT",
    "EmbeddingLayer",
    "LayerNorm",
    "Rotary",
    "TimestepEmbedder",
    "apply_rotary",
    "eager_attention_forward",
    "init_dit_weights",
    "modulate",
    "padding_to_attn_mask",
    "rotate_half",
]
