"""CLIP backbones from open_clip, for image features (extraction) and text features (models).

- ``create_clip("ViT-B-16", pretrained="openai")``: the real backbone, through open_clip's
  cache (read straight from the file when it is there: no network at all) or its normal
  download. Without the weights and without the network (``HF_HUB_OFFLINE=1``, or the download
  host not answering a short connection probe) it fails in seconds with the hint to pass a local
  file, instead of spending a minute in Hugging Face hub retries (:func:`locate_pretrained`).
- ``create_clip("ViT-B-16", weights=FILE)``: a local checkpoint, safetensors or a torch file
  loaded with ``weights_only=True`` (never unpickled).
- ``create_clip(TINY_MODEL)``: ``dsan-tiny``, a tiny open_clip architecture (2-layer ViT-B/32
  style vision tower of width 64, 2-layer text tower, 512-d embeddings like ViT-B/16) with
  random weights, for tests and the demo. :class:`BackboneInfo` says loudly when weights are
  random, and every artifact records it.

Activation: OpenAI's CLIP uses QuickGELU, open_clip's plain ``ViT-B-16`` config GELU, and
open_clip only *warns* when a pretrained tag and the config disagree. :func:`needs_quick_gelu`
reads the tag's own flag and the model is built with the matching activation, so
``ViT-B-16`` + ``openai`` gives the real OpenAI features. A local OpenAI weight file should be
used with ``ViT-B-16-quickgelu`` (a file carries no activation flag).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import sha256_file
from .errors import InputError

TINY_MODEL = "dsan-tiny"
_CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"
_registered = False


class _NoRandomInitWarning(logging.Filter):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" for every random
    build; we record and print that ourselves (BackboneInfo.random_weights), once, in context."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    root, flt = logging.getLogger(), _NoRandomInitWarning()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _register_configs() -> None:
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone is: enough to record in a store or checkpoint and to rebuild it."""

    model: str
    pretrained: str | None
    weights_file: str | None
    weights_sha256: str | None
    random_weights: bool
    image_size: int
    embed_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @property
    def weights_tag(self) -> str:
        if self.random_weights:
            return f"random-init(seed={self.seed})"
        return self.pretrained or f"file:{self.weights_sha256}"


@dataclass
class ClipBundle:
    model: torch.nn.Module
    tokenizer: Any
    info: BackboneInfo


def list_backbones() -> list[str]:
    _register_configs()
    import open_clip

    return open_clip.list_models()


def needs_quick_gelu(model_name: str, pretrained: str | None) -> bool:
    """Whether ``pretrained`` weights of ``model_name`` were trained with QuickGELU."""
    if not pretrained:
        return False
    _register_configs()
    import open_clip

    return bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False))


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weight file without unpickling: safetensors, or torch with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a loadable weight file"
        raise InputError(f"cannot read weights from {path} with weights_only=True: {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path} does not hold a state dict")
    return obj


OFFLINE_VALUES = ("1", "ON", "YES", "TRUE")  # huggingface_hub's spelling of a true flag
PROBE_TIMEOUT_S = 3.0  # a connection to the download host (or proxy) that takes longer counts as offline
WEIGHTS_HINT = "pass a local weight file instead (--weights FILE; --clip-weights FILE for train and eval)"


@dataclass(frozen=True)
class PretrainedSource:
    """Where open_clip gets a pretrained tag's weights: ``kind`` ``hf`` (a Hugging Face hub repo,
    ``where`` = repo id), ``url`` or ``file``; ``cached``: the local file when already there."""

    kind: str
    where: str
    cached: str | None
    host_url: str = ""  # what a download connects to


def locate_pretrained(model_name: str, pretrained: str, *, cache_dir: str | None = None) -> PretrainedSource:
    """The source open_clip would download ``pretrained`` weights of ``model_name`` from, and the
    cached file if it is already there; looks at the caches only (no network)."""
    _register_configs()
    import os

    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise InputError(f"{model_name} has no pretrained weights {pretrained!r} in open_clip (tags: {tags})")
    if cfg.get("file"):
        return PretrainedSource("file", cfg["file"], cfg["file"] if os.path.isfile(cfg["file"]) else None)
    hub = cfg.get("hf_hub", "")
    if hub and open_clip.pretrained.has_hf_hub():  # open_clip's own preference
        from huggingface_hub import constants, try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        safe = HF_SAFE_WEIGHTS_NAME if filename == HF_WEIGHTS_NAME else os.path.splitext(filename)[0] + ".safetensors"
        for name in (safe, filename):  # open_clip tries the safetensors file first
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return PretrainedSource("hf", repo, found, constants.ENDPOINT)
        return PretrainedSource("hf", repo, None, constants.ENDPOINT)
    url = cfg.get("url", "")
    target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    return PretrainedSource("url", url, target if os.path.isfile(target) else None, url)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, as huggingface_hub reads it."""
    import os

    return any(os.environ.get(k, "").upper() in OFFLINE_VALUES for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or to the proxy the environment sets for it)
    opens within ``timeout`` seconds, name lookup included."""
    import socket
    import threading
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return False
    ok: list[bool] = []

    def connect() -> None:  # in a thread: a hanging name lookup has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, name="dsan-weights-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(ok)


def _require_download(model_name: str, pretrained: str, source: PretrainedSource) -> None:
    """:class:`InputError` now when weights that are not cached cannot be downloaded."""
    what = f"the {model_name} {pretrained!r} weights are not in the local cache"
    origin = f"Hugging Face hub repo {source.where}" if source.kind == "hf" else source.where
    if hub_offline():
        raise InputError(f"{what} and HF_HUB_OFFLINE is set (they come from {origin}); {WEIGHTS_HINT}")
    if not reachable(source.host_url):
        raise InputError(
            f"{what} (they come from {origin}) and {source.host_url} does not answer (offline?); {WEIGHTS_HINT}"
        )


def create_clip(
    model_name: str = "ViT-B-16",
    pretrained: str | None = "openai",
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> ClipBundle:
    """Build an open_clip model in eval mode with frozen parameters.

    ``weights`` (a local file) wins over ``pretrained``; without a file the tiny model is random.
    """
    _register_configs()
    import open_clip

    if model_name not in open_clip.list_models():
        raise InputError(f"unknown open_clip model {model_name!r} (see `open_clip.list_models()`)")
    # A local weight file always wins; the tiny architecture has no published weights.
    random = weights is None and (model_name == TINY_MODEL or pretrained is None)
    if random:
        # A private RNG state: the random init depends on `seed` alone and leaves the caller's
        # global torch RNG (a training run's seed) untouched.
        with torch.random.fork_rng(devices=[]), _quiet_random_init():
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    elif weights is not None:
        with _quiet_random_init():  # the file's weights replace the init just below
            model = open_clip.create_model(model_name, pretrained=None, device="cpu")
        state = load_state_dict_file(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{weights} does not fit {model_name}: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
    else:
        assert pretrained is not None
        source = locate_pretrained(model_name, pretrained)
        extra: dict[str, Any] = {}
        target = pretrained
        if source.cached is None:
            _require_download(model_name, pretrained, source)
        elif source.kind == "hf":
            # the cached hub file itself: open_clip would first ask the hub for a newer revision
            # (a minute of retries offline); the tag's preprocessing is what the tag would set
            from open_clip.transform import merge_preprocess_dict

            target = source.cached
            extra["force_preprocess_cfg"] = merge_preprocess_dict(
                {}, open_clip.get_pretrained_cfg(model_name, pretrained)
            )
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=target,
                device="cpu",
                force_quick_gelu=needs_quick_gelu(model_name, pretrained),
                **extra,
            )
        except RuntimeError as exc:
            raise InputError(f"cannot load {model_name} pretrained={pretrained!r}: {exc}; {WEIGHTS_HINT}") from None
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = open_clip.get_model_config(model_name) or {}
    image_size = cfg.get("vision_cfg", {}).get("image_size", 224)
    image_size = image_size[0] if isinstance(image_size, (list, tuple)) else int(image_size)
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    info = BackboneInfo(
        model=model_name,
        pretrained=None if (random or weights is not None) else pretrained,
        weights_file=None if weights is None else str(weights),
        weights_sha256=None if weights is None else sha256_file(weights),
        random_weights=random,
        image_size=image_size,
        embed_dim=int(cfg.get("embed_dim", 512)),
        mean=tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        seed=seed if random else None,
    )
    return ClipBundle(model=model, tokenizer=open_clip.get_tokenizer(model_name), info=info)
