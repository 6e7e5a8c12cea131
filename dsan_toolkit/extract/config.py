"""Extraction configuration: what changes the numbers (hashed) vs how the run is done."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import optional_field, register_config
from ..decode.backends import DEFAULT_DECODER
from ..decode.reader import BLOCK_BYTES
from ..errors import InputError
from ..utils.torchrun import TorchrunEnv, torchrun_env

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# intra-op threads of a model run on a CPU, in every layout: the workers that decode and encode
# run one each, and a call's bits can depend on the thread count (see extract.encoder)
CPU_MODEL_THREADS = 1


@register_config
@dataclass(frozen=True)
class ExtractConfig:
    """Every choice that shapes the stored features; hashed into the store.

    ``resize``: shorter side before cropping; ``None`` = the model's image size for
    ``crops="center"`` (CLIP's own geometry) and ``image_size * 256 / 224`` for ten crops (the
    usual ten-crop convention, so that the corners differ on landscape video).
    ``precision``: ``auto`` is resolved before hashing (fp16 on CUDA, fp32 elsewhere).
    ``decoder``: the decoder backend (:mod:`dsan_toolkit.decode.backends`); ``auto`` is resolved
    before hashing (decord when installed). Left out of the record and the hash while it is
    ``decord``, so decord stores keep the identity they had; another backend is hashed, since
    its FFmpeg build may give other pixels.
    """

    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    weights: str | None = None  # local checkpoint path; its sha256 is what identifies it
    snippet: str = "middle"
    snippet_len: int = 16
    crops: str = "10"
    resize: int | None = None
    interpolation: str = "bicubic"
    precision: str = "auto"
    normalize_features: bool = False
    dtype: str = "float32"
    chunk_t: int = 256
    seed: int = 0
    decoder: str = optional_field(DEFAULT_DECODER)

    def check(self) -> None:
        from ..decode.backends import AUTO, get_decoder
        from ..decode.crops import parse_crops
        from ..decode.snippets import get_snippet_rule

        get_snippet_rule(self.snippet)
        parse_crops(self.crops)
        if self.decoder != AUTO:
            get_decoder(self.decoder)
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise InputError(f"interpolation must be bicubic or bilinear, not {self.interpolation!r}")
        if self.snippet_len < 1:
            raise InputError("snippet_len must be >= 1")
        if self.dtype not in ("float32", "float16"):
            raise InputError(f"--dtype must be float32 or float16, not {self.dtype!r}")
        if self.chunk_t < 1:
            raise InputError("chunk_t must be >= 1")


def tiny_extract_config() -> ExtractConfig:
    """The extraction of ``dsan demo`` and the tests: the tiny random-init CLIP
    (:data:`~dsan_toolkit.clip.TINY_MODEL`, nothing downloaded), centre crop, middle frame."""
    from ..clip import TINY_MODEL

    return ExtractConfig(model=TINY_MODEL, pretrained=None, crops="center", snippet="middle", seed=0)


@dataclass(frozen=True)
class RunOptions:
    """How an extraction runs. On one machine the stored bytes depend on ``device``,
    ``batch_size`` (the model-call size) and ``cpu_threads`` only, never on the workers, blocks,
    shards or timing (see :mod:`dsan_toolkit.extract.encoder`); across those three, values differ
    by float rounding only."""

    device: str = "cpu"
    batch_size: int = 256  # images (frames x crops) per model call
    block_frames: int | None = None  # at most this many decoded frames per work item (None: by block_mb)
    block_mb: int = BLOCK_BYTES // 2**20  # decoded uint8 frames per work item, MiB (bounds memory; see decode.reader)
    workers: int | None = None  # worker processes (0: all in the main process; None: auto_workers)
    encode_in_workers: bool | None = None  # workers also run the model (None: on a CPU device, see pipeline)
    prefetch: int = 2  # work items queued per decode worker
    shard: tuple[int, int] = (0, 1)  # (K, N): this process writes videos i with i % N == K
    limit: int | None = None  # only the first n pending videos (smoke tests)
    decode_timeout: float = 600.0  # s; a worker stuck longer in one decode call is stopped (0: never)
    # torch threads of a model run on a CPU in the main process (--workers 0, decode-only
    # workers): CPU_MODEL_THREADS keeps the stored bytes independent of --workers; None keeps
    # torch's setting (all cores: faster for one video, last bits may differ; `dsan score`)
    cpu_threads: int | None = CPU_MODEL_THREADS

    def check(self) -> None:
        for name in ("batch_size", "block_mb", "block_frames", "workers"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "workers" else 1):
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be {'>= 0' if name == 'workers' else '>= 1'}, not {value}")
        if not self.decode_timeout >= 0:
            raise InputError(f"--decode-timeout must be >= 0 seconds (0: no limit), not {self.decode_timeout}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise InputError(f"cpu_threads must be >= 1 (or None: torch's setting), not {self.cpu_threads}")


def auto_workers(device: str) -> int:
    """Default worker processes: on a CPU one per usable core (each decodes and encodes its
    videos), on an accelerator as many decoders as cores, at most 8."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores if str(device).split(":")[0] == "cpu" else min(8, cores)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N)."""
    if value is None:
        return None
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like K/N (e.g. 0/4), not {value!r}") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard {value}: need 0 <= K < N")
    return k, n


def torchrun_options(opts: RunOptions, env: TorchrunEnv | None = None) -> RunOptions:
    """``opts`` for this process: under torchrun (``env``, default :func:`torchrun_env`) its shard
    is (RANK, WORLD_SIZE) and ``cuda`` its local GPU; a single process keeps ``opts``. A shard
    of its own (``--shard``) cannot be combined with torchrun."""
    env = torchrun_env() if env is None else env
    if not env.enabled:
        return opts
    if opts.shard != (0, 1):
        raise InputError("--shard cannot be combined with torchrun (the rank and world size come from its env)")
    return replace(opts, shard=(env.rank, env.world_size), device=env.device(opts.device))
