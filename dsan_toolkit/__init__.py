"""dsan_toolkit: weakly-supervised video anomaly detection on CLIP features."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dsan_toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
