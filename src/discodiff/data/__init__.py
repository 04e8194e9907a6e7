"""Data sets and their training streams."""

from . import arrays, toy2d
from .base import DATASETS, DataInfo, DataSource

__all__ = ["DATASETS", "DataInfo", "DataSource", "arrays", "toy2d"]
