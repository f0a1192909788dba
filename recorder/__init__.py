"""Record Binance USDⓈ-M futures ``<symbol>@miniTicker`` streams into a Parquet dataset."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recorder")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
