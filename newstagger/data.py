"""Labelled articles for training and evaluation: loading and validating, the boilerplate bank, augmentation.

One schema for everything newstagger trains on (our corpus in data/ and any user's corpus):

    {"id": str or number (optional), "title": str (optional), "paragraphs": [str, ...] or "text": str,
     "boilerplate": [0 or 1 per paragraph] (optional), "topics": [labels] (optional)}

A record may carry topics only, boilerplate flags only, or both. Files are read by newstagger.inputs (the one
reader and record rule: JSONL, CSV, Parquet, .txt, folders; columns mapped with inputs.Columns; topics as a
list, a JSON list or a delimited string); here the labels are checked against the configured label set.
Every problem is reported as ``file:line: field: problem``. Extra keys (``source``, ``outlet``, ``genre``...)
are kept in ``Article.extra``.

Run ``newstagger check FILE...`` (or ``python -m newstagger.data --check FILE...``) to validate files.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .inputs import Article, ArticleError, Columns, Limits, check_inputs, iter_articles, show_path

DEFAULT_LABELS = ("diplomacy", "sanctions", "press_freedom")


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
        articles = f"{len(self.articles)} article{'' if len(self.articles) == 1 else 's'}"
        if not self.problems:
            return f"{articles}, no problems"
        reasons = Counter(p.split(": ", 2)[1] if p.count(": ") >= 2 else p for p in self.problems)
        why = ", ".join(f"{field_}: {n}" for field_, n in reasons.most_common())
        problems = f"{len(self.problems)} problem{'' if len(self.problems) == 1 else 's'}"
        return f"{articles} kept, {problems} (by field: {why})"


def label_problems(article: Article, labels: Sequence[str] | None, require_labels: bool,
                   label_field: str = "topics", single_label: bool = False) -> list[tuple[str, str]]:
    """Every (field, problem) of one article's labels. ``labels=None`` accepts any topic name. Partial
    labels are fine: topics only, boilerplate flags only, or both (the flags' form is checked on reading).
    ``single_label``: labelled topics must hold exactly one label (a single-label model has no way to say
    "none" or "two": scored or trained as its likeliest label, such an article would count as the first)."""
    problems = []
    if require_labels and article.topics is None and article.boilerplate is None:
        hint = " (labels in a column of another name: --label-column NAME)" if label_field == "topics" else ""
        problems.append(("boilerplate", f"missing, and so is the {label_field} field: the record has nothing to learn "
                                        f"from{hint}"))
    if article.topics is not None:
        if labels is not None:
            unknown = [t for t in article.topics if t not in labels]
            if unknown:
                problems.append((label_field, f"unknown label {unknown[0]!r} (known labels: {', '.join(labels)})"))
        if len(set(article.topics)) != len(article.topics):
            problems.append((label_field, "a label is listed twice"))
        elif single_label and len(article.topics) != 1:
            problems.append((label_field, f"{len(article.topics)} labels: a single-label model takes exactly one "
                                          "per article (train a multi-label model for articles with none or several)"))
    return problems


def load_articles(
    path: str | Path,
    labels: Sequence[str] | None = DEFAULT_LABELS,
    strict: bool = True,
    require_labels: bool = True,
    columns: Columns = Columns(),
    limits: Limits = Limits(),
    single_label: bool = False,
) -> LoadResult:
    """Read and validate every record of a file (or folder) through newstagger.inputs.

    strict: raise DataError listing every bad record (the first 20 in its message), after reading the whole
    file, so one run shows them all. Lenient (strict=False): skip bad records and return them in
    ``LoadResult.problems``. Duplicate ids are errors either way (the later one is bad). ``single_label``:
    an article with topics must have exactly one (label_problems).
    Raises DataError too for a file that cannot be read at all.
    """
    try:
        check_inputs([str(path)], columns, stdin_ok=False)
    except ValueError as e:  # InputError: missing file, unknown type, missing column
        raise DataError([str(e)]) from None
    articles, problems, seen_ids = [], [], {}
    for position, item in iter_articles([str(path)], columns, limits, labelled=True):
        if isinstance(item, ArticleError):
            found = [str(item)]
        else:
            found = [f"{position}: {f}: {p}" for f, p in label_problems(item, labels, require_labels,
                                                                          columns.label_field, single_label)]
            if not found and item.id in seen_ids:
                found = [f"{position}: {columns.id or 'id'}: duplicate id {item.id!r} (first on line "
                         f"{seen_ids[item.id]})"]
        if found:
            problems.extend(found)
            continue
        seen_ids[item.id] = position.row
        articles.append(item)
    if strict and problems:
        raise DataError(problems)
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

    What either article leaves unlabelled stays unlabelled in the mix, so that no loss learns a guess:
    topics are ``None`` when either has none (a union with unknown topics is unknown), and flags are
    ``None`` when either has none (without ``other``'s flags its furniture cannot be told from its
    reporting, so all of its paragraphs are added).
    """
    flagged = article.boilerplate is not None and other.boilerplate is not None
    own = list(zip(article.paragraphs, article.boilerplate or [0] * len(article.paragraphs)))
    added = [(p, 0) for p, flag in zip(other.paragraphs, other.boilerplate or [0] * len(other.paragraphs))
             if not flag]
    # keep the article's own leading and trailing furniture (bylines, appeals) at the edges
    first = next((i for i, (_, f) in enumerate(own) if not f), 0)
    last = max((i for i, (_, f) in enumerate(own) if not f), default=len(own) - 1) + 1
    at = first if rng.random() < 0.5 else last
    merged = own[:at] + added + own[at:]
    topics = (None if article.topics is None or other.topics is None
              else sorted(set(article.topics) | set(other.topics)))
    return Article(article.id, [p for p, _ in merged], article.title, [f for _, f in merged] if flagged else None,
                   topics, dict(article.extra))


def echo_title(article: Article, rng: random.Random) -> Article:
    """``article`` with its title repeated as a boilerplate paragraph near the top, where extractors leave
    it (newspaper3k keeps the page's headline or a copy of it above the body, often after a byline or a
    caption). A repeated headline is furniture by the labelling guide; the hand-written articles never
    repeat their title, so without this the model reads a headline copy as a lede. Unchanged when the
    article has no title or already repeats it."""
    if not article.title.strip() or article.title.strip() in (p.strip() for p in article.paragraphs):
        return article
    flags = list(article.boilerplate or [0] * len(article.paragraphs))
    lead = next((i for i, f in enumerate(flags) if not f), len(flags))  # the leading furniture, if any
    at = rng.randint(0, lead)
    return Article(article.id, article.paragraphs[:at] + [article.title] + article.paragraphs[at:], article.title,
                   flags[:at] + [1] + flags[at:], article.topics, dict(article.extra))


def run_in_credit(article: Article, credits: Sequence[str], rng: random.Random, max_words: int = 35) -> Article:
    """``article`` with a photo credit run into the end of one of its short reporting paragraphs, the way
    pages print a caption ("Ministers arrive at the talks in Vienna. Photo: Ledger / Bence Szabó").

    By the labelling guide a descriptive caption is content even with a credit appended, and a credit-only
    line is furniture. The bank's credits stand alone on their own lines and only a few written captions carry
    one, so the credit's own words decided: captions with a credit run in were flagged on real pages. The
    paragraph keeps flag 0 (it still describes the story); topics are unchanged. ``credits``: credit-only
    lines of the training outlets (bank kind ``photo_credit``). Unchanged without flags (reporting cannot be
    told from furniture), without credits, or without a reporting paragraph of at most ``max_words`` words.
    """
    if article.boilerplate is None or not credits:
        return article
    short = [i for i, (text, flag) in enumerate(zip(article.paragraphs, article.boilerplate))
             if not flag and len(text.split()) <= max_words]
    if not short:
        return article
    at = rng.choice(short)
    paragraphs = list(article.paragraphs)
    paragraphs[at] = f"{paragraphs[at].rstrip()} {rng.choice(credits).strip()}"
    return Article(article.id, paragraphs, article.title, list(article.boilerplate), article.topics,
                   dict(article.extra))


def crop_to_brief(article: Article, rng: random.Random, max_paragraphs: int = 3) -> Article:
    """``article`` cut to a brief: one to ``max_paragraphs`` consecutive reporting paragraphs (its furniture
    dropped), with its title half of the time.

    Real corpora hold wire briefs, news alerts and pages an extractor cut short: one or two paragraphs of
    reporting, often with nothing else or only a copyright line. The written articles are eight paragraphs
    and more, so a lone paragraph, whose relation features (similarity to the rest of the article and to
    its neighbours) are all zero, looked like furniture: one-paragraph diplomacy briefs were flagged whole
    and lost their topic. The brief keeps its flags (all content; the augmenter may dress it again with an
    outlet's furniture) but not its topics (``topics=None``: no topic loss), since a topic of the whole
    article need not be reported in the paragraphs kept. Unchanged without flags or reporting paragraphs.
    """
    if article.boilerplate is None:
        return article
    reporting = [p for p, flag in zip(article.paragraphs, article.boilerplate) if not flag and p.strip()]
    if not reporting:
        return article
    size = min(len(reporting), rng.choice([1, 1, 2, max_paragraphs]))
    start = rng.randrange(len(reporting) - size + 1)
    kept = reporting[start:start + size]
    title = article.title if rng.random() < 0.5 else ""
    return Article(article.id, kept, title, [0] * len(kept), None, dict(article.extra))


def oversample_rare_structures(articles: Sequence[Article], below: int, max_repeat: int = 3) -> list[Article]:
    """``articles``, each one that carries a rare structural kind followed by copies for the boilerplate task.

    A kind (an entry of an article's ``structures`` extra key, e.g. ``table_rows``) is rare when fewer than
    ``below`` of ``articles`` carry it; an article is then seen ``ceil(below / n)`` times, ``n`` the count of
    its rarest kind, at most ``max_repeat`` times. Why: a page structure that a few dozen training articles
    carry (rows of a table, numbered subheads) is a few hundred paragraphs among tens of thousands, and the
    model falls back on surface cues instead (a run of short lines near the end reads as a menu).
    The copies keep their paragraph flags but not their topics (``topics=None``: no topic loss), so the topic
    task still sees each article once: repeating whole articles also repeated their topics, and cost 0.03
    topic macro-F1 on real news (README, Results). Each copy is re-dressed and mixed anew in training.
    ``below`` <= 0, an article without ``structures`` or without flags: not repeated.
    """
    if below <= 0:
        return list(articles)
    kinds = [set(a.extra.get("structures", ())) for a in articles]
    counts = Counter(k for found in kinds for k in found)
    out = []
    for article, found in zip(articles, kinds):
        out.append(article)
        rarest = min((counts[k] for k in found if counts[k] < below), default=0)
        if rarest and article.boilerplate is not None:
            copy = Article(article.id, article.paragraphs, article.title, article.boilerplate, None,
                           dict(article.extra))
            out.extend([copy] * (min(max_repeat, math.ceil(below / rarest)) - 1))
    return out


class BoilerplateAugmenter:
    """Training-time augmentation: re-dress an article with a random outlet's boilerplate.

    The article's own bank boilerplate is removed first (flags from the bank are the ones whose text
    is in the bank), so each epoch sees the same reporting with different furniture.
    """

    def __init__(self, entries: Sequence[BankEntry], probability: float = 0.5, seed: int = 0):
        self.units = bank_units(entries)
        self.outlets = sorted(self.units)
        self.bank_texts = {e.text for e in entries}
        self.credits = [e.text for e in entries if e.kind == "photo_credit"]  # for run_in_credit
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


def check_files(paths: Sequence[str], labels: Sequence[str] | None = None, strict: bool = False,
                columns: Columns = Columns(), require_labels: bool = True) -> bool:
    """``newstagger check``: validate files, print each problem (``file:line: field: problem``) to stderr
    and a summary line with the topic counts per file to stdout. Returns True when any record is bad.
    Raises DataError for a file that cannot be read at all (or, with ``strict``, at the first bad record)."""
    failed = False
    for path in paths:
        result = load_articles(path, labels, strict=strict, require_labels=require_labels, columns=columns)
        if not result.articles and not result.problems:  # nothing to train or evaluate on is not "no problems"
            empty = f"{show_path(str(path))}: no articles (an empty file?)"
            if strict:
                raise DataError([empty])
            print(empty, file=sys.stderr)
            print(f"{show_path(str(path))}: 0 articles")
            failed = True
            continue
        for problem in result.problems:
            print(problem, file=sys.stderr)
        failed |= bool(result.problems)
        counts = Counter(t for a in result.articles for t in (a.topics or []))
        table = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items()))
        print(f"{show_path(str(path))}: {result.summary()}" + (f"; topics: {table}" if table else ""))
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m newstagger.data --check FILE...``: the same as ``newstagger check FILE...``."""
    from .cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["check", *[a for a in argv if a != "--check"]])


if __name__ == "__main__":
    sys.exit(main())
