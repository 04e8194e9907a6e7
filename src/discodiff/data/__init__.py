"""Data sets and their training streams."""

from . import toy2d
from .base import DATASETS, DataInfo, DataSource

__all__ = ["DATASETS", "DataInfo", "DataSource", "toy2d"]
