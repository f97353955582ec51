"""``python -m neural3d ...`` (the form torchrun starts: ``torchrun --nproc-per-node N -m neural3d train ...``).

``record`` lets torchrun report the exception of the rank that failed first (the root cause) when a group ends.
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import record

from neural3d.cli.main import main

if __name__ == "__main__":
    sys.exit(record(main)())
