"""DSANet's text branch: the official ``CLIP_Adapter`` (per-layer adapters mixed into the first
text blocks, a bias-free projection replacing CLIP's ``text_projection``) and the class-text
encoding through the frozen CLIP text tower (:func:`encode_class_text`)."""

from __future__ import annotations

from torch import Tensor, nn

from ..common import ClipTextTower


class _AdapterLayer(nn.Module):
    """Bias-free linear + LeakyReLU under the official names (``fc.0.weight``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c_in, c_out, bias=False), nn.LeakyReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class TextAdapter(nn.Module):
    """The official ``CLIP_Adapter`` minus its CLIP reference: ``text_adapter`` holds
    ``text_adapt_until`` per-layer adapters (text width -> text width) and the final projection
    (text width -> visual width), all Xavier-initialised."""

    def __init__(self, text_width: int, out_width: int, adapt_until: int, weight: float) -> None:
        super().__init__()
        self.adapt_until, self.weight = adapt_until, weight
        layers = [_AdapterLayer(text_width, text_width) for _ in range(adapt_until)]
        self.text_adapter = nn.ModuleList(layers + [_AdapterLayer(text_width, out_width)])
        for p in self.text_adapter.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def mix(self, i: int, x: Tensor) -> Tensor:
        """After text block ``i`` (< adapt_until): rescale the adapter output to the token norm and mix."""
        a = self.text_adapter[i](x)
        a = a * x.norm(dim=-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) + 1e-6)
        return self.weight * a + (1 - self.weight) * x

    def project(self, x: Tensor) -> Tensor:
        return self.text_adapter[-1](x)


def encode_class_text(
    tower: ClipTextTower,
    adapter: TextAdapter | None,
    tokens: Tensor,
    context: int,
) -> Tensor:
    """(N, E) text features of ``tokens`` (N, 77) through the tower, with the adapter when given.

    Only the first ``context`` positions are run: the causal mask makes the EOT row depend on
    earlier tokens only, so cutting the padding after the longest EOT is exact (and ~15x less
    work for one-word prompts). ``adapter=None`` is the plain CLIP ``encode_text`` (with
    ``text_projection``), the official ``adapt_text=False`` path.
    """
    tokens = tokens[:, :context]
    eot = tokens.argmax(dim=-1)
    x = tower.token_embedding(tokens) + tower.positional_embedding[:context].to(tower.token_embedding.weight.dtype)
    mask = tower.attn_mask[:context, :context].to(device=x.device, dtype=x.dtype)
    batch_first = getattr(tower.transformer, "batch_first", True)
    h = x if batch_first else x.transpose(0, 1)
    for i, blk in enumerate(tower.transformer.resblocks):
        h = blk(h, attn_mask=mask)
        if adapter is not None and i < adapter.adapt_until:
            h = adapter.mix(i, h)
    h = h if batch_first else h.transpose(0, 1)
    if adapter is None:
        return tower.finish(h, eot, project=True)
    return adapter.project(tower.finish(h, eot, project=False))
