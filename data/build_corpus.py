"""Assemble data/{train,validation,test}.jsonl from the hand-written sources. Deterministic (seeded).

    python data/build_corpus.py [--seed 7]

Sources (all written for newstagger, see data/README.md):
  data/source/articles/*.jsonl      articles with their labels (reporting paragraphs, plus a few
                                    article-specific bylines or credits flagged as boilerplate)
  data/source/boilerplate_bank.jsonl outlet boilerplate, one paragraph per entry, with outlet and kind

This script only assembles what was written: it splits articles by label combination (70/15/15),
gives each split its own outlets (so validation and test measure unseen outlets), holds the articles of
some structural formats out of training (so validation also measures unseen formats, and thresholds tuned
on it are not tuned on formats the model learnt by heart), and attaches boilerplate of the article's
outlet at the start, middle and end of most articles (not to whole extracted pages, which carry their own).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newstagger.data import (DEFAULT_LABELS, attach_boilerplate, bank_units, corpus_counts,  # noqa: E402
                             load_articles, load_bank, write_jsonl)

DATA = Path(__file__).resolve().parent
SPLITS = (("train", 0.70), ("validation", 0.15), ("test", 0.15))
OUTLETS_PER_SPLIT = {"validation": 5, "test": 5}  # the rest go to train
WITH_BOILERPLATE = 0.78  # share of articles that get outlet boilerplate attached
# Structural formats kept out of training: their articles go to validation and test only.
HELD_OUT_FORMATS = ("liveblog", "qa_explainer")
EXTRACTED = ("extractor_newspaper3k", "extractor_raw_blocks")  # whole pages: no bank boilerplate added


def split_outlets(outlets: list[str], rng: random.Random) -> dict[str, list[str]]:
    outlets = sorted(outlets)
    rng.shuffle(outlets)
    n_val, n_test = OUTLETS_PER_SPLIT["validation"], OUTLETS_PER_SPLIT["test"]
    return {"validation": sorted(outlets[:n_val]), "test": sorted(outlets[n_val:n_val + n_test]),
            "train": sorted(outlets[n_val + n_test:])}


def split_articles(articles, rng: random.Random) -> dict[str, list]:
    """Stratified by label combination: each combination is shuffled and cut 70/15/15. Articles of a
    held-out format alternate between validation and test."""
    groups = defaultdict(list)
    splits = {name: [] for name, _ in SPLITS}
    held_out = 0
    for a in sorted(articles, key=lambda a: a.id):
        if set(a.extra.get("structures", ())) & set(HELD_OUT_FORMATS):
            splits["validation" if held_out % 2 == 0 else "test"].append(a)
            held_out += 1
        else:
            groups[tuple(sorted(a.topics))].append(a)
    for combo in sorted(groups):
        group = groups[combo]
        rng.shuffle(group)
        for k, article in enumerate(group):
            position, cumulative = (k + 0.5) / len(group), 0.0
            for name, share in SPLITS:
                cumulative += share
                if position < cumulative or name == SPLITS[-1][0]:
                    splits[name].append(article)
                    break
    return splits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    articles = []
    for path in sorted((DATA / "source" / "articles").glob("*.jsonl")):
        articles += load_articles(path, DEFAULT_LABELS).articles
    bank = load_bank(DATA / "source" / "boilerplate_bank.jsonl")
    units = bank_units(bank)
    outlets = split_outlets(list(units), rng)
    splits = split_articles(articles, rng)

    structures = defaultdict(lambda: defaultdict(int))
    print("| split | articles | diplomacy | sanctions | press_freedom | 2+ topics | no topic | with boilerplate "
          "| paragraphs | boilerplate paragraphs | outlets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, split in splits.items():
        assembled = []
        for article in sorted(split, key=lambda a: a.id):
            outlet = rng.choice(outlets[name])
            article.extra = {"outlet": outlet, **article.extra}
            extracted = set(article.extra.get("structures", ())) & set(EXTRACTED)
            if rng.random() < WITH_BOILERPLATE and not extracted:
                article = attach_boilerplate(article, units[outlet], rng,
                                             max_paragraphs=max(15, len(article.paragraphs) + 5))
            assembled.append(article)
        rng.shuffle(assembled)
        write_jsonl(assembled, DATA / f"{name}.jsonl")
        c = corpus_counts(assembled)
        print(f"| {name} | {c['articles']} | {c['diplomacy']} | {c['sanctions']} | {c['press_freedom']} "
              f"| {c['multi_topic']} | {c['no_topic']} | {c['with_boilerplate']} | {c['paragraphs']} "
              f"| {c['boilerplate_paragraphs']} | {len(outlets[name])} |")
        for article in assembled:
            for kind in article.extra.get("structures", ()):
                structures[kind][name] += 1
    print("\n| structure | " + " | ".join(n for n, _ in SPLITS) + " |\n|---|---|---|---|")
    for kind in sorted(structures, key=lambda k: -sum(structures[k].values())):
        print(f"| {kind} | " + " | ".join(str(structures[kind][n]) for n, _ in SPLITS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
