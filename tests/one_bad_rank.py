"""`rolemodels run` under torchrun where rank 1 alone reads a bad labels file (tests/test_distributed.py).

    torchrun --nproc-per-node 2 tests/one_bad_rank.py BAD_LABELS_FILE run --config tiny ...

Every rank runs the command line after BAD_LABELS_FILE; rank 1 also gets
noise.labels_file=BAD_LABELS_FILE, as if its machine's copy of a file were damaged.
"""
import os
import sys

from rolemodels.cli import main

bad, argv = sys.argv[1], sys.argv[2:]
if os.environ.get("RANK") == "1":
    argv.append(f"noise.labels_file={bad}")
sys.exit(main(argv))
