"""The ``newstagger`` command: parses the command line and dispatches; the work is done elsewhere.

    newstagger train    --config configs/default.yaml [key=value | --key value ...]   -> newstagger.training
    newstagger tag      --model runs/default INPUT... [-o OUT] [--engine local|ray]    -> newstagger.batch
    newstagger evaluate --model runs/default FILE [--json]                            -> newstagger.evaluate
    newstagger check    FILE... [--labels a,b]                                        -> newstagger.data
    newstagger export   --model runs/default [--onnx] [--push-to-hub OWNER/NAME]      -> onnx_export, hub
    newstagger serve    --model runs/default [--port 8000]                            -> newstagger.serve

Each subcommand builds one options object (TagOptions, EvaluateOptions, ServeOptions, a TrainingConfig) and
hands it on. Exit codes live here, and only here (EXIT_*); train.py and predict.py are thin shims over main().
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

EXIT_OK = 0  # every record tagged (check: every record valid)
EXIT_RECORD_ERRORS = 1  # the run finished, but some records are error records (check: some records are bad)
EXIT_USAGE = 2  # usage or input error: bad options, unreadable input, unusable output or model, bad config
EXIT_CRASH = 3  # an unexpected error (a bug): set NEWSTAGGER_DEBUG=1 to see the traceback
EXIT_PIPE = 141  # standard output closed by its reader (| head): quietly, as a Unix tool killed by SIGPIPE
EXIT_TERMINATED = 143  # tag stopped by SIGTERM (128 + 15, as the shell reports a process it killed)

_EXIT_DONE = {"tag": ("all records tagged",
                      'some records failed: each is an error record "file:line: field: problem"'),
              "check": ("every record valid", 'some records are bad: each is listed as "file:line: field: problem" '
                                               "(--strict: the first one, with status 2)"),
              "train": ("the model was saved (--skip-if-trained: it was already there)",), "evaluate": ("the report was written",),
              "export": ("the export or push was made",), "serve": ("the server was stopped",)}


def exit_codes_help(command: str | None = None) -> str:
    """The exit-status table of ``command`` (None: every command's)."""
    done = _EXIT_DONE.get(command, ("the command did its work (tag: every record tagged; check: every "
                                    "record valid)", "tag and check: some records failed or are bad, each "
                                    'named "file:line: field: problem"'))
    lines = ["exit status:", f"  0  {done[0]}"] + ([f"  1  {done[1]}"] if len(done) > 1 else [])
    return "\n".join(lines + [
        "  2  usage or input error: bad options or config, an input, output or model that cannot be used",
        "  3  crash: an unexpected error (NEWSTAGGER_DEBUG=1 shows the traceback)",
        "  130  interrupted (Ctrl-C); 141  standard output closed by its reader (| head); 143  tag stopped by "
        "SIGTERM"])


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and of the exit-status table."""


def _whole(low: int, high: int | None = None):
    """An argparse type: a whole number in [low, high] (argparse refuses others with exit status 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], not {value}" if high is not None
                                             else f"must be at least {low}, not {value}")
        return value
    return parse


def _seconds(low: float, strictly: bool):
    """An argparse type: a finite number over ``low`` (``strictly``) or at least ``low``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(value) or value < low or (strictly and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number {'over' if strictly else 'of at least'} "
                                             f"{low:g}, not {text}")
        return value
    return parse


def _columns_arguments(parser: argparse.ArgumentParser, labels: bool) -> None:
    parser.add_argument("--text-column", help="field holding the text or the list of paragraphs "
                                              "(default: 'paragraphs' if present, else 'text')")
    parser.add_argument("--id-column", help="field holding the record id (default: 'id'; a null or empty id "
                                            "gives <file name>:<line or row>; a record without the named "
                                            "field is an error record)")
    if labels:
        parser.add_argument("--label-column", help="field holding the topic labels: a list, a JSON list, "
                                                   "'a, b' / 'a; b' / 'a | b', or one label (default: 'topics')")


def _limits_arguments(parser: argparse.ArgumentParser, read_from_files: bool = True) -> None:
    """The article limits; ``read_from_files`` adds --max-line-bytes, the bound on one record of a file (the
    service bounds a request's body with --max-body-bytes instead)."""
    from .inputs import Limits

    defaults = Limits()
    group = parser.add_argument_group("limits (a record over a limit becomes an error record)" if read_from_files
                                      else "limits (an article over a limit gets 422)")
    group.add_argument("--max-paragraphs", type=int, default=defaults.max_paragraphs, help="(default %(default)s)")
    group.add_argument("--max-paragraph-chars", type=int, default=defaults.max_paragraph_chars,
                       help="(default %(default)s)")
    group.add_argument("--max-title-chars", type=int, default=defaults.max_title_chars, help="(default %(default)s)")
    if read_from_files:
        group.add_argument("--max-line-bytes", type=int, default=defaults.max_line_bytes,
                           help="bytes of one record (JSONL line, CSV row, .txt file), checked before it is parsed "
                                "(default %(default)s)")


def _runtime_arguments(parser: argparse.ArgumentParser, backend: str = "torch") -> None:
    parser.add_argument("--backend", choices=("torch", "int8", "onnx"), default=backend,
                        help="torch: fp32; int8: ONNX Runtime int8 encoder, about 2x faster on a CPU; onnx: the "
                             "folder's ONNX export (newstagger export) (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto (cuda when there is one) (default %(default)s)")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="torch CPU threads per Predictor (default: torch's choice; on Ray: 1 per actor)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="encoder micro-batch: paragraph chunks per encoder call; raise it on a GPU "
                             "(default: the backend's, measured best on a CPU: torch 32, int8 and onnx 8)")


def _config_keys_help() -> str:
    """The config keys (newstagger.config.TrainingConfig), wrapped, for train --help."""
    import textwrap

    from .config import config_keys

    return textwrap.fill(", ".join(config_keys()), width=100, initial_indent="config keys: ",
                         subsequent_indent="  ", break_on_hyphens=False)


def build_parser(prog: str = "newstagger") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=_Formatter, epilog=exit_codes_help(),
        description="Tag news articles with topics and flag boilerplate paragraphs; train your own tagger.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a model", formatter_class=_Formatter, epilog=exit_codes_help("train"),
                                description="Train a model from a YAML config; overrides as key=value or --key value\n"
                                            "(any config key; trainer.KEY for any TrainingArguments option).\n\n"
                                            + _config_keys_help())
    train.add_argument("--config", help="YAML config (see configs/); default: the built-in default config")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="override config values")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                       help="resume from the last checkpoint, or from the given checkpoint folder")
    train.add_argument("--skip-if-trained", action="store_true",
                       help="do nothing when output_dir already holds a model of the same config and data")
    _columns_arguments(train, labels=True)
    parser.set_defaults(train_options={o for action in train._actions for o in action.option_strings})

    tag = commands.add_parser(
        "tag", help="tag articles", formatter_class=_Formatter, epilog=exit_codes_help("tag"),
        description="Tag articles: one JSONL record per input record, in input order. A record that cannot be\n"
                    "tagged becomes {\"id\", \"error\": \"file:line: field: problem\"} and the run goes on.\n"
                    "--engine ray runs the same options on Ray Data actors and writes a folder of shards.")
    tag.add_argument("--model", required=True, help="a trained model folder (e.g. runs/default)")
    tag.add_argument("inputs", nargs="+", metavar="INPUT",
                     help=".jsonl, .csv, .parquet, .txt (one article; .gz too), a folder of them, a URI "
                          "(s3://...), or - for JSONL on stdin")
    tag.add_argument("--output", "-o", help="output file (default: stdout); --engine ray: an output folder")
    tag.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process; ray: Ray Data actors on a cluster or a local Ray instance")
    tag.add_argument("--resume", action="store_true",
                     help="continue an interrupted run: keep the records --output holds, skip as many inputs")
    tag.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    tag.add_argument("--pretty", action="store_true", help="human-readable output instead of JSONL")
    _columns_arguments(tag, labels=False)
    tag.add_argument("--chunk-size", type=int, default=128,
                     help="articles per Predictor call (ray: per actor call); their paragraphs share encoder "
                          "micro-batches (default %(default)s)")
    _runtime_arguments(tag)
    _limits_arguments(tag)
    tag.add_argument("--site-repeat", action="store_true",
                     help="two passes: flag paragraphs that recur verbatim across articles of one source as "
                          "boilerplate (their scores stay the model's; the topics rest on the other paragraphs)")
    tag.add_argument("--site-repeat-min", type=int, default=None,
                     help="articles of a source a paragraph must occur in for --site-repeat (default 3)")
    tag.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    ray = tag.add_argument_group("--engine ray only")
    ray.add_argument("--ray-address", help="cluster to connect to (default: $RAY_ADDRESS, else a private local "
                                           "instance); 'auto': the cluster started on this machine")
    ray.add_argument("--num-actors", type=int, help="tagging actors (default: CPUs / threads, or one per GPU)")
    ray.add_argument("--output-format", choices=("parquet", "jsonl"), default="parquet", help="(default %(default)s)")
    ray.add_argument("--rows-per-file", type=int, default=10_000,
                     help="at least this many rows per output shard (default %(default)s)")

    evaluate = commands.add_parser("evaluate", help="score a model on a labelled file", formatter_class=_Formatter,
                                   epilog=exit_codes_help("evaluate"),
                                   description="Evaluate a saved model on a labelled file (topics and/or flags).")
    evaluate.add_argument("--model", required=True, help="saved model folder")
    evaluate.add_argument("file", nargs="?", metavar="FILE", help="labelled JSONL, CSV or Parquet file")
    evaluate.add_argument("--data", metavar="FILE", help="the same, named as an option")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _columns_arguments(evaluate, labels=True)
    _runtime_arguments(evaluate)

    check = commands.add_parser("check", help="validate training or evaluation files", formatter_class=_Formatter,
                                epilog=exit_codes_help("check"),
                                description="Validate labelled files: every problem as file:line: field: problem.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--labels", help="comma-separated label names (default: any label; counts are printed)")
    check.add_argument("--strict", action="store_true",
                       help="stop at the first bad record, with its line and exit status 2 (as train does)")
    _columns_arguments(check, labels=True)

    export = commands.add_parser("export", help="write a model's ONNX export, push a model to the Hub",
                                 formatter_class=_Formatter, epilog=exit_codes_help("export"),
                                 description="--onnx (the default action): write the ONNX export (int8 encoder, fp32\n"
                                             "heads) into the model folder (onnx/), for --backend onnx, which needs no\n"
                                             "torch. --push-to-hub OWNER/NAME: upload the folder (with its export, when\n"
                                             "there is one) to the Hugging Face Hub (token: hf auth login or HF_TOKEN).")
    export.add_argument("--model", required=True, help="saved model folder")
    export.add_argument("--onnx", action="store_true", help="write the ONNX export (default when nothing else is asked)")
    export.add_argument("--quantization", default=None, metavar="SCHEME",
                        help="how --onnx quantizes the encoder: per-token-qkv-fp32 (default), per-token-mixed,\n"
                             "per-token, per-chunk, or fp32 (no quantization: scores within 1e-4 of torch,\n"
                             "about 60%% of the int8 speed); see newstagger.onnx_export")
    export.add_argument("--push-to-hub", metavar="OWNER/NAME", help="Hub repository to upload the folder to")
    export.add_argument("--private", action="store_true", help="create the Hub repository as private")

    serve = commands.add_parser("serve", help="serve a model over HTTP", formatter_class=_Formatter,
                                epilog=exit_codes_help("serve"),
                                description="Serve a model over HTTP (newstagger.serve): concurrent requests are\n"
                                            "micro-batched into Predictor calls.")
    serve.add_argument("--model", required=True, help="saved model folder")
    serve.add_argument("--host", default="127.0.0.1", help="(default %(default)s)")
    serve.add_argument("--port", type=_whole(0, 65535), default=8000, help="(default %(default)s)")
    serve.add_argument("--workers", type=_whole(1), default=1, help="processes, each with its own Predictor "
                                                              "(default %(default)s)")
    serve.add_argument("--max-batch", type=_whole(1), default=64, help="articles per Predictor call (default %(default)s)")
    serve.add_argument("--batch-wait-ms", type=_seconds(0, strictly=False), default=5.0,
                       help="how long a batch waits for more articles (default %(default)s)")
    serve.add_argument("--max-queue", type=_whole(1), default=4096, help="articles waiting at most (default %(default)s)")
    serve.add_argument("--max-articles", type=_whole(1), default=256, help="articles per request (default %(default)s)")
    serve.add_argument("--max-body-bytes", type=_whole(1), default=8 << 20, help="(default %(default)s)")
    serve.add_argument("--timeout-s", type=_seconds(0, strictly=True), default=60.0,
                       help="a request not answered within this many seconds gets 504 (default %(default)s)")
    serve.add_argument("--grace-s", type=_seconds(0, strictly=False), default=5.0,
                       help="on Ctrl-C or SIGTERM, how long running requests may finish; the rest get 503 "
                            "(default %(default)s)")
    serve.add_argument("--limit-concurrency", type=_whole(1), default=1024,
                       help="open connections at most; beyond, new ones get 503 at once (default %(default)s)")
    _runtime_arguments(serve, backend="onnx")
    _limits_arguments(serve, read_from_files=False)
    return parser


# ---------------------------------------------------------------------------------------------
# Dispatch: one options object per command
# ---------------------------------------------------------------------------------------------


def _columns(args):
    from .inputs import Columns

    return Columns(text=args.text_column, id=args.id_column, label=getattr(args, "label_column", None))


def _limits(args):
    from .inputs import Limits

    # serve has no --max-line-bytes: the body limit bounds what it reads before parsing (found by a user trial:
    # the option was taken and shown by /metadata, but nothing in the service read records by lines)
    line_bytes = args.max_line_bytes if hasattr(args, "max_line_bytes") else args.max_body_bytes
    return Limits(args.max_paragraphs, args.max_paragraph_chars, args.max_title_chars, line_bytes)


class Terminated(BaseException):
    """SIGTERM during ``tag`` (timeout, systemd, Kubernetes), raised as Ctrl-C's KeyboardInterrupt is, so that
    the run ends as cleanly: no half-written line, the output's lock removed, then exit status 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


def run_tag(args) -> int:
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return _run_tag(args)
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run_tag(args)
    finally:  # main() may be called in-process (tests, a notebook): leave SIGTERM as it was
        signal.signal(signal.SIGTERM, before)


def _run_tag(args) -> int:
    from .batch import TagOptions, tag

    if args.quiet:  # no bar at all, transformers' "Loading weights" included (this process only runs the CLI)
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:  # the torch-free install (backend onnx): transformers draws nothing there
            pass
        else:
            hf_logging.disable_progress_bar()

    options = TagOptions(
        model=args.model, inputs=args.inputs, output=args.output, engine=args.engine, resume=args.resume,
        overwrite=args.overwrite, pretty=args.pretty, columns=_columns(args), limits=_limits(args),
        chunk_size=args.chunk_size, batch_size=args.batch_size, backend=args.backend, device=args.device,
        num_threads=args.num_threads, site_repeat=args.site_repeat, site_repeat_min=args.site_repeat_min,
        progress=False if args.quiet else None, ray_address=args.ray_address, num_actors=args.num_actors,
        output_format=args.output_format, rows_per_file=args.rows_per_file)
    summary = tag(options)
    print(summary.summary(), file=sys.stderr)
    return EXIT_RECORD_ERRORS if summary.exit_status else EXIT_OK


def run_train(args, extra: list[str]) -> int:
    import logging

    from .config import DEFAULT_CONFIG, load_config
    from .inputs import InputError

    overrides = list(args.overrides) + extra
    for key in ("text_column", "label_column", "id_column"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    config = load_config(args.config or DEFAULT_CONFIG, overrides, once=True)
    from .training import resume_checkpoint, train

    checkpoint = resume_checkpoint(config, args.resume)
    if checkpoint:
        from .model_folder import ModelFolderError, check_checkpoint

        try:
            check_checkpoint(checkpoint)
        except ModelFolderError as e:
            raise InputError(f"--resume: checkpoint {checkpoint} cannot be resumed from: {e} (delete it to "
                             "resume from an earlier one, or train without --resume)") from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    train(config, resume=checkpoint or False, skip_if_trained=args.skip_if_trained)  # the checkpoint checked above
    return EXIT_OK


def run_evaluate(args) -> int:
    from .inputs import InputError

    try:
        from .evaluate import EvaluateOptions, evaluate
        from .metrics import format_report
    except ImportError as e:  # scikit-learn (metrics) comes with the torch extra, not with the onnx install
        raise InputError(f"evaluate needs scikit-learn ({e}): pip install 'newstagger[torch]'") from None

    if (args.file is None) == (args.data is None):  # FILE as tag takes it, or --data FILE: one of them
        raise InputError("give the labelled file once: newstagger evaluate --model DIR FILE (or --data FILE)")
    data = args.file or args.data
    options = EvaluateOptions(model=args.model, data=data, columns=_columns(args), backend=args.backend,
                              device=args.device, num_threads=args.num_threads, batch_size=args.batch_size)
    report, n = evaluate(options)
    print(json.dumps(report) if args.json else
          format_report(report, f"{data}: {n} articles, model {args.model} ({args.backend})"))
    return EXIT_OK


def run_check(args) -> int:
    from .data import check_files

    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    failed = check_files(args.files, labels, strict=args.strict, columns=_columns(args))
    return EXIT_RECORD_ERRORS if failed else EXIT_OK


def run_export(args) -> int:
    from .inputs import InputError

    if not (Path(args.model) / "config.json").is_file():
        raise InputError(f"{args.model}: not a model folder (no config.json)")
    if args.onnx or not args.push_to_hub:
        from .onnx_export import DEFAULT_QUANTIZATION, check_quantization, export_onnx

        quantization = args.quantization or DEFAULT_QUANTIZATION
        try:
            check_quantization(quantization, "--quantization")
        except ValueError as e:
            raise InputError(str(e)) from None
        print(export_onnx(args.model, quantization))
    if args.push_to_hub:
        from .hub import push_to_hub

        print(push_to_hub(args.model, args.push_to_hub, private=args.private))
    return EXIT_OK


def run_serve(args) -> int:
    from .serve import ServeOptions, serve

    options = ServeOptions(
        model=args.model, backend=args.backend, host=args.host, port=args.port, workers=args.workers,
        device=args.device, num_threads=args.num_threads, batch_size=args.batch_size, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, max_queue=args.max_queue, max_articles=args.max_articles,
        max_body_bytes=args.max_body_bytes, timeout_s=args.timeout_s, limit_concurrency=args.limit_concurrency,
        grace_s=args.grace_s,
        limits=_limits(args))
    return serve(options)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the user asked for something that cannot be done": one line, status 2."""
    from .data import DataError
    from .inputs import InputError

    from .hub import HubError
    from .model_folder import ModelFolderError

    errors: list[type[BaseException]] = [InputError, DataError, HubError, ModelFolderError]
    try:
        from .config import ConfigError

        errors.append(ConfigError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None, prog: str = "newstagger") -> int:
    """Run one command; returns its exit status (see EXIT_*). Never raises (but SystemExit from --help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    if argv[:1] == ["train"]:
        argv = _join_overrides(argv, parser.get_default("train_options"))
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":  # only train takes unknown --key value (config overrides)
        parser.parse_args(argv)  # exits with argparse's message and status 2
    name = f"{prog} {args.command}" if prog == "newstagger" else prog
    try:
        return _dispatch(args, extra, name)
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            _silence_stdout()


def _dispatch(args, extra: list[str], name: str) -> int:
    try:
        commands = {"tag": run_tag, "evaluate": run_evaluate, "check": run_check, "export": run_export,
                    "serve": run_serve}
        return run_train(args, extra) if args.command == "train" else commands[args.command](args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{name}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:  # the reader of our stdout went away (| head): it asked for no more
        _silence_stdout()
        return EXIT_PIPE
    except Exception as e:
        if isinstance(e, _user_errors()):
            print(f"{name}: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("NEWSTAGGER_DEBUG"):
            import traceback

            traceback.print_exc()
        print(f"{name}: crash: {type(e).__name__}: {e} (NEWSTAGGER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_CRASH


def _join_overrides(argv: list[str], known: set[str]) -> list[str]:
    """``--key value`` config overrides become ``--key=value``, so the parser passes them on whole."""
    out = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and "=" not in token and token not in known and i + 1 < len(argv):
            token, i = f"{token}={argv[i + 1]}", i + 1
        out.append(token)
        i += 1
    return out


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's final flush of a closed pipe does not print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def entry_point() -> None:
    """The ``newstagger`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
