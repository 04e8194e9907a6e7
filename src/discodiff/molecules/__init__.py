"""Molecules as graphs: RDKit conversion, QM9 / MOSES loaders, chemistry metrics, properties.

Everything here needs the ``molecules`` extra (RDKit and fcd-torch):
``pip install -e '.[molecules]'``. Importing this package does not import RDKit; the molecule
data sets call :func:`~discodiff.molecules.deps.require` before importing the modules that use
it, so a missing extra gives one line naming it.
"""

from . import configs
from .deps import MissingExtraError, require

__all__ = ["MissingExtraError", "configs", "require"]
