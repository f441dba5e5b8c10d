"""newstagger.decoding: boilerplate flags decoded over a whole article, and the penalty's tuning."""

import itertools

import numpy as np
import pytest

from newstagger.decoding import decode_flags
from newstagger.metrics import best_transition_penalty


def brute_force(prob, threshold, penalty):
    """The flags that maximise the decoding objective, by trying every assignment (ties: fewer switches,
    then more boilerplate, which is what the Viterbi pass picks for the cases drawn below), among those that
    keep a content paragraph when any paragraph is under the threshold on its own."""
    prob = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, 1 - 1e-7)
    up, down = np.log(prob / threshold), np.log((1 - prob) / (1 - threshold))
    must_keep_content = bool(np.any(prob < threshold))
    best, best_flags = -np.inf, None
    for flags in itertools.product((False, True), repeat=len(prob)):
        f = np.array(flags)
        if must_keep_content and f.all():
            continue
        value = np.where(f, up, down).sum() - penalty * np.sum(f[1:] != f[:-1])
        if value > best + 1e-12:
            best, best_flags = value, f
    return best_flags


def test_penalty_zero_is_the_threshold_rule():
    prob = np.array([0.1, 0.45, 0.5, 0.9, 0.2])
    assert decode_flags(prob, 0.5).tolist() == [False, False, True, True, False]
    assert decode_flags(prob, 0.5, 0.0).tolist() == (prob >= 0.5).tolist()


def test_viterbi_finds_the_best_assignment():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        prob = rng.random(n) ** rng.choice([0.3, 1.0, 3.0])
        threshold, penalty = float(rng.uniform(0.1, 0.9)), float(rng.choice([0.5, 1.0, 2.0, 4.0]))
        up, down = np.log(np.clip(prob, 1e-7, 1) / threshold), np.log(np.clip(1 - prob, 1e-7, 1) / (1 - threshold))
        got, want = decode_flags(prob, threshold, penalty), brute_force(prob, threshold, penalty)

        def objective(f):
            return np.where(f, up, down).sum() - penalty * np.sum(f[1:] != f[:-1])

        assert objective(got) == pytest.approx(objective(want), abs=1e-9)


def test_an_unsure_paragraph_inside_an_appeal_joins_it_and_a_sure_subhead_stays_alone():
    # a donation appeal after the story: its middle paragraph reads like reporting (0.28)
    appeal = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.28, 1.0, 1.0])
    assert decode_flags(appeal, 0.45, 0.0).tolist()[5] is False
    assert decode_flags(appeal, 0.45, 2.0).tolist() == [False] * 3 + [True] * 5
    # reporting with a subhead the model is unsure of (0.6) and a sure "Advertisement" line (0.999)
    story = np.array([0.01, 0.02, 0.6, 0.01, 0.999, 0.02])
    assert decode_flags(story, 0.45, 2.0).tolist() == [False, False, False, False, True, False]


def test_the_decoding_never_takes_the_last_reporting_paragraph_away():
    # a one-paragraph brief (0.3) and its copyright line: one switch cannot be avoided, and must not make
    # "all boilerplate" the cheapest reading
    assert decode_flags(np.array([0.3, 1.0]), 0.5, 1.0).tolist() == [False, True]
    # a short story between a menu and an appeal: its best paragraph stays content, the unsure one joins the appeal
    page = np.array([0.99, 0.95, 0.35, 0.55, 0.97, 0.99])
    assert decode_flags(page, 0.5, 4.0).tolist() == [True, True, False, True, True, True]
    # the same line inside a longer story is decoded as before: it joins the furniture around it
    story = np.array([0.01, 0.02, 0.03, 0.99, 0.4, 0.99])
    assert decode_flags(story, 0.5, 2.0).tolist() == [False, False, False, True, True, True]
    # furniture throughout (every paragraph over the threshold on its own) is still all boilerplate
    assert decode_flags(np.array([0.6, 0.9, 0.55]), 0.5, 2.0).all()
    # forced lines and empty paragraphs are not content of their own
    assert decode_flags(np.array([0.2, 0.9]), 0.5, 2.0, forced=np.array([True, False])).all()
    assert decode_flags(np.array([0.2, 0.9, 0.9]), 0.5, 2.0, present=np.array([False, True, True])).all()


def test_empty_paragraphs_are_flagged_and_do_not_split_a_run():
    # the story, then an appeal whose unsure middle paragraph (0.3) sits after an empty slot: it joins the appeal
    prob = np.array([0.05, 0.9, 1.0, 0.3, 0.95])
    present = np.array([True, True, False, True, True])
    flags = decode_flags(prob, 0.5, 2.0, present)
    assert flags.tolist() == [False, True, True, True, True]
    # an empty slot between two content paragraphs is flagged (never encoded) but does not split them
    content = decode_flags(np.array([0.1, 1.0, 0.1]), 0.5, 2.0, np.array([True, False, True]))
    assert content.tolist() == [False, True, False]


def test_decoding_refuses_what_it_cannot_decode():
    with pytest.raises(ValueError, match="penalty"):
        decode_flags([0.5, 0.5], 0.5, -1.0)
    with pytest.raises(ValueError, match="threshold"):
        decode_flags([0.5, 0.5], 1.0, 2.0)
    with pytest.raises(ValueError, match="present"):
        decode_flags([0.5, 0.5], 0.5, 1.0, [True])
    # a threshold of 0 or 1 is a legal per-paragraph rule (everything, or nothing above it)
    assert decode_flags([0.2, 0.7], 0.0).tolist() == [True, True]


def test_the_penalty_tuned_is_the_smallest_near_the_best_f1():
    every = np.ones(5, dtype=bool)
    articles = [  # (true flags, probabilities, encoded)
        (np.array([0, 0, 1, 1, 1]), np.array([0.05, 0.1, 0.95, 0.3, 0.95]), every),  # unsure inside an appeal
        (np.array([0, 0, 1, 1, 1]), np.array([0.05, 0.1, 0.95, 0.35, 0.95]), every),
        (np.array([0, 0, 0, 0, 0]), np.array([0.05, 0.1, 0.05, 0.6, 0.05]), every),  # an unsure subhead
    ]
    assert [decode_flags(p, 0.5, 0.0, m).astype(int).tolist() == t.tolist() for t, p, m in articles] == [False] * 3
    penalty = best_transition_penalty(articles, 0.5)
    assert penalty == 0.5  # the smallest of decoding.PENALTIES that gets all three right
    for true, prob, present in articles:
        assert decode_flags(prob, 0.5, penalty, present).astype(int).tolist() == true.tolist()
    # where every paragraph is already right on its own, or there is no boilerplate, no penalty is taken
    plain = [(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8]), np.ones(3, dtype=bool))]
    assert best_transition_penalty(plain, 0.5) == 0.0
    assert best_transition_penalty([(np.zeros(3, dtype=int), np.array([.1, .2, .3]), np.ones(3, dtype=bool))],
                                   0.5) == 0.0


def test_forced_paragraphs_are_boilerplate_and_their_neighbours_are_decoded_knowing_it():
    prob = np.array([0.02, 0.3, 0.4, 0.9, 0.02])
    assert not decode_flags(prob, 0.5, 2.0).any()  # 0.9 alone amid content is not sure enough at penalty 2
    forced = np.array([False, True, False, False, False])
    # the forced line is flagged, and the two after it join it: a block now, not a lone paragraph
    assert decode_flags(prob, 0.5, 2.0, forced=forced).tolist() == [False, True, True, True, False]
    assert decode_flags(prob, 0.5, 0.0, forced=forced).tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="forced: 2 values for 5 paragraphs"):
        decode_flags(prob, 0.5, 1.0, forced=[True, False])
    for bad in (float("inf"), float("nan"), "2", True):
        with pytest.raises(ValueError, match="penalty: must be a finite number >= 0"):
            decode_flags(prob, 0.5, bad)
