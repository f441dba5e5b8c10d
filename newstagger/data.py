"""Reading, validating and augmenting labelled articles.

One schema for everything newstagger reads (our corpus in data/ and any user's corpus):

    {"id": str, "title": str (may be empty), "paragraphs": [str, ...],
     "boilerplate": [0 or 1 per paragraph], "topics": [subset of the configured labels]}

JSONL is read line by line so that each problem can be reported as ``file:line: field: problem``;
CSV and Parquet go through `datasets` (in CSV, list fields hold JSON, e.g. ``["a", "b"]``).
Extra keys (``source``, ``outlet``, ``genre``...) are allowed and kept in ``Article.extra``.

Run ``python -m newstagger.data --check FILE...`` to validate files from the shell.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

DEFAULT_LABELS = ("diplomacy", "sanctions", "press_freedom")


@dataclass
class Article:
    id: str
    paragraphs: list[str]
    title: str = ""
    boilerplate: list[int] | None = None  # one 0/1 flag per paragraph; None when unlabelled
    topics: list[str] | None = None  # None when unlabelled
    extra: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        record = {"id": self.id, "title": self.title, "paragraphs": self.paragraphs}
        if self.boilerplate is not None:
            record["boilerplate"] = self.boilerplate
        if self.topics is not None:
            record["topics"] = self.topics
        record.update(self.extra)
        return record


class DataError(ValueError):
    """Bad input data. ``problems`` holds every ``file:line: field: problem`` message found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        shown = "\n".join(self.problems[:20])
        more = f"\n... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(shown + more)


@dataclass
class LoadResult:
    articles: list[Article]
    problems: list[str]  # records skipped in lenient mode, one message per problem

    def summary(self) -> str:
        if not self.problems:
            return f"{len(self.articles)} articles, no problems"
        reasons = Counter(p.split(": ", 2)[1] if p.count(": ") >= 2 else p for p in self.problems)
        why = ", ".join(f"{field_}: {n}" for field_, n in reasons.most_common())
        return f"{len(self.articles)} articles kept, {len(self.problems)} problems (by field: {why})"


def record_problems(record: object, labels: Sequence[str] | None, require_labels: bool) -> list[tuple[str, str]]:
    """Every (field, problem) of one record. ``labels=None`` accepts any topic name."""
    if not isinstance(record, dict):
        return [("record", f"expected a JSON object, got {type(record).__name__}")]
    problems = []
    rid = record.get("id")
    if not isinstance(rid, str) or not rid.strip():
        problems.append(("id", "missing or not a non-empty string"))
    title = record.get("title", "")
    if title is not None and not isinstance(title, str):
        problems.append(("title", f"expected a string, got {type(title).__name__}"))
    paragraphs = record.get("paragraphs")
    if paragraphs is None:
        problems.append(("paragraphs", "missing"))
    elif not isinstance(paragraphs, list):
        problems.append(("paragraphs", f"expected a list of strings, got {type(paragraphs).__name__}"))
    elif not paragraphs:
        problems.append(("paragraphs", "empty list: an article needs at least one paragraph"))
    else:
        for i, p in enumerate(paragraphs):
            if not isinstance(p, str):
                problems.append(("paragraphs", f"item {i} is {type(p).__name__}, expected a string"))
            elif not p.strip():
                problems.append(("paragraphs", f"item {i} is empty"))
    flags = record.get("boilerplate")
    if flags is None:
        if require_labels:
            problems.append(("boilerplate", "missing"))
    elif not isinstance(flags, list):
        problems.append(("boilerplate", f"expected a list of 0/1, got {type(flags).__name__}"))
    else:
        bad = [i for i, f in enumerate(flags) if isinstance(f, bool) or f not in (0, 1)]
        if bad:
            problems.append(("boilerplate", f"item {bad[0]} is {flags[bad[0]]!r}, expected 0 or 1"))
        if isinstance(paragraphs, list) and len(flags) != len(paragraphs):
            problems.append(("boilerplate", f"{len(flags)} flags for {len(paragraphs)} paragraphs"))
    topics = record.get("topics")
    if topics is None:
        if require_labels:
            problems.append(("topics", "missing"))
    elif not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        problems.append(("topics", "expected a list of label names"))
    else:
        if labels is not None:
            unknown = [t for t in topics if t not in labels]
            if unknown:
                problems.append(("topics", f"unknown label {unknown[0]!r} (configured: {', '.join(labels)})"))
        if len(set(topics)) != len(topics):
            problems.append(("topics", "a label is listed twice"))
    return problems


def _article_from_record(record: dict) -> Article:
    known = {"id", "title", "paragraphs", "boilerplate", "topics"}
    return Article(
        id=record["id"],
        title=record.get("title") or "",
        paragraphs=list(record["paragraphs"]),
        boilerplate=[int(f) for f in record["boilerplate"]] if record.get("boilerplate") is not None else None,
        topics=list(record["topics"]) if record.get("topics") is not None else None,
        extra={k: v for k, v in record.items() if k not in known},
    )


def _decode_list_fields(record: dict) -> dict:
    """CSV cells hold list fields as JSON text; decode them, leave anything else for validation."""
    for key in ("paragraphs", "boilerplate", "topics"):
        value = record.get(key)
        if isinstance(value, str):
            try:
                record[key] = json.loads(value)
            except json.JSONDecodeError:
                pass  # validation reports the wrong type
    return record


def iter_raw_records(path: str | Path) -> Iterator[tuple[int, object, str | None]]:
    """Yield (line or row number, parsed record or None, parse error or None) for JSONL, CSV or Parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    yield lineno, json.loads(raw.decode("utf-8")), None
                except UnicodeDecodeError as e:
                    yield lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})"
                except json.JSONDecodeError as e:
                    yield lineno, None, f"invalid JSON ({e.msg} at column {e.colno})"
    elif suffix in (".csv", ".parquet"):
        import datasets  # imported here: it is slow to import and JSONL users don't need it

        datasets.disable_progress_bars()
        loader = datasets.Dataset.from_csv if suffix == ".csv" else datasets.Dataset.from_parquet
        table = loader(str(path), keep_in_memory=True)
        first_row = 2 if suffix == ".csv" else 1  # CSV line 1 is the header
        for i, row in enumerate(table):
            yield i + first_row, _decode_list_fields(dict(row)), None
    else:
        raise DataError([f"{path}: unsupported file type {suffix!r} (expected .jsonl, .csv or .parquet)"])


def load_articles(
    path: str | Path,
    labels: Sequence[str] | None = DEFAULT_LABELS,
    strict: bool = True,
    require_labels: bool = True,
) -> LoadResult:
    """Read and validate every record of a file.

    strict: raise DataError at the first bad record. Lenient (strict=False): skip bad records and
    return them in ``LoadResult.problems``. Duplicate ids are errors either way (the later one is bad).
    """
    path = Path(path)
    if not path.exists():
        raise DataError([f"{path}: file not found"])
    articles, problems, seen_ids = [], [], {}
    for lineno, record, parse_error in iter_raw_records(path):
        found = [("record", parse_error)] if parse_error else record_problems(record, labels, require_labels)
        if not found and record["id"] in seen_ids:
            found = [("id", f"duplicate id {record['id']!r} (first on line {seen_ids[record['id']]})")]
        if found:
            messages = [f"{path}:{lineno}: {field_}: {problem}" for field_, problem in found]
            if strict:
                raise DataError(messages)
            problems.extend(messages)
            continue
        seen_ids[record["id"]] = lineno
        articles.append(_article_from_record(record))
    return LoadResult(articles, problems)


def write_jsonl(articles: Iterable[Article], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for a in articles:
            f.write(json.dumps(a.to_record(), ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Boilerplate bank: outlet furniture attached to articles, by the corpus build and by augmentation.
# ---------------------------------------------------------------------------------------------


@dataclass
class BankEntry:
    id: str
    outlet: str
    kind: str
    position: str  # start | middle | end
    text: str
    block: str | None = None  # entries sharing a block are attached together, in file order


def load_bank(path: str | Path) -> list[BankEntry]:
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                entries.append(BankEntry(r["id"], r["outlet"], r["kind"], r["position"], r["text"], r.get("block")))
            except (json.JSONDecodeError, KeyError) as e:
                raise DataError([f"{path}:{lineno}: record: bad bank entry ({e})"]) from e
    return entries


def bank_units(entries: Sequence[BankEntry]) -> dict[str, list[list[BankEntry]]]:
    """Group an outlet's entries into attachable units: a single entry, or a whole block in order."""
    units: dict[str, list[list[BankEntry]]] = {}
    blocks: dict[tuple[str, str], list[BankEntry]] = {}
    for e in entries:
        if e.block:
            key = (e.outlet, e.block)
            if key not in blocks:
                blocks[key] = []
                units.setdefault(e.outlet, []).append(blocks[key])
            blocks[key].append(e)
        else:
            units.setdefault(e.outlet, []).append([e])
    return units


def attach_boilerplate(article: Article, units: Sequence[list[BankEntry]], rng: random.Random,
                       max_paragraphs: int = 15) -> Article:
    """Return a copy of ``article`` with some of one outlet's boilerplate units inserted.

    Units go where they usually appear (start, middle or end); blocks stay whole and in order.
    Units are added only while the article stays within ``max_paragraphs``.
    """
    starts, middles, ends = [], [], []
    room = max_paragraphs - len(article.paragraphs)
    candidates = list(units)
    rng.shuffle(candidates)
    want = {"start": rng.choice([0, 0, 1, 1, 2, 3]), "middle": rng.choice([0, 0, 0, 1, 1, 2]),
            "end": rng.choice([0, 1, 1, 2, 3, 4])}
    chosen = {"start": starts, "middle": middles, "end": ends}
    for unit in candidates:
        where = unit[0].position if unit[0].position in chosen else "end"
        if len(chosen[where]) < want[where] and len(unit) <= room:
            chosen[where].append(unit)
            room -= len(unit)

    def flat(unit_list):
        return [e.text for unit in unit_list for e in unit]

    paragraphs = list(article.paragraphs)
    flags = list(article.boilerplate or [0] * len(paragraphs))
    for unit in middles:  # a middle unit goes between two reporting paragraphs
        if len(paragraphs) >= 2:
            at = rng.randrange(1, len(paragraphs))
            paragraphs[at:at] = [e.text for e in unit]
            flags[at:at] = [1] * len(unit)
        else:
            ends.append(unit)
    head, tail = flat(starts), flat(ends)
    return Article(
        id=article.id,
        title=article.title,
        paragraphs=head + paragraphs + tail,
        boilerplate=[1] * len(head) + flags + [1] * len(tail),
        topics=article.topics,
        extra=dict(article.extra),
    )


def mix_articles(article: Article, other: Article, rng: random.Random) -> Article:
    """``article`` with the reporting paragraphs of ``other`` placed before or after its own.

    Real pages are long and often carry several threads (a sanctions story with a diplomacy thread);
    the hand-written articles are short and focused. Every topic of a written article is a substantial
    thread of it, so it stays one in the mix: the mix's topics are the union.
    """
    own = list(zip(article.paragraphs, article.boilerplate or [0] * len(article.paragraphs)))
    added = [(p, 0) for p, flag in zip(other.paragraphs, other.boilerplate or [0] * len(other.paragraphs))
             if not flag]
    # keep the article's own leading and trailing furniture (bylines, appeals) at the edges
    first = next((i for i, (_, f) in enumerate(own) if not f), 0)
    last = max((i for i, (_, f) in enumerate(own) if not f), default=len(own) - 1) + 1
    at = first if rng.random() < 0.5 else last
    merged = own[:at] + added + own[at:]
    topics = None if article.topics is None else sorted(set(article.topics) | set(other.topics or []))
    return Article(article.id, [p for p, _ in merged], article.title, [f for _, f in merged], topics,
                   dict(article.extra))


class BoilerplateAugmenter:
    """Training-time augmentation: re-dress an article with a random outlet's boilerplate.

    The article's own bank boilerplate is removed first (flags from the bank are the ones whose text
    is in the bank), so each epoch sees the same reporting with different furniture.
    """

    def __init__(self, entries: Sequence[BankEntry], probability: float = 0.5, seed: int = 0):
        self.units = bank_units(entries)
        self.outlets = sorted(self.units)
        self.bank_texts = {e.text for e in entries}
        self.probability = probability
        self.rng = random.Random(seed)

    def __call__(self, article: Article) -> Article:
        if not self.outlets or self.rng.random() >= self.probability:
            return article
        keep = [i for i, p in enumerate(article.paragraphs) if p not in self.bank_texts]
        if not keep:
            return article
        bare = Article(article.id, [article.paragraphs[i] for i in keep], article.title,
                       [article.boilerplate[i] for i in keep] if article.boilerplate else None,
                       article.topics, dict(article.extra))
        outlet = self.rng.choice(self.outlets)
        return attach_boilerplate(bare, self.units[outlet], self.rng, max_paragraphs=max(15, len(bare.paragraphs)))


# ---------------------------------------------------------------------------------------------
# Corpus statistics (the data card and the tests use these)
# ---------------------------------------------------------------------------------------------


def corpus_counts(articles: Sequence[Article], labels: Sequence[str] = DEFAULT_LABELS) -> dict:
    counts = {"articles": len(articles), "paragraphs": sum(len(a.paragraphs) for a in articles),
              "boilerplate_paragraphs": sum(sum(a.boilerplate or []) for a in articles),
              "with_boilerplate": sum(1 for a in articles if any(a.boilerplate or [])),
              "multi_topic": sum(1 for a in articles if len(a.topics or []) >= 2),
              "no_topic": sum(1 for a in articles if not a.topics)}
    for label in labels:
        counts[label] = sum(1 for a in articles if label in (a.topics or []))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate newstagger data files.")
    parser.add_argument("--check", nargs="+", required=True, metavar="FILE")
    parser.add_argument("--labels", default=",".join(DEFAULT_LABELS), help="comma-separated label names")
    parser.add_argument("--lenient", action="store_true", help="report every bad record instead of stopping")
    args = parser.parse_args(argv)
    labels = args.labels.split(",")
    failed = False
    for path in args.check:
        try:
            result = load_articles(path, labels, strict=not args.lenient)
        except DataError as e:
            print(e, file=sys.stderr)
            failed = True
            continue
        for p in result.problems:
            print(p, file=sys.stderr)
        failed |= bool(result.problems)
        print(f"{path}: {result.summary()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
