"""qsmbids: multi-echo GRE to Quantitative Susceptibility Maps, as a BIDS App."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qsmbids")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
