"""The frozen CLIP text encoder (from open_clip) and VadCLIP's learnable text prompt.

:class:`ClipTextTower` takes the text parts of an open_clip ``CLIP`` model (shared, not
copied) under the OpenAI names (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.N.*``, ``ln_final``, ``text_projection``), so the CLIP weights inside the
official checkpoints (``clipmodel.*``) load into it one to one. It is frozen and kept in eval
mode. It exposes the pieces both methods need:

- ``tokenize(texts)`` (the open_clip tokenizer = OpenAI's BPE, context 77);
- ``embed_tokens(tokens)``; ``encode_embeddings(x, eot)`` = + positions -> causal transformer
  -> ``ln_final`` -> the EOT row -> ``@ text_projection`` (VadCLIP's ``encode_text(emb, tokens)``);
- ``run_block(i, x)`` / ``begin`` / ``finish`` for per-layer hooks (DSANet's text adapter);
  all accept a context shorter than 77 (positions after the last EOT can be dropped: the mask
  is causal).

:class:`LearnablePrompt` is VadCLIP's ``text_prompt_embeddings`` (77 x text width, std 0.01):
the class words are placed after ``prefix`` learnable tokens and the EOT token ``postfix``
tokens after the words; vectorised (no per-class loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import InputError


class ClipTextTower(nn.Module):
    """The frozen text half of an open_clip CLIP model (batch-first tensors everywhere)."""

    def __init__(self, clip_model: nn.Module, tokenizer: Any, info: Any = None) -> None:
        super().__init__()
        missing = [
            a
            for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
            if not hasattr(clip_model, a)
        ]
        if missing:
            raise InputError(f"the CLIP model has no standard text tower (missing {missing})")
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.context_length = int(self.positional_embedding.shape[0])
        self.register_buffer("attn_mask", self._causal_mask(self.context_length), persistent=False)
        self.tokenizer = tokenizer
        self.info = info
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @staticmethod
    def _causal_mask(n: int) -> Tensor:
        return torch.full((n, n), float("-inf")).triu_(1)

    def train(self, mode: bool = True) -> ClipTextTower:  # frozen: always eval
        return super().train(False)

    @property
    def width(self) -> int:
        return int(self.token_embedding.embedding_dim)

    @property
    def output_dim(self) -> int:
        proj = self.text_projection
        if proj is None:
            return self.width
        return int(proj.weight.shape[0] if isinstance(proj, nn.Linear) else proj.shape[1])

    @property
    def num_layers(self) -> int:
        return len(self.transformer.resblocks)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        tokens = self.tokenizer(list(texts))
        return tokens.to(self.token_embedding.weight.device)

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        return self.token_embedding(tokens)

    def begin(self, x: Tensor) -> Tensor:
        """Token embeddings (N, n, w) + the first n positional embeddings (n <= 77)."""
        return x + self.positional_embedding[: x.shape[1]].to(x.dtype)

    def run_block(self, i: int, x: Tensor) -> Tensor:
        """Residual block ``i`` with the causal mask, on batch-first (N, n, w)."""
        blk = self.transformer.resblocks[i]
        n = x.shape[1]
        mask = self.attn_mask[:n, :n].to(device=x.device, dtype=x.dtype)
        if getattr(self.transformer, "batch_first", True):
            return blk(x, attn_mask=mask)
        return blk(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)

    def finish(self, x: Tensor, eot: Tensor, project: bool = True) -> Tensor:
        """``ln_final``, the row at ``eot`` (N,), then ``text_projection`` when ``project``."""
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        if project and self.text_projection is not None:
            proj = self.text_projection
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x

    def encode_embeddings(self, x: Tensor, eot: Tensor, project: bool = True, context: int | None = None) -> Tensor:
        """Text features (N, E) from token-level input embeddings (N, 77, w) and EOT positions (N,).

        ``context``: run only the first ``context`` positions (> every EOT position). The mask is
        causal, so the EOT rows do not depend on later positions: the result is the same (up to
        float rounding) at a fraction of the cost.
        """
        if context is not None:
            x = x[:, :context]
        h = self.begin(x)
        for i in range(self.num_layers):
            h = self.run_block(i, h)
        return self.finish(h, eot, project)

    def encode_tokens(self, tokens: Tensor, project: bool = True) -> Tensor:
        """Plain CLIP text features (N, E) of token ids (N, 77) (EOT = the highest token id)."""
        return self.encode_embeddings(self.embed_tokens(tokens), tokens.argmax(dim=-1), project)

    def encode_texts(self, texts: Sequence[str], project: bool = True) -> Tensor:
        return self.encode_tokens(self.tokenize(texts), project)


class LearnablePrompt(nn.Module):
    """VadCLIP's learnable prompt context: ``text_prompt_embeddings`` (context, width)."""

    def __init__(self, context_length: int, width: int, prefix: int, postfix: int) -> None:
        super().__init__()
        self.prefix, self.postfix = prefix, postfix
        self.text_prompt_embeddings = nn.Embedding(context_length, width)
        nn.init.normal_(self.text_prompt_embeddings.weight, std=0.01)

    def layout(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """For each position, the word position it takes (or -1 = learnable); and the new EOT positions."""
        n, ctx = tokens.shape
        eot = tokens.argmax(dim=-1)  # (N,)
        new_eot = self.prefix + eot + self.postfix
        if int(new_eot.max()) >= ctx:
            raise InputError(
                f"a class prompt is too long for the learnable prompt: {int(eot.max()) - 1} tokens + "
                f"prefix {self.prefix} + postfix {self.postfix} exceed the context of {ctx}"
            )
        pos = torch.arange(ctx, device=tokens.device).unsqueeze(0).expand(n, -1)
        src = torch.full_like(pos, -1)
        src[:, 0] = 0  # start-of-text token
        words = (pos >= self.prefix + 1) & (pos < (self.prefix + eot).unsqueeze(1))
        src = torch.where(words, pos - self.prefix, src)
        src = torch.where(pos == new_eot.unsqueeze(1), eot.unsqueeze(1).expand(-1, ctx), src)
        return src, new_eot

    def forward(
        self, word_embeddings: Tensor, tokens: Tensor, layout: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Prompted input embeddings (N, ctx, w) and their EOT positions (N,).

        ``layout``: a precomputed :meth:`layout` of ``tokens`` (fixed class prompts: compute it
        once, no host synchronisation per step).
        """
        src, new_eot = layout if layout is not None else self.layout(tokens)
        n, ctx = tokens.shape
        ctx_emb = self.text_prompt_embeddings.weight.unsqueeze(0).expand(n, -1, -1)
        picked = word_embeddings.gather(1, src.clamp(min=0).unsqueeze(-1).expand(-1, -1, word_embeddings.shape[-1]))
        return torch.where((src >= 0).unsqueeze(-1), picked, ctx_emb), new_eot
