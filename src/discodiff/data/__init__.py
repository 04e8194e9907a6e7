"""Data sets and their training streams."""

from . import images, toy2d
from .base import DATASETS, DataInfo, DataSource

__all__ = ["DATASETS", "DataInfo", "DataSource", "images", "toy2d"]
