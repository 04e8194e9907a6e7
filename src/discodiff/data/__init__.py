"""Data sets and their training streams."""

from . import arrays, images, text, toy2d, toy2d_discrete
from .base import DATASETS, DataInfo, DataSource

__all__ = ["DATASETS", "DataInfo", "DataSource", "arrays", "images", "text", "toy2d", "toy2d_discrete"]
