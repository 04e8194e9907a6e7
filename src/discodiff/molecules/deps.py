"""The ``molecules`` extra: RDKit and fcd-torch, imported on demand with a one-line error."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ConfigError, DataError

EXTRA_HINT = "pip install -e '.[molecules]' (or pip install 'discodiff[molecules]')"
"""How to install what molecule data sets and metrics need."""

PACKAGES = {"rdkit": "RDKit", "fcd_torch": "fcd-torch"}
"""Module name -> distribution name of every package the extra provides."""


class MissingExtraError(ConfigError):
    """A molecule component was asked for without the ``molecules`` extra installed."""


def require(module: str = "rdkit") -> ModuleType:
    """Import ``module`` (``rdkit`` or ``fcd_torch``) or raise :class:`MissingExtraError`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"molecule data sets and metrics need {PACKAGES.get(module, module)}, which is not "
            f"installed; install the molecules extra: {EXTRA_HINT}"
        ) from None


__all__ = ["EXTRA_HINT", "ConfigError", "DataError", "MissingExtraError", "require"]
