"""Train a newstagger model: a shim over ``newstagger train`` (newstagger/cli.py).

    python train.py --config configs/default.yaml [key=value | --key value ...] [--resume [CHECKPOINT]] \\
        [--skip-if-trained]

Works under torchrun and accelerate launch too (one process per device).
"""

import sys

from newstagger.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog="train.py"))
