"""Deprecated: the int8 encoder is part of the ONNX export now (newstagger.onnx_export.export_onnx).
Kept only so that ``python -m newstagger.quantize --model DIR`` and older callers still work."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from .onnx_export import export_onnx

    parser = argparse.ArgumentParser(description="Write the ONNX export (int8 encoder, fp32 heads) of a saved model.")
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    print(export_onnx(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
