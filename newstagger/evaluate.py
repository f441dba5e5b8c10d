"""Evaluate a saved model on a labelled file: ``newstagger evaluate --model DIR FILE [--json]`` (or ``--data FILE``).

The file is read by the one reader and record rule (newstagger.inputs, columns mapped as for training);
scores and the printed report come from newstagger.metrics.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .data import load_articles
from .inputs import Columns, InputError, Limits


@dataclass
class EvaluateOptions:
    model: str
    data: str
    columns: Columns = field(default_factory=Columns)
    limits: Limits = field(default_factory=Limits)
    backend: str = "torch"
    device: str = "cpu"
    num_threads: int | None = None
    batch_size: int = 32

    def __post_init__(self):
        for name in ("batch_size", "num_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, not {value!r}")


def evaluate(options: EvaluateOptions) -> tuple[dict, int]:
    """(report, number of articles). The report is newstagger.metrics.evaluate_articles' with what it
    measured first: ``articles`` (count), ``model`` (the folder as given) and ``backend``. Raises InputError
    for a model that cannot load, a file without articles (empty, or blank lines only) or with a record that
    has neither topics nor boilerplate flags to score against; DataError for a bad record
    (``file:line: field: problem``)."""
    from .batch import load_predictor
    from .metrics import evaluate_articles

    predictor = load_predictor(options.model, backend=options.backend, batch_size=options.batch_size,
                               num_threads=options.num_threads, limits=options.limits, device=options.device)
    # Records with topics only, or flags only, are scored on what they have (metrics.score_split)
    articles = load_articles(options.data, predictor.labels, columns=options.columns, limits=options.limits,
                             require_labels=False, single_label=predictor.single_label).articles
    if not articles:  # every score would be 0.000: not a result
        raise InputError(f"{options.data}: no articles to evaluate")
    unlabelled = [a.id for a in articles if a.topics is None and a.boilerplate is None]
    if unlabelled:
        hint = "; labels in a column of another name: --label-column NAME" if options.columns.label is None else ""
        if len(unlabelled) == len(articles):
            raise InputError(f"{options.data}: no topics or boilerplate flags to score against (no record has "
                             f"either{hint})")
        raise InputError(f"{options.data}: {len(unlabelled)} of its {len(articles)} records (the first: "
                         f"{unlabelled[0]!r}) have no topics or boilerplate flags to score against{hint}")
    report = {"articles": len(articles), "model": str(options.model), "backend": options.backend,
              **evaluate_articles(predictor, articles)}
    return report, len(articles)


def main(argv=None) -> int:
    """``python -m newstagger.evaluate ...``: the same as ``newstagger evaluate ...``."""
    from .cli import main as cli_main

    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
