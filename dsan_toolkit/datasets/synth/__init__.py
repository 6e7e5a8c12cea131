"""A small synthetic WS-VAD dataset of real H.264 videos, in the manifest schema.

``make_synthetic_dataset(out_dir, SynthConfig(...))`` writes::

    out_dir/videos/<split>/<id>.mp4   H.264, yuv420p, constant frame rate
    out_dir/manifest.jsonl            dataset "synth": class table, num_frames/fps per video,
                                      [start, end) segments for the anomalous *test* videos
    out_dir/synth.json                the generation config, its sha256, every event interval
                                      (train ones too: the hidden truth of the weak labels)

Every video shows a textured background that pans slowly, with a few dim blobs drifting
over it (normal motion). An anomalous video overlays, during one or two intervals covering
roughly 20-50% of its frames, a large, saturated, class-specific event drawn by a renderer
from :data:`EVENTS` (``fire``: a pulsing red/orange disc; ``fight``: two bright yellow/cyan
squares clashing fast; ``crash``: a bright streak sweeping across). The events are meant to be
learnable from pixels even by a random-init CLIP on 224x224 resized frames.

Pixels depend only on the config (one ``numpy.random.Generator`` per video, seeded from
``(seed, split, index)``) and x264 runs single-threaded, so a seed gives identical frames
(and in practice identical bytes).

Modules: :mod:`.events` (the class renderers), :mod:`.plan` (config and plan), :mod:`.render`
(frames), :mod:`.encode` (H.264 files), :mod:`.dataset` (manifest, sidecar, the driver).
"""

from .dataset import (
    MANIFEST_NAME,
    NORMAL_CODE,
    SIDECAR_NAME,
    build_manifest,
    class_table,
    is_complete,
    make_synthetic_dataset,
    read_sidecar,
)
from .encode import fps_fraction, write_video
from .events import EVENTS, EventSpec, list_events, register_event
from .plan import PlannedVideo, SynthConfig, plan_dataset
from .render import render_video

__all__ = [
    "EVENTS",
    "MANIFEST_NAME",
    "NORMAL_CODE",
    "SIDECAR_NAME",
    "EventSpec",
    "PlannedVideo",
    "SynthConfig",
    "build_manifest",
    "class_table",
    "fps_fraction",
    "is_complete",
    "list_events",
    "make_synthetic_dataset",
    "plan_dataset",
    "read_sidecar",
    "register_event",
    "render_video",
    "write_video",
]
