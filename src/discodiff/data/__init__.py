"""Data sets and their training streams."""

from . import text, toy2d
from .base import DATASETS, DataInfo, DataSource

__all__ = ["DATASETS", "DataInfo", "DataSource", "text", "toy2d"]
