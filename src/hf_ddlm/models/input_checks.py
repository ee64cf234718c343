"""The input checks every model's ``forward`` runs: clear errors that name the argument and what is
allowed, instead of an internal error deep in the network."""

import torch


class InputChecksMixin:
    # Shape and type checks run always; checks that read tensor values (ids in the vocabulary, t in
    # [0, 1]) run in eager mode only: torch.compile(fullgraph=True) and torch.export cannot branch
    # on data, so a traced graph trusts its inputs (_reads_values).
    @staticmethod
    def _reads_values() -> bool:
        return not torch.compiler.is_compiling()

    def _check_ids(self, ids, name, allow_mask=True):
        if not torch.is_tensor(ids):
            raise ValueError(f"{name} must be a torch.Tensor of token ids [batch, length], got {type(ids).__name__}")
        if ids.dim() != 2:
            hint = f" (one sequence: {name}[None])" if ids.dim() == 1 else ""
            raise ValueError(f"{name} must be [batch, length] (2-D), got shape {tuple(ids.shape)}{hint}")
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}): batch size and length must be >= 1")
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        if not self._reads_values():
            return
        bad = (ids < 0) | (ids >= self.config.vocab_size)
        if name == "labels":
            bad &= ids != -100
        if bad.any():
            raise ValueError(f"{name} has ids outside [0, {self.config.vocab_size}) (labels may also be -100)")
        if not allow_mask and self.graph.mask_token_id is not None:
            if (ids == self.graph.mask_token_id).any():
                raise ValueError(f"{name} must not contain the mask token id {self.graph.mask_token_id}")

    @staticmethod
    def _check_timesteps_type(timesteps):
        """A number, a tensor or a sequence of numbers (not text, not a bool)."""
        if timesteps is None or torch.is_tensor(timesteps):
            return
        ok = isinstance(timesteps, (int, float)) and not isinstance(timesteps, bool)
        if not ok and isinstance(timesteps, (list, tuple)):
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in timesteps)
        if not ok and hasattr(timesteps, "__array__"):  # numpy
            ok = getattr(timesteps, "dtype", None) is not None and timesteps.dtype.kind in "iuf"
        if not ok:
            raise ValueError(
                f"timesteps must be a number in [0, 1] or a tensor of shape (batch,), got {type(timesteps).__name__} "
                f"{timesteps!r}"
            )

    def _check_timesteps(self, timesteps, batch_size, device):
        self._check_timesteps_type(timesteps)
        timesteps = torch.as_tensor(timesteps, dtype=torch.float32, device=device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(batch_size)
        if timesteps.shape != (batch_size,):
            raise ValueError(f"timesteps must be a scalar or of shape ({batch_size},), got {tuple(timesteps.shape)}")
        if self._reads_values() and (((timesteps < 0) | (timesteps > 1)).any() or torch.isnan(timesteps).any()):
            raise ValueError("timesteps must lie in [0, 1] (t=0 is clean data, t=1 fully noised)")
        return timesteps

    @staticmethod
    def _check_position_ids(position_ids, shape):
        if position_ids is None:
            return
        batch, length = shape
        if not torch.is_tensor(position_ids) or position_ids.dtype not in (torch.int64, torch.int32):
            kind = position_ids.dtype if torch.is_tensor(position_ids) else type(position_ids).__name__
            raise ValueError(f"position_ids must hold integer positions (a LongTensor), got {kind}")
        ok = position_ids.shape[-1:] == (length,) and (
            position_ids.dim() == 1 or (position_ids.dim() == 2 and position_ids.shape[0] in (1, batch))
        )
        if not ok:
            raise ValueError(
                f"position_ids must be [length] or [batch or 1, length] = [{length}] or [{batch} or 1, {length}] "
                f"(the shape of input_ids {tuple(shape)}), got {tuple(position_ids.shape)}"
            )

    def _check_attention_mask(self, attention_mask, shape):
        if attention_mask is None:
            return
        if attention_mask.dim() == 2 and tuple(attention_mask.shape) != tuple(shape):
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(shape)}, got {tuple(attention_mask.shape)}"
            )
        if attention_mask.dim() not in (2, 4):
            raise ValueError(
                f"attention_mask must be [batch, length] (or a 4-D boolean mask), got {attention_mask.dim()}-D"
            )
        if attention_mask.dim() == 4:
            batch, length = shape
            b, h, q, k = attention_mask.shape
            heads = self.config.num_attention_heads
            if b not in (1, batch) or h not in (1, heads) or (q, k) != (length, length):
                raise ValueError(
                    f"a 4-D attention_mask must be [batch or 1, heads or 1, length, length] = "
                    f"[{batch} or 1, {heads} or 1, {length}, {length}], got {tuple(attention_mask.shape)}"
                )

    def _check_inputs(
        self, input_ids, labels, attention_mask, position_ids=None, timesteps=None, allow_mask_in_labels=False
    ):
        if input_ids is None and labels is None:
            raise ValueError("forward needs input_ids (the noisy state) or labels (the clean tokens)")
        if input_ids is not None:
            self._check_ids(input_ids, "input_ids")
        if labels is not None:
            self._check_ids(labels, "labels", allow_mask=allow_mask_in_labels)
            if input_ids is not None and labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
        shape = (input_ids if input_ids is not None else labels).shape
        self._check_attention_mask(attention_mask, shape)
        self._check_position_ids(position_ids, shape)
        self._check_timesteps_type(timesteps)  # also where a method ignores them (CSM)


__all__ = ["InputChecksMixin"]
