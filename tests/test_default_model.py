"""Checks of the trained default model (runs/default, made by `make run`; .ci/run runs it first).

Besides the seed article and the examples: one article of our own for each kind of fault issue 8 names
(tests/data/kinds.jsonl), and the failure cases in ../shared/cases read by path. Skipped with a message when
runs/default or ../shared is absent.
"""

import json
from pathlib import Path

import pytest

from newstagger.predictor import Predictor, split_paragraphs

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

MODEL = ROOT / "runs" / "default"
MOSCOW = SHARED / "examples" / "moscow_times_lukashenko.txt"


@pytest.fixture(scope="module")
def default_model():
    if not (MODEL / "model.safetensors").exists():
        pytest.skip(f"{MODEL} has no trained model: run `make run` first")
    return Predictor.from_pretrained(MODEL)


def _moscow(default_model):
    if not MOSCOW.exists():
        pytest.skip(f"{MOSCOW} is absent (../shared not beside the checkout)")
    paragraphs = split_paragraphs(MOSCOW.read_text(encoding="utf-8"))
    assert len(paragraphs) == 16
    return paragraphs, default_model.predict(paragraphs)


def test_moscow_times_story_is_diplomacy_not_press_freedom(default_model):
    _, result = _moscow(default_model)
    assert result.topics == ["diplomacy"], result.topic_scores
    assert not any(result.boilerplate[:8]), result.paragraph_scores  # the report itself is all content


# The default model flags 7 of the 8 (with torch): the paragraph on silencing independent journalism joins the
# appeal by decoding (newstagger.decoding), but "A Message from The Moscow Times:", which opens it, stays
# content (0.01 for the default of 2026-12-02 trained with briefs, in bf16; 0.22 for the fp32 one before it):
# moving the appeal's start by one paragraph costs no switch, so its own score decides. The model before the
# fix of mixing partners flagged all 8. Kept as a check so that a fix shows up as XPASS.
@pytest.mark.xfail(reason="the appeal's opening line scores under the threshold (README, Results)", strict=False)
def test_moscow_times_appeal_is_boilerplate_exactly(default_model):
    paragraphs, result = _moscow(default_model)
    appeal_starts = paragraphs.index("A Message from The Moscow Times:")
    assert result.boilerplate == [False] * appeal_starts + [True] * (16 - appeal_starts), result.paragraph_scores


def test_example_articles_get_their_boilerplate_and_topics(default_model):
    """Every flag as labelled; every true topic found, and no press_freedom from an appeal. (A sanctions
    *mention* in one paragraph of the summit story may still be tagged sanctions: a known weakness.)"""
    expected = json.loads((ROOT / "data" / "examples" / "expected.json").read_text())
    for name, truth in expected.items():
        paragraphs = split_paragraphs((ROOT / "data" / "examples" / name).read_text(encoding="utf-8"))
        result = default_model.predict(paragraphs)
        flagged = [i + 1 for i, flag in enumerate(result.boilerplate) if flag]
        assert flagged == truth["boilerplate_lines"], (name, result.paragraph_scores)
        assert set(truth["topics"]) <= set(result.topics), (name, result.topic_scores)
        if "press_freedom" not in truth["topics"]:
            assert "press_freedom" not in result.topics, (name, result.topic_scores)


KINDS = [json.loads(line) for line in (ROOT / "tests" / "data" / "kinds.jsonl").read_text().splitlines()]
# Kinds the default model still gets wrong (README, Results): tested, so that a fix shows up as XPASS.
KNOWN_WRONG = {
    "kind-pitches": "a bare list of related headlines in question form after the last paragraph reads as content",
    # the header row and the last two rows (a reporter, her outlet and town) read as a byline "Name | City"
    "kind-table-names": "table rows naming a journalist and an outlet read as bylines",
    "brief-10": "a court's fine against a newspaper over a column, one paragraph, is not read as press_freedom",
}


def _known(name, *values):
    marks = [pytest.mark.xfail(reason=KNOWN_WRONG[name], strict=False)] if name in KNOWN_WRONG else []
    return pytest.param(*values, marks=marks, id=name)


@pytest.mark.parametrize("article", [_known(k["id"], k) for k in KINDS])
def test_each_kind_of_real_page_structure(default_model, article):
    """Subheads, lists, table rows, lead-ins, captions and update notes stay content; prose pitches and
    related lists in question form are flagged; a passing line carries no topic; a page of furniture gets
    none; briefs of one or two paragraphs keep their reporting and their topic. Articles written for this test,
    one per kind (the ten briefs were written before the brief views of training were tried)."""
    result = default_model.predict({"title": article["title"], "paragraphs": article["paragraphs"]})
    assert [int(f) for f in result.boilerplate] == article["boilerplate"], (article["kind"], result.paragraph_scores)
    assert sorted(result.topics) == sorted(article["topics"]), (article["kind"], result.topic_scores)
    for label, evidence in result.evidence.items():  # every tagged topic rests on content paragraphs
        assert evidence and not any(result.boilerplate[i] for i in evidence)


CASES = SHARED / "cases"


def _case_articles():
    if not CASES.exists():
        return []
    found = []
    for path in sorted(CASES.iterdir()):
        if path.suffix == ".txt":
            found.append(_known(path.stem, path.stem, [line.strip() for line in path.read_text().splitlines()
                                                       if line.strip()]))
        elif path.suffix == ".jsonl":
            found += [_known(path.stem, path.stem, json.loads(line)) for line in path.read_text().splitlines()
                      if line.strip()]
    return found


@pytest.mark.parametrize("name, article", _case_articles() or [pytest.param(None, None, marks=pytest.mark.skip(
    reason=f"{CASES} is absent (../shared not beside the checkout)"))])
def test_failure_cases_in_shared(default_model, name, article):
    expected = json.loads((CASES / f"{name}.expect.json").read_text())
    result = default_model.predict(article)
    assert [int(f) for f in result.boilerplate] == expected["boilerplate"], (name, result.paragraph_scores)
    assert sorted(result.topics) == sorted(expected["topics"]), (name, result.topic_scores)
