"""Data sets and their training streams."""

from . import arrays, text, toy2d
from .base import DATASETS, DataInfo, DataSource

__all__ = ["DATASETS", "DataInfo", "DataSource", "arrays", "text", "toy2d"]
