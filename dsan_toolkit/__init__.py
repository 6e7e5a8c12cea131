"""dsan_toolkit: weakly-supervised video anomaly detection on CLIP features."""

import os
from importlib.metadata import PackageNotFoundError, version

# Intel MKL picks its kernels by the memory alignment of each call unless told otherwise, so a
# resumed training (its tensors allocated anew) could differ in the last bits from an
# uninterrupted one. STRICT keeps the fastest instruction set of the CPU and makes the results
# independent of alignment and threads. It must be set before MKL's first call: set it (or
# import dsan_toolkit) before using torch; a value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

try:
    __version__ = version("dsan_toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
