"""Dataset manifests: typed records of videos, labels, segments and classes."""

from .io import read_manifest, write_manifest
from .schema import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord
from .validate import validate_manifest

__all__ = [
    "ClassInfo",
    "DatasetInfo",
    "Manifest",
    "Segment",
    "VideoRecord",
    "read_manifest",
    "write_manifest",
    "validate_manifest",
]
