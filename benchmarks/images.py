"""The images benchmark is a suite of ``discodiff bench``: ``configs/bench/images.yaml``.

    python benchmarks/images.py [--budget SECONDS] [--methods a,b] [--out DIR] [--set key=value]

is the same as ``discodiff bench images ...`` (full run: ``--budget 600``); see
:mod:`discodiff.bench`.
"""

import sys

from discodiff.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "images", *sys.argv[1:]]))
