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
split a run.

One constraint: the decoding never takes an article's last reporting away. When the per-paragraph rule finds
any content (a present, not forced paragraph under the threshold), the decoded flags keep at least one
content paragraph. Without it, the switches that a one-paragraph brief followed by a copyright line (or a lone
story between a menu and an appeal) cannot avoid made "all boilerplate" the cheapest reading, and the article
lost its text and its topics; a page that is furniture throughout (every paragraph over the threshold) is
still all boilerplate. The chain gets a third state for it: boilerplate before any content, boilerplate after
some, and content; the path must end in one of the last two.

The threshold and the penalty are tuned on the validation split (metrics.tune_thresholds) and
saved in the model's config.json (``boilerplate_threshold``, ``boilerplate_transition_penalty``).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS]: log(0) would make one paragraph a veto
# Transition penalties tried when tuning (log-odds units; 0 is the per-paragraph threshold).
PENALTIES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def is_penalty(value) -> bool:
    """Whether ``value`` is a transition penalty: a finite number >= 0 (not a bool). The one rule for the
    decoding, config.json (model_folder) and the Predictor's setter."""
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and 0 <= value < np.inf)


def pairing_problem(threshold: float, penalty: float) -> str | None:
    """Why a boilerplate threshold and a transition penalty cannot decode together, or None: with a penalty
    over 0 the threshold must lie inside (0, 1), where both utilities above are finite. The one rule for the
    decoding, config.json (model_folder) and the Predictor's setters; both values already checked alone."""
    if penalty > 0 and not 0 < threshold < 1:
        return f"{threshold!r} must be inside (0, 1) when boilerplate_transition_penalty is over 0 ({penalty!r})"
    return None


def decode_flags(prob, threshold: float, penalty: float = 0.0, present=None, forced=None) -> np.ndarray:
    """Boilerplate flags [paragraphs] bool for one article.

    ``prob``: boilerplate probabilities [paragraphs] in [0, 1]; ``threshold`` in (0, 1); ``penalty`` a finite
    number >= 0 (log-odds; 0 gives ``prob >= threshold``); ``present`` [paragraphs] bool, False for paragraphs
    that were not encoded (empty): those are flagged and left out of the chain; ``forced`` [paragraphs] bool,
    True for paragraphs known to be boilerplate whatever their score (``newstagger tag --site-repeat``: lines
    an outlet repeats across its articles), which stay in the chain, so that their neighbours are decoded
    knowing it. Ties go to boilerplate, as with the threshold rule. At least one paragraph stays content when
    any present, not forced paragraph is under the threshold (see the module's docstring). Raises ValueError
    for a penalty that is not a finite number >= 0, a penalty over 0 with a threshold outside (0, 1), or masks
    of another length."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    masks = []
    for name, mask, default in (("present", present, True), ("forced", forced, False)):
        mask = np.full(len(prob), default) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        if len(mask) != len(prob):
            raise ValueError(f"{name}: {len(mask)} values for {len(prob)} paragraphs")
        masks.append(mask)
    present, forced = masks
    if not is_penalty(penalty):
        raise ValueError(f"penalty: must be a finite number >= 0, not {penalty!r}")
    flags = (prob >= threshold) | ~present | forced
    where = np.flatnonzero(present)
    if penalty == 0 or len(where) < 2:
        return flags
    problem = pairing_problem(threshold, penalty)
    if problem:
        raise ValueError(f"threshold: {problem}")
    p = np.clip(prob[where], EPS, 1 - EPS)
    content_u = np.log1p(-p) - np.log1p(-threshold)
    content_u[forced[where]] = -np.inf  # a forced paragraph cannot be content
    boiler_u = np.log(p) - np.log(threshold)
    # States: 0 content, 1 boilerplate before any content, 2 boilerplate after some content.
    n = len(p)
    best = np.array([content_u[0], boiler_u[0], -np.inf])  # the best score of a path ending in each state
    came_from = np.zeros((n, 3), dtype=np.int8)
    for i in range(1, n):
        c, b0, b1 = best
        # staying wins ties (fewer switches); a switch into content comes from the better boilerplate state
        if c >= max(b0, b1) - penalty:
            into_content = (0, c)
        else:
            into_content = (1, b0 - penalty) if b0 >= b1 else (2, b1 - penalty)
        into_after = (2, b1) if b1 >= c - penalty else (0, c - penalty)
        came_from[i] = (into_content[0], 1, into_after[0])
        best = np.array([into_content[1] + content_u[i], b0 + boiler_u[i], into_after[1] + boiler_u[i]])
    # a path that never left "boilerplate before content" is allowed only when no paragraph is content on its own
    ends = (2, 0) if np.any(~forced[where] & (p < threshold)) else (2, 1, 0)
    state = max(ends, key=lambda s: best[s])  # ties go to boilerplate (the first of ends)
    path = np.empty(n, dtype=bool)
    for i in range(n - 1, -1, -1):
        path[i] = state != 0
        state = came_from[i, state]
    flags[where] = path
    return flags
