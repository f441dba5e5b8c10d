"""Boilerplate flags from paragraph probabilities: a page's furniture comes in blocks.

An outlet's furniture sits in runs (the donation appeal after the story, a menu before it, a list of related
headlines, a photo-credit and share-button strip) and its reporting in runs between them. Deciding each
paragraph on its own probability keeps an appeal paragraph that reads like reporting in the middle of the
appeal, and flags a short subhead amid the reporting whose score is just over the threshold. Decoding the
article as a whole (a two-state hidden Markov chain, content and boilerplate, read with the Viterbi
algorithm; jusText's "context-sensitive" pass is a hand-written version of the same idea) picks the flags

    argmax over flags  sum_i u_i(flag_i) - penalty * (number of switches between content and boilerplate)

    u_i(boilerplate) = log(p_i / threshold),  u_i(content) = log((1 - p_i) / (1 - threshold))

so that ``penalty`` 0 is exactly the per-paragraph rule ``p_i >= threshold``, and a larger penalty needs a
paragraph to be surer of itself (log-odds beyond the threshold's by more than 2 x penalty for one paragraph
alone) to break a run. Empty paragraphs (never encoded, flagged) are left out of the chain, so they do not
split a run. The threshold and the penalty are tuned on the validation split (metrics.tune_thresholds) and
saved in the model's config.json (``boilerplate_threshold``, ``boilerplate_transition_penalty``).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS]: log(0) would make one paragraph a veto
# Transition penalties tried when tuning (log-odds units; 0 is the per-paragraph threshold).
PENALTIES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def decode_flags(prob, threshold: float, penalty: float = 0.0, present=None, forced=None) -> np.ndarray:
    """Boilerplate flags [paragraphs] bool for one article.

    ``prob``: boilerplate probabilities [paragraphs] in [0, 1]; ``threshold`` in (0, 1); ``penalty`` a finite
    number >= 0 (log-odds; 0 gives ``prob >= threshold``); ``present`` [paragraphs] bool, False for paragraphs
    that were not encoded (empty): those are flagged and left out of the chain; ``forced`` [paragraphs] bool,
    True for paragraphs known to be boilerplate whatever their score (``newstagger tag --site-repeat``: lines
    an outlet repeats across its articles), which stay in the chain, so that their neighbours are decoded
    knowing it. Ties go to boilerplate, as with the threshold rule. Raises ValueError for a penalty that is not
    a finite number >= 0, a penalty over 0 with a threshold outside (0, 1), or masks of another length."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    masks = []
    for name, mask, default in (("present", present, True), ("forced", forced, False)):
        mask = np.full(len(prob), default) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        if len(mask) != len(prob):
            raise ValueError(f"{name}: {len(mask)} values for {len(prob)} paragraphs")
        masks.append(mask)
    present, forced = masks
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float, np.integer, np.floating)) \
            or not 0 <= penalty < np.inf:
        raise ValueError(f"penalty: must be a finite number >= 0, not {penalty!r}")
    flags = (prob >= threshold) | ~present | forced
    where = np.flatnonzero(present)
    if penalty == 0 or len(where) < 2:
        return flags
    if not 0 < threshold < 1:
        raise ValueError(f"threshold: must be inside (0, 1) with a penalty over 0, not {threshold!r}")
    p = np.clip(prob[where], EPS, 1 - EPS)
    unary = np.stack([np.log1p(-p) - np.log1p(-threshold), np.log(p) - np.log(threshold)], axis=1)  # [n, 2]
    unary[forced[where], 0] = -np.inf  # a forced paragraph cannot be content
    n = len(p)
    best = unary[0].copy()  # best score of a path ending in content (0) / boilerplate (1)
    came_from = np.zeros((n, 2), dtype=np.int8)
    for i in range(1, n):
        stay, switch = best, best[::-1] - penalty
        came_from[i] = np.where(stay >= switch, (0, 1), (1, 0))  # staying wins ties: fewer switches
        best = np.maximum(stay, switch) + unary[i]
    state = 1 if best[1] >= best[0] else 0
    path = np.empty(n, dtype=bool)
    for i in range(n - 1, -1, -1):
        path[i] = state == 1
        state = came_from[i, state]
    flags[where] = path
    return flags
