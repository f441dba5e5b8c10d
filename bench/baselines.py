"""Classical baselines against the newstagger model, scored with the same metrics on real news.

    python bench/baselines.py [--model runs/default] [--eval ../shared/eval/real_dev.jsonl]

Rows:
  tfidf-lr        TF-IDF + logistic regression trained on data/train.jsonl: one classifier per topic over
                  the whole article text (what a naive tagger reads), one over single paragraphs for
                  boilerplate. Thresholds 0.5 except where tuned on data/validation.jsonl (--tune).
  justext         jusText's paragraph classifier (stop-word and link density heuristics), boilerplate only.
  newstagger      the saved model, if --model exists.
A task the evaluation file does not label (no paragraph flags, or no topics) is n/a, never 0.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scored import Scored, cell  # noqa: E402
from newstagger.data import DEFAULT_LABELS, load_articles  # noqa: E402
from newstagger.metrics import best_threshold  # noqa: E402


def article_text(a):
    return "\n".join([a.title, *a.paragraphs])


def tfidf_baseline(train, validation, evaluation, labels):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    topic_vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = topic_vec.fit_transform([article_text(a) for a in train])
    x_val = topic_vec.transform([article_text(a) for a in validation])
    x_eval = topic_vec.transform([article_text(a) for a in evaluation])
    topic_prob, thresholds = [], []
    for label in labels:
        y = [int(label in a.topics) for a in train]
        clf = LogisticRegression(max_iter=2000, C=10, class_weight="balanced").fit(x_train, y)
        thresholds.append(best_threshold(np.array([int(label in a.topics) for a in validation]),
                                         clf.predict_proba(x_val)[:, 1]))
        topic_prob.append(clf.predict_proba(x_eval)[:, 1])

    para_vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000)
    paragraphs = [p for a in train for p in a.paragraphs]
    flags = [f for a in train for f in a.boilerplate]
    clf = LogisticRegression(max_iter=2000, C=10, class_weight="balanced").fit(para_vec.fit_transform(paragraphs), flags)
    val_prob = clf.predict_proba(para_vec.transform([p for a in validation for p in a.paragraphs]))[:, 1]
    bp_threshold = best_threshold(np.array([f for a in validation for f in a.boilerplate]), val_prob)
    bp_prob = clf.predict_proba(para_vec.transform([p for a in evaluation for p in a.paragraphs]))[:, 1]
    return np.array(topic_prob).T, thresholds, bp_prob, bp_threshold


def justext_flags(evaluation):
    import justext

    stoplist = justext.get_stoplist("English")
    flags = []
    for a in evaluation:
        page = "<html><body>" + "".join(f"<p>{html.escape(p)}</p>" for p in a.paragraphs) + "</body></html>"
        blocks = justext.justext(page.encode("utf-8"), stoplist)
        texts = [b for b in blocks]
        # jusText returns one block per <p>; guard against merges by aligning on order and length.
        if len(texts) != len(a.paragraphs):
            by_text = {" ".join(b.text.split()): b.is_boilerplate for b in blocks}
            flags += [int(by_text.get(" ".join(p.split()), True)) for p in a.paragraphs]
        else:
            flags += [int(b.is_boilerplate) for b in texts]
    return np.array(flags)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", default=str(ROOT.parent / "shared" / "eval" / "real_dev.jsonl"))
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    if not Path(args.eval).exists():
        print(f"skipped: {args.eval} not found (the real-news evaluation set lives in ../shared)")
        return 0
    labels = list(DEFAULT_LABELS)
    train = load_articles(ROOT / "data" / "train.jsonl", labels).articles
    validation = load_articles(ROOT / "data" / "validation.jsonl", labels).articles
    evaluation = load_articles(args.eval, labels).articles
    paragraphs = np.cumsum([len(a.paragraphs) for a in evaluation])

    def scored(topic_prob, thresholds, bp_prob, bp_threshold):
        """The baseline's scores, one (topics, paragraphs) pair per article, reported by newstagger's rules
        (a task the evaluation file does not label is None, n/a in the table)."""
        per_article = list(zip(topic_prob, np.split(bp_prob, paragraphs[:-1])))
        return Scored(per_article, labels, thresholds, bp_threshold).report(evaluation)

    rows = {}
    tfidf = scored(*tfidf_baseline(train, validation, evaluation, labels))
    rows["tfidf-lr"] = (tfidf["topics"], tfidf["boilerplate"])
    justext = scored(np.zeros((len(evaluation), len(labels))), 0.5, justext_flags(evaluation), 0.5)
    rows["justext"] = (None, justext["boilerplate"])  # paragraphs only
    if (Path(args.model) / "config.json").exists():
        from newstagger.predictor import Predictor
        from newstagger.metrics import evaluate_articles

        report = evaluate_articles(Predictor.from_pretrained(args.model), evaluation)
        rows["newstagger"] = (report["topics"], report["boilerplate"])

    print(f"{args.eval}: {len(evaluation)} articles, {paragraphs[-1] if len(paragraphs) else 0} paragraphs; "
          "baselines trained on data/train.jsonl")
    head = "".join(f"{l[:13]:>14}" for l in labels)
    print(f"{'system':<12}{head}{'macro-F1':>10}{'micro-F1':>10}{'bp P':>8}{'bp R':>8}{'bp F1':>8}")
    for name, (topics, bp) in rows.items():
        if topics:
            cells = "".join(cell(topics["per_label"][l]["f1"], ".3f", 14) for l in labels)
            cells += cell(topics["macro_f1"], ".3f", 10) + cell(topics["micro_f1"], ".3f", 10)
        else:
            cells = "".join(f"{'-':>14}" for _ in labels) + f"{'-':>10}{'-':>10}"
        print(f"{name:<12}{cells}" + "".join(cell(bp[k], ".3f", 8) for k in ("precision", "recall", "f1")))
    if args.json:
        print(json.dumps({k: {"topics": t, "boilerplate": b} for k, (t, b) in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
