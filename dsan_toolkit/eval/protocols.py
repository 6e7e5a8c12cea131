"""Named detection-mAP protocols: a registry from a name to a :class:`DetectionMapConfig`.

* ``official``: the published protocol (``DetectionMapConfig()``: the dataset's official
  normal-class handling, the whole mAP 0 when a class has no proposal), bit-identical to the
  official code;
* ``corrected``: the anomaly classes only (``normal_class="exclude"``), and a class without
  proposals scores AP 0 alone (``empty_class="zero-ap"``).
"""

from __future__ import annotations

from ..errors import InputError
from .detection_map import DetectionMapConfig

OFFICIAL = "official"
CORRECTED = "corrected"
CUSTOM = "custom"  # the label of a configuration that is none of the named protocols

MAP_PROTOCOLS: dict[str, DetectionMapConfig] = {
    OFFICIAL: DetectionMapConfig(),
    CORRECTED: DetectionMapConfig(normal_class="exclude", empty_class="zero-ap"),
}


def list_map_protocols() -> tuple[str, ...]:
    """The names of the detection-mAP protocols (CLI choices)."""
    return tuple(MAP_PROTOCOLS)


def detection_config_for(protocol: str) -> DetectionMapConfig:
    """The configuration of a named protocol; an unknown name is an :class:`InputError`."""
    try:
        return MAP_PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise InputError(f"unknown mAP protocol {protocol!r}; choose one of {', '.join(MAP_PROTOCOLS)}") from None


def protocol_name(config: DetectionMapConfig) -> str:
    """The name of the protocol a configuration is, or ``"custom"``."""
    for name, cfg in MAP_PROTOCOLS.items():
        if cfg == config:
            return name
    return CUSTOM
