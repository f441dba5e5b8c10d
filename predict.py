"""Tag articles with a trained newstagger model.

    python predict.py --model runs/default corpus.jsonl more.csv --text-column body --output tags.jsonl
    python predict.py --model runs/default data/examples/ --pretty
    cat articles.jsonl | python predict.py --model runs/default -

One JSONL record per input record, in input order; a record that cannot be tagged becomes
{"id", "error"} and the run goes on. Exit status: 0 all tagged, 1 some records failed, 2 usage error.
The engine is newstagger.batch (tag_files); see its docstring for formats and --resume.
"""

import argparse
import sys

from newstagger.batch import (DEFAULT_CHUNK_SIZE, DEFAULT_MAX_PARAGRAPH_CHARS, DEFAULT_MAX_PARAGRAPHS, InputError,
                              tag_files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Tag news articles with topics and flag boilerplate paragraphs.",
        epilog="Exit status: 0 all records tagged, 1 some records failed (see their 'error'), 2 usage error.")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process (default); ray: Ray Data actors, output is a folder of shards "
                             "(see python predict.py --engine ray --help)")
    parser.add_argument("--model", required=True, help="a trained model folder (e.g. runs/default)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help=".jsonl, .csv, .parquet, .txt (one article), a folder of .txt files, or - for JSONL on stdin")
    parser.add_argument("--output", "-o", help="output file (default: stdout)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep the records --output holds, skip as many inputs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--pretty", action="store_true", help="human-readable output instead of JSONL")
    parser.add_argument("--text-column", help="CSV/Parquet/JSONL field holding the text "
                                              "(default: 'paragraphs' if present, else 'text')")
    parser.add_argument("--id-column", help="field holding the record id (default: 'id' if present; "
                                            "otherwise ids are <file name>:<line or row>)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help="articles tagged together; their paragraphs share encoder batches (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="encoder micro-batch in paragraph chunks "
                                                                   "(default %(default)s)")
    parser.add_argument("--backend", choices=("torch", "int8"), default="torch")
    parser.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--max-paragraphs", type=int, default=DEFAULT_MAX_PARAGRAPHS,
                        help="an article with more paragraphs becomes an error record (default %(default)s)")
    parser.add_argument("--max-paragraph-chars", type=int, default=DEFAULT_MAX_PARAGRAPH_CHARS,
                        help="an article with a longer paragraph becomes an error record (default %(default)s)")
    parser.add_argument("--site-repeat", action="store_true",
                        help="two passes: push paragraphs that recur verbatim across articles of one source "
                             "toward boilerplate")
    parser.add_argument("--site-repeat-min", type=int, default=3,
                        help="articles of a source a paragraph must occur in for --site-repeat (default %(default)s)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument("--engine", choices=("local", "ray"), default="local")
    known, rest = engine.parse_known_args(argv)
    if known.engine == "ray":  # Ray Data over a cluster or a local Ray instance: see newstagger/ray_tagging.py
        from newstagger.ray_tagging import main as ray_main

        return ray_main(rest)
    args = build_parser().parse_args(rest)
    try:
        counts = tag_files(
            args.model, args.inputs, args.output, resume=args.resume, overwrite=args.overwrite, pretty=args.pretty,
            text_column=args.text_column, id_column=args.id_column, chunk_size=args.chunk_size,
            backend=args.backend, batch_size=args.batch_size, num_threads=args.num_threads,
            max_paragraphs=args.max_paragraphs, max_paragraph_chars=args.max_paragraph_chars,
            site_repeat=args.site_repeat, site_repeat_min=args.site_repeat_min,
            progress=False if args.quiet else None)
    except InputError as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 2
    print(counts.summary(), file=sys.stderr)
    return counts.exit_status


if __name__ == "__main__":
    sys.exit(main())
