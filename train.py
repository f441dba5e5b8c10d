"""Train a newstagger model.

    python train.py --config configs/default.yaml [key=value ...] [--resume [CHECKPOINT]] [--skip-if-trained]
"""

import argparse
import logging

from newstagger.config import load_config
from newstagger.training import train


def main():
    parser = argparse.ArgumentParser(description="Train a newstagger model.")
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config values")
    parser.add_argument("--resume", nargs="?", const=True, default=False,
                        help="resume from the last checkpoint, or from the given checkpoint folder")
    parser.add_argument("--skip-if-trained", action="store_true",
                        help="do nothing when output_dir already holds a model of the same config and data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    train(load_config(args.config, args.overrides), resume=args.resume, skip_if_trained=args.skip_if_trained)


if __name__ == "__main__":
    main()
