"""The loader's validation and error messages (newstagger.data on top of newstagger.inputs), and the shipped
corpus's counts and split hygiene."""

import json
import random
from collections import Counter

import pytest

from newstagger.data import (Article, BoilerplateAugmenter, DataError, attach_boilerplate, crop_to_brief,
                             bank_units, corpus_counts, load_articles, load_bank)
from newstagger.inputs import Columns

GOOD = {"id": "a1", "title": "T", "paragraphs": ["One.", "Two."], "boilerplate": [0, 1], "topics": ["diplomacy"]}


def write_lines(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("change, field, words", [
    ({"id": True}, "id", "expected a string or a number, got bool"),
    ({"id": [1]}, "id", "expected a string or a number, got list"),
    ({"title": 3}, "title", "expected a string"),
    ({"paragraphs": None}, "paragraphs", "null; give a list of strings, or text"),
    ({"paragraphs": "One. Two."}, "paragraphs", "expected a list"),
    ({"paragraphs": [], "boilerplate": []}, "paragraphs", "no non-empty paragraph"),
    ({"paragraphs": ["  ", ""], "boilerplate": [0, 0]}, "paragraphs", "no non-empty paragraph"),
    ({"paragraphs": ["One.", 5]}, "paragraphs", "item 1 is int"),
    ({"boilerplate": [0]}, "boilerplate", "1 flags for 2 paragraphs"),
    ({"boilerplate": [0, 2]}, "boilerplate", "expected 0 or 1"),
    ({"boilerplate": None, "topics": None}, "boilerplate", "missing"),
    ({"topics": ["weather"]}, "topics", "unknown label 'weather'"),
    ({"topics": 5}, "topics", "expected label names"),
    ({"topics": ["diplomacy", "diplomacy"]}, "topics", "listed twice"),
    ({"paragraphs": ["One.", "x" * 50_001]}, "paragraphs", "over the limit of 50000"),
])
def test_each_malformed_record_has_its_own_error(tmp_path, change, field, words):
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "id": "a2", **change}])
    with pytest.raises(DataError) as err:
        load_articles(path)
    message = err.value.problems[0]
    assert message.startswith(f"{path}:2: {field}: "), message
    assert words in message


def test_bad_json_non_utf8_and_duplicate_ids_name_the_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([json.dumps(GOOD).encode(), b'{"id": "x", ', json.dumps({**GOOD}).encode(),
                                 b'{"id": "caf\xe9", "paragraphs": ["x"]}']) + b"\n")
    result = load_articles(path, strict=False)
    assert [a.id for a in result.articles] == ["a1"]
    assert result.problems[0].startswith(f"{path}:2: record: invalid JSON")
    assert result.problems[1] == f"{path}:3: id: duplicate id 'a1' (first on line 1)"
    assert result.problems[2].startswith(f"{path}:4: record: not valid UTF-8")
    assert "3 problems" in result.summary()
    with pytest.raises(DataError, match=":2: record: invalid JSON") as err:
        load_articles(path, strict=True)
    assert err.value.problems == result.problems  # strict lists every bad record too, not the first alone


def test_labels_come_from_the_config(tmp_path):
    path = write_lines(tmp_path / "custom.jsonl", [{**GOOD, "topics": ["elections"]}])
    assert load_articles(path, labels=["elections", "health"]).articles[0].topics == ["elections"]
    with pytest.raises(DataError, match="unknown label 'elections'"):
        load_articles(path)


def test_partial_labels_numeric_ids_and_empty_paragraphs_load(tmp_path):
    records = [{**GOOD, "id": 7, "boilerplate": None},  # topics only, a numeric id
               {**GOOD, "id": "flags-only", "topics": None},
               {**GOOD, "id": "", "paragraphs": ["One.", "  "], "boilerplate": [0, 1]}]  # no id, an empty paragraph
    articles = load_articles(write_lines(tmp_path / "p.jsonl", records)).articles
    assert [a.id for a in articles] == ["7", "flags-only", "p.jsonl:3"]
    assert (articles[0].boilerplate, articles[0].topics) == (None, ["diplomacy"])
    assert (articles[1].boilerplate, articles[1].topics) == ([0, 1], None)
    assert articles[2].paragraphs == ["One.", "  "]  # kept at its index, so flags stay aligned


def test_user_csv_with_text_label_and_id_columns(tmp_path):
    """A user's corpus as exported: numeric ids, a body column holding the whole text, one label column whose
    cells are a single label, a delimited list, a JSON list or empty (no topic)."""
    (tmp_path / "mine.csv").write_text(
        'doc,headline,body,topic\n'
        '101,Talks,"Ministers met.\n\nThey agreed.",diplomacy\n'
        '102,,One paragraph.,"sanctions; diplomacy"\n'
        '103,T,"A\nB",\n'
        '104,T,Text,"[""press_freedom""]"\n', encoding="utf-8")
    columns = Columns(text="body", label="topic", id="doc")
    articles = load_articles(tmp_path / "mine.csv", columns=columns).articles
    assert [a.id for a in articles] == ["101", "102", "103", "104"]
    assert [a.paragraphs for a in articles] == [["Ministers met.", "They agreed."], ["One paragraph."], ["A", "B"],
                                                ["Text"]]
    assert [a.topics for a in articles] == [["diplomacy"], ["sanctions", "diplomacy"], [], ["press_freedom"]]
    assert all(a.boilerplate is None for a in articles)
    with pytest.raises(DataError, match=r"mine\.csv: no column 'label' \(the label column: label_column, --label-column\)"):
        load_articles(tmp_path / "mine.csv", columns=Columns(text="body", label="label"))
    bad = tmp_path / "bad.csv"
    bad.write_text('body,topic\nFine.,weather\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv:2: topic: unknown label 'weather'"):
        load_articles(bad, columns=Columns(text="body", label="topic"))


def test_csv_and_parquet_lists_as_json_cells_and_columns(tmp_path):
    import pandas as pd

    frame = pd.DataFrame([{"id": "c1", "title": "", "paragraphs": json.dumps(["A.", "B."]),
                           "boilerplate": json.dumps([0, 0]), "topics": json.dumps(["sanctions"])},
                          {"id": "c2", "title": "x", "paragraphs": json.dumps(["A."]),
                           "boilerplate": json.dumps([0, 1]), "topics": json.dumps([])}])
    frame.to_csv(tmp_path / "a.csv", index=False)
    result = load_articles(tmp_path / "a.csv", strict=False)
    assert [a.id for a in result.articles] == ["c1"]
    assert result.articles[0].paragraphs == ["A.", "B."]
    assert result.problems == [f"{tmp_path / 'a.csv'}:3: boilerplate: 2 flags for 1 paragraphs"]
    parquet = frame.assign(paragraphs=[["A.", "B."], ["A."]], boilerplate=[[0, 0], [0]],
                           topics=[["sanctions"], []])
    parquet.to_parquet(tmp_path / "a.parquet")
    assert [a.topics for a in load_articles(tmp_path / "a.parquet").articles] == [["sanctions"], []]


def test_unlabelled_records_load_when_labels_are_not_required(tmp_path):
    path = write_lines(tmp_path / "u.jsonl", [{"id": "u1", "paragraphs": ["Only text."]}])
    article = load_articles(path, require_labels=False).articles[0]
    assert article.boilerplate is None and article.topics is None


# --- the shipped corpus ----------------------------------------------------------------------

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def corpus(root):
    return {s: load_articles(root / "data" / f"{s}.jsonl").articles for s in SPLITS}


def test_corpus_meets_the_required_counts(corpus):
    everything = [a for s in SPLITS for a in corpus[s]]
    c = corpus_counts(everything)
    assert c["articles"] >= 800
    assert c["diplomacy"] >= 250 and c["sanctions"] >= 220 and c["press_freedom"] >= 180
    assert c["multi_topic"] >= 120 and c["no_topic"] >= 240
    assert c["with_boilerplate"] >= 0.6 * c["articles"]
    assert all(3 <= len(a.paragraphs) <= 60 for a in everything)
    # passing mentions of each topic in articles not tagged with it (issue 8 asks for at least 40 each)
    passing = Counter(t for a in everything for t in a.extra.get("passing", ()) if t not in a.topics)
    assert min(passing[t] for t in ("diplomacy", "sanctions", "press_freedom")) >= 40, passing
    # the structural kinds real extracted articles have, each written into many articles
    kinds = Counter(k for a in everything for k in a.extra.get("structures", ()))
    for kind in ("subhead_numbered", "subhead_caps", "subhead_phrase", "bullet_list", "numbered_list",
                 "list_leadin", "table_rows", "quote_leadin", "caption_credit", "update_note", "liveblog",
                 "qa_explainer", "wire_short", "related_questions", "extractor_newspaper3k",
                 "extractor_raw_blocks", "repeated_headline"):
        assert kinds[kind] >= 5, (kind, kinds[kind])
    # held-out formats never reach training
    held_out = {"liveblog", "qa_explainer"}
    assert not any(held_out & set(a.extra.get("structures", ())) for a in corpus["train"])
    # about 70/15/15
    shares = [len(corpus[s]) / len(everything) for s in SPLITS]
    assert abs(shares[0] - 0.70) < 0.04 and abs(shares[1] - 0.15) < 0.04 and abs(shares[2] - 0.15) < 0.04
    # boilerplate at the start, in the middle and at the end
    def where(a):
        flags = a.boilerplate
        return {"start" if flags[0] else None, "end" if flags[-1] else None,
                "middle" if any(flags[i] and not flags[i - 1] and not all(flags[i:])
                                for i in range(1, len(flags))) else None} - {None}
    places = Counter(p for a in everything for p in where(a))
    assert min(places["start"], places["middle"], places["end"]) >= 40, places


def test_bank_has_enough_outlets_kinds_and_distinct_paragraphs(root):
    bank = load_bank(root / "data" / "source" / "boilerplate_bank.jsonl")
    texts = [e.text for e in bank]
    assert len(set(texts)) == len(texts) >= 1000
    assert len({e.outlet for e in bank}) >= 50
    assert len({e.kind for e in bank}) >= 25
    assert sum(e.kind == "related_question" for e in bank) >= 40
    appeals = [e.text.lower() for e in bank if e.kind == "donation_appeal"]
    assert sum(any(w in t for w in ("foreign agent", "undesirable", "censor", "press freedom")) for t in appeals) >= 5


def test_splits_share_no_id_paragraph_or_outlet(corpus):
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not {x.id for x in corpus[a]} & {x.id for x in corpus[b]}
            shared = {p for x in corpus[a] for p in x.paragraphs} & {p for x in corpus[b] for p in x.paragraphs}
            # the short words of site furniture ("Share", "Trending", "Skip to main content") recur across
            # sites, as on real pages; no sentence of reporting or appeal is shared
            assert not {p for p in shared if len(p.split()) > 6}, sorted(shared)[:3]
            assert not {x.extra["outlet"] for x in corpus[a]} & {x.extra["outlet"] for x in corpus[b]}


def test_corpus_has_no_paragraph_of_the_real_dev_set(corpus, root, real_dev):
    real = {p.strip() for a in load_articles(real_dev).articles for p in a.paragraphs if len(p.strip()) > 30}
    ours = {p.strip() for s in SPLITS for a in corpus[s] for p in a.paragraphs}
    sources = [l for f in (root / "data" / "source").rglob("*.jsonl") for l in f.read_text().splitlines()]
    assert not real & ours
    assert not real & {p for line in sources for p in json.loads(line).get("paragraphs", [])}


def test_corpus_build_is_deterministic(root, tmp_path):
    import subprocess
    import sys

    before = {s: (root / "data" / f"{s}.jsonl").read_bytes() for s in SPLITS}
    subprocess.run([sys.executable, str(root / "data" / "build_corpus.py")], check=True, capture_output=True)
    assert {s: (root / "data" / f"{s}.jsonl").read_bytes() for s in SPLITS} == before


def test_attach_keeps_blocks_whole_and_flags_what_it_adds(root):

    bank = load_bank(root / "data" / "source" / "boilerplate_bank.jsonl")
    units = bank_units(bank)
    outlet = max(units, key=lambda o: max(len(u) for u in units[o]))
    article = Article("x", [f"Reporting paragraph {i}." for i in range(4)], "", [0] * 4, ["diplomacy"])
    texts = {e.text for e in bank}
    for seed in range(20):
        out = attach_boilerplate(article, units[outlet], random.Random(seed))
        assert [p for p in out.paragraphs if p not in texts] == article.paragraphs
        assert out.boilerplate == [1 if p in texts else 0 for p in out.paragraphs]
        assert len(out.paragraphs) <= 15 and out.topics == ["diplomacy"]
        for unit in units[outlet]:
            if len(unit) > 1 and unit[0].text in out.paragraphs:
                start = out.paragraphs.index(unit[0].text)
                assert out.paragraphs[start:start + len(unit)] == [e.text for e in unit]
    augment = BoilerplateAugmenter(bank, probability=1.0, seed=1)
    dressed = augment(out)
    assert [p for p in dressed.paragraphs if p not in texts] == article.paragraphs


def test_mixing_adds_the_other_articles_reporting_and_unions_topics():

    from newstagger.data import mix_articles

    a = Article("a", ["By A. Writer", "Talks began.", "They ended.", "Donate now."], "T", [1, 0, 0, 1], ["diplomacy"])
    b = Article("b", ["Subscribe!", "Assets were frozen.", "Banks complied."], "", [1, 0, 0], ["sanctions"])
    seen = set()
    for seed in range(10):
        m = mix_articles(a, b, random.Random(seed))
        assert m.topics == ["diplomacy", "sanctions"] and m.id == "a" and m.title == "T"
        assert m.paragraphs[0] == "By A. Writer" and m.paragraphs[-1] == "Donate now."  # furniture stays at the edges
        assert "Subscribe!" not in m.paragraphs  # only the other article's reporting comes along
        assert m.boilerplate == [1 if p in ("By A. Writer", "Donate now.") else 0 for p in m.paragraphs]
        seen.add(m.paragraphs.index("Assets were frozen."))
    assert seen == {1, 3}  # before or after the article's own reporting


def test_mixing_keeps_unknown_labels_unknown():

    from newstagger.data import mix_articles

    a = Article("a", ["Talks began.", "They ended."], "T", [0, 0], ["diplomacy"])
    copy = Article("c", ["Assets were frozen.", "Subscribe!"], "", [0, 1], None)  # a flags-only copy
    no_flags = Article("n", ["Banks complied.", "Donate now."], "", None, ["sanctions"])  # a topic-only record
    m = mix_articles(a, copy, random.Random(0))
    assert m.topics is None and m.boilerplate == [1 if p == "Subscribe!" else 0 for p in m.paragraphs]
    assert "Subscribe!" not in m.paragraphs
    m = mix_articles(a, no_flags, random.Random(0))
    # the other's furniture cannot be told from its reporting: all of it comes, and no flag is claimed
    assert m.topics == ["diplomacy", "sanctions"] and m.boilerplate is None and "Donate now." in m.paragraphs
    assert mix_articles(no_flags, a, random.Random(0)).boilerplate is None


def test_training_mixes_in_only_the_given_partners():
    from newstagger.data import oversample_rare_structures
    from newstagger.training import ArticleDataset

    table = Article("t", ["Oslo | 3 | 4", "Talks began."], "", [0, 0], ["diplomacy"], {"structures": ["table_rows"]})
    plain = Article("p", ["Assets were frozen."], "", [0], ["sanctions"])
    epoch = oversample_rare_structures([table, plain], 2)
    assert any(a.topics is None for a in epoch)  # the flags-only copy of the table article
    dataset = ArticleDataset(epoch, mix_probability=1.0, seed=3, mix_partners=[table, plain])
    for _ in range(5):
        for i in range(len(dataset)):
            m = dataset[i]
            original = epoch[i]
            # a mix has topics exactly when the article itself has them: the partner always has them
            assert (m.topics is None) == (original.topics is None)
            if original.topics is not None:
                partner_topics = set(m.topics) - set(original.topics)
                assert set(m.topics) >= set(original.topics) and partner_topics <= {"diplomacy", "sanctions"}


def test_oversampling_repeats_articles_of_rare_structural_kinds_only():
    from newstagger.data import oversample_rare_structures

    def art(i, kinds):
        return Article(f"a{i}", ["Text."], "", [0], [], {"structures": kinds} if kinds is not None else {})

    common = [art(i, ["one_line_quote"]) for i in range(10)]
    table = art(10, ["table_rows", "one_line_quote"])        # its rarest kind (1 article) decides
    lists = [art(11, ["bullet_list"]), art(12, ["bullet_list"]), art(13, ["bullet_list"])]
    plain = art(14, None)                                      # a user's corpus: no structures key
    articles = common + [table] + lists + [plain]
    seen = Counter(a.id for a in oversample_rare_structures(articles, below=4))
    assert seen["a10"] == 3  # ceil(4 / 1) = 4, capped at 3
    assert [seen[f"a{i}"] for i in (11, 12, 13)] == [2, 2, 2]  # ceil(4 / 3)
    assert all(seen[f"a{i}"] == 1 for i in range(10)) and seen["a14"] == 1  # common kinds, no kinds: once
    for a in oversample_rare_structures(articles, below=4):  # the copies carry flags but no topic labels
        original = articles[int(a.id[1:])]
        assert a.paragraphs == original.paragraphs and a.boilerplate == original.boilerplate
        assert a.topics in (original.topics, None)
    assert [a.topics for a in oversample_rare_structures([table], below=4)] == [[], None, None]
    unflagged = Article("u", ["Text."], "", None, ["diplomacy"], {"structures": ["table_rows"]})
    assert oversample_rare_structures([unflagged], below=4) == [unflagged]  # nothing to learn from a copy
    assert oversample_rare_structures(articles, below=0) == articles
    once_more = Counter(a.id for a in oversample_rare_structures(articles, below=2)) - Counter(a.id for a in articles)
    assert once_more == Counter({"a10": 1})  # below=2: only the one table article is rare, ceil(2 / 1) = 2 views


def test_echo_title_repeats_the_headline_as_furniture_above_the_reporting():

    from newstagger.data import echo_title

    a = Article("a", ["By A. Writer", "Photo: Agency", "Talks began.", "They ended."], "Talks begin in Oslo",
                [1, 1, 0, 0], ["diplomacy"])
    places = set()
    for seed in range(20):
        e = echo_title(a, random.Random(seed))
        at = e.paragraphs.index("Talks begin in Oslo")
        places.add(at)
        assert e.paragraphs[:at] + e.paragraphs[at + 1:] == a.paragraphs  # nothing else moves
        assert e.boilerplate == a.boilerplate[:at] + [1] + a.boilerplate[at:]
        assert e.topics == a.topics and e.title == a.title
    assert places == {0, 1, 2}  # among the leading furniture, never inside the reporting
    untitled = Article("b", ["Talks began."], "", [0], ["diplomacy"])
    assert echo_title(untitled, random.Random(0)) is untitled
    echoed = Article("c", ["Talks begin in Oslo", "Talks began."], "Talks begin in Oslo", [1, 0], ["diplomacy"])
    assert echo_title(echoed, random.Random(0)) is echoed


def test_a_credit_run_into_a_short_reporting_paragraph_keeps_it_content():
    """A caption with a credit appended is content (labelling guide, 6): the paragraph keeps flag 0, only a
    short reporting paragraph takes one, nothing else changes; no flags or no credits: unchanged."""

    from newstagger.data import run_in_credit

    long = "The talks ran late into the night as envoys argued over the wording of the final communique " * 3
    a = Article("a", ["Photo: Agency", "Envoys arrive at the talks in Oslo.", long.strip(), "Talks ended."], "Talks",
                [1, 0, 0, 0], ["diplomacy"])
    credits = ["Photo: Ledger / B. Szabo", "(Photo by D. Ruiz/KBN)"]
    changed = set()
    for seed in range(30):
        c = run_in_credit(a, credits, random.Random(seed))
        [at] = [i for i, (x, y) in enumerate(zip(c.paragraphs, a.paragraphs)) if x != y]
        assert at in (1, 3) and c.paragraphs[at] in (f"{a.paragraphs[at]} {credit}" for credit in credits)
        assert c.boilerplate == a.boilerplate and c.topics == a.topics and c.title == a.title
        changed.add(at)
    assert changed == {1, 3}  # the credit line itself (flag 1) and the long paragraph never take one
    assert a.paragraphs[1] == "Envoys arrive at the talks in Oslo."  # the input is not modified
    unflagged = Article("u", ["Envoys arrive."], "", None, ["diplomacy"])
    assert run_in_credit(unflagged, credits, random.Random(0)) is unflagged
    assert run_in_credit(a, [], random.Random(0)) is a


def test_training_runs_credits_of_the_training_outlets_into_captions(root):
    """The dataset takes its credits from the augmenter: the bank's photo credits of training outlets only."""
    from newstagger.data import load_bank
    from newstagger.training import ArticleDataset

    entries = [e for e in load_bank(root / "data" / "source" / "boilerplate_bank.jsonl") if e.outlet == "Steppe Dispatch"]
    augmenter = BoilerplateAugmenter(entries, probability=0.0)
    assert augmenter.credits and set(augmenter.credits) <= {e.text for e in entries if e.kind == "photo_credit"}
    a = Article("a", ["Envoys arrive at the talks in Oslo."], "Talks", [0], ["diplomacy"])
    dataset = ArticleDataset([a], augmenter, caption_credit_probability=1.0)
    seen = {dataset[0].paragraphs[0] for _ in range(20)}
    assert seen == {f"{a.paragraphs[0]} {credit}" for credit in augmenter.credits}
    assert ArticleDataset([a], augmenter)[0].paragraphs == a.paragraphs  # off by default


def test_a_brief_keeps_consecutive_reporting_with_flags_but_no_topics():
    paragraphs = ["By Ana Lima", "Envoys met in Oslo.", "They agreed a ceasefire.", "Subscribe now.",
                  "Talks resume in May.", "Fighting went on in the north.", "© Ledger 2026"]
    a = Article("a", paragraphs, "Oslo talks", [1, 0, 0, 1, 0, 0, 1], ["diplomacy"])
    reporting = [p for p, f in zip(paragraphs, a.boilerplate) if not f]
    rng = random.Random(0)
    sizes, titles = Counter(), Counter()
    for _ in range(300):
        brief = crop_to_brief(a, rng)
        n = len(brief.paragraphs)
        assert 1 <= n <= 3 and brief.boilerplate == [0] * n and brief.topics is None
        start = reporting.index(brief.paragraphs[0])
        assert brief.paragraphs == reporting[start:start + n]  # consecutive reporting, furniture dropped
        sizes[n] += 1
        titles[brief.title] += 1
    assert set(sizes) == {1, 2, 3} and sizes[1] > sizes[3]
    assert set(titles) == {"Oslo talks", ""}
    assert a.paragraphs == paragraphs and a.topics == ["diplomacy"]  # the input is not modified
    unflagged = Article("u", ["Envoys arrive."], "", None, ["diplomacy"])
    assert crop_to_brief(unflagged, rng) is unflagged
    furniture = Article("f", ["Subscribe now."], "", [1], [])
    assert crop_to_brief(furniture, rng) is furniture


def test_training_cuts_briefs_only_when_asked():
    from newstagger.training import ArticleDataset

    a = Article("a", [f"Paragraph {i} of the talks." for i in range(8)], "Talks", [0] * 8, ["diplomacy"])
    briefs = ArticleDataset([a], brief_probability=1.0)
    assert all(len(briefs[0].paragraphs) <= 3 and briefs[0].topics is None for _ in range(20))
    assert ArticleDataset([a])[0] is a  # off by default


def test_a_record_without_any_label_points_to_label_column(tmp_path):
    """A new user's labels were in a column named "labels": the error must say how to name it."""
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "1", "text": "Ministers met.\n\nThey talked.", "labels": ["diplomacy"]}) + "\n")
    result = load_articles(path, strict=False)
    assert len(result.problems) == 1 and "--label-column NAME" in result.problems[0]
    assert result.problems[0].startswith(f"{path}:1: boilerplate: missing, and so is the topics field")
