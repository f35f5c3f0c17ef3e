"""Near-copy filter: 1,000 candidates against 100,000 training posts.

Ours: ``workers.filters.NearCopyIndex.find`` (word-bigram inverted index
with prefix filtering, then the exact word-level edit distance on the few
posts found), both of its rules: whole posts with a few words changed, and
slices (8+ words lifted out of a longer post, a few changed). Anchor: the
naive way for the whole-post rule, the same measure and threshold over every
(candidate, post) pair with rapidfuzz's compiled Levenshtein (the fastest
pairwise baseline here, so the ratio is not flattered), timed on a sample of
candidates and extrapolated to 1,000; it must give the same answers as our
whole-post rule on the sample. The anchor does not run the slice rule (no
compiled pairwise approximate-substring matcher is at hand, and a Python one
would flatter the ratio), so ours does more work than the anchor and the
ratio is conservative; the slice rule is checked against a pairwise
plain-Python pass on a few candidates, timed apart. difflib's character
ratio over all pairs (the textbook naive way) is timed on a smaller sample
for reference.

Posts are synthetic but shaped like posts: 3-40 words drawn with a Zipf
law from a vocabulary whose head is the real word frequencies of the jokes
that pyjokes ships (so "the", "a", "to" and friends dominate as in real
text); 1 in 20 candidates is a real post with one to three words changed,
and 1 in 20 is a slice of 8-20 words of a real post of 30+ words with up to
two words changed (within the slice rule's allowance).

    python bench/filters.py [--posts 100000] [--candidates 1000] [--sample 20]
"""
from __future__ import annotations

import argparse
import collections
import difflib
import random
import time

import _common  # noqa: F401  (puts the repo on sys.path)
import numpy as np
import regex
from _common import joke_corpus, ratio_line

from workers.filters import (
    NearCopyIndex,
    _levenshtein,
    _slice_distance,
    max_slice_edits,
    max_word_edits,
    words,
)


def vocabulary(rng: random.Random, size: int = 30000) -> list[str]:
    counts = collections.Counter()
    for joke in joke_corpus():
        counts.update(regex.findall(r"[\p{L}']+", joke.lower()))
    head = [w for w, _ in counts.most_common()]
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "un", "ix", "ba", "de", "gu"]
    seen = set(head)
    while len(head) < size:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            head.append(w)
    return head


def make_posts(rng: random.Random, nprng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks ** 1.07
    p /= p.sum()
    lengths = nprng.integers(3, 41, size=n)
    picks = nprng.choice(len(vocab), size=int(lengths.sum()), p=p)
    posts, at = [], 0
    for k in lengths:
        ws = [vocab[i] for i in picks[at:at + k]]
        at += k
        ws[0] = ws[0].capitalize()
        posts.append(" ".join(ws) + rng.choice(["", ".", "!", "?", " lol", "..."]))
    return posts


def mutate(rng: random.Random, vocab: list[str], post: str) -> str:
    ws = post.split()
    for _ in range(rng.randint(1, min(3, max(1, len(ws) // 8)))):
        ws[rng.randrange(len(ws))] = rng.choice(vocab[:2000])
    return " ".join(ws)


def slice_of(rng: random.Random, vocab: list[str], post: str) -> str:
    ws = post.split()
    size = rng.randint(8, 20)
    start = rng.randrange(len(ws) - size + 1)
    ws = ws[start:start + size]
    for _ in range(rng.randint(0, min(2, max_slice_edits(size)))):
        ws[rng.randrange(len(ws))] = rng.choice(vocab[:2000])
    return " ".join(ws)


def naive_find_slice(cand: str, post_words: list[list[str]]) -> int | None:
    cw = words(cand)
    d = max_slice_edits(len(cw))
    if d is None:
        return None
    for i, pw in enumerate(post_words):
        if len(pw) >= max(4, len(cw) - d) and _slice_distance(cw, pw, d) <= d:
            return i
    return None


def naive_find(cand: str, post_words: list[list[str]]) -> int | None:
    cw = words(cand)
    for i, pw in enumerate(post_words):
        allowed = max_word_edits(max(len(cw), len(pw)))
        if allowed and _levenshtein(cw, pw, allowed) <= allowed:
            return i
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=20)
    args = ap.parse_args()

    rng = random.Random(1234)
    nprng = np.random.default_rng(1234)
    vocab = vocabulary(rng)
    posts = make_posts(rng, nprng, vocab, args.posts)
    fresh = make_posts(rng, nprng, vocab, args.candidates)
    candidates, planted, sliced = [], set(), set()
    for i, c in enumerate(fresh):
        if i % 20 == 7:
            src = rng.choice([p for p in rng.sample(posts, 50) if len(p.split()) >= 8])
            candidates.append(mutate(rng, vocab, src))
            planted.add(i)
        elif i % 20 == 13:
            src = rng.choice([p for p in rng.sample(posts, 50) if len(p.split()) >= 30])
            candidates.append(slice_of(rng, vocab, src))
            sliced.add(i)
        else:
            candidates.append(c)
    print(f"{len(posts)} training posts, {len(candidates)} candidates ({len(planted)} planted near copies, "
          f"{len(sliced)} planted slices)")

    t0 = time.perf_counter()
    index = NearCopyIndex(posts)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = [index.find(c) for c in candidates]
    query = time.perf_counter() - t0
    flagged = {i for i, h in enumerate(hits) if h is not None}
    caught = len(flagged & planted)
    whole_only = {i for i in sliced if index.find_whole(candidates[i]) is not None}
    print(f"ours: index build {build:.2f} s, query {query:.3f} s for {len(candidates)} candidates; "
          f"flagged {len(flagged)}, planted caught {caught}/{len(planted)}, "
          f"planted slices caught {len(flagged & sliced)}/{len(sliced)} "
          f"(whole-post rule alone: {len(whole_only)}), others flagged {len(flagged - planted - sliced)}")
    ours = build + query

    # Anchor: every pair, same measure; sample candidates incl. some planted ones.
    post_words = [words(p) for p in posts]
    sample = sorted(set(rng.sample(range(len(candidates)), args.sample - 2)) | set(sorted(planted)[:2]))
    t0 = time.perf_counter()
    naive = {i: naive_find(candidates[i], post_words) for i in sample}
    per = (time.perf_counter() - t0) / len(sample)
    anchor = per * len(candidates)
    agree = all((naive[i] is None) == (index.find_whole(candidates[i]) is None) for i in sample)
    print(f"anchor (pairwise rapidfuzz word edit distance, whole posts): {per * 1000:.0f} ms per candidate on "
          f"{len(sample)} candidates -> {anchor:.1f} s for {len(candidates)} (extrapolated); "
          f"same answers as our whole-post rule on the sample: {agree}")

    # The slice rule against a pairwise plain-Python pass (slow: a few candidates).
    few = sorted(sliced)[:2] + [i for i in sample if i not in planted][:2]
    t0 = time.perf_counter()
    naive_slices = {i: naive_find_slice(candidates[i], post_words) for i in few}
    per_slice = (time.perf_counter() - t0) / len(few)
    agree = all((naive_slices[i] is None) == (index.find_slice(candidates[i]) is None) for i in few)
    print(f"slice rule, pairwise plain Python: {per_slice:.1f} s per candidate on {len(few)} candidates "
          f"({sum(v is not None for v in naive_slices.values())} slices found); "
          f"same answers as our slice rule: {agree}")

    # Reference: difflib's character ratio over all pairs, tiny sample.
    t0 = time.perf_counter()
    pairs = 0
    for c in candidates[:1]:
        for p in posts[:5000]:
            difflib.SequenceMatcher(None, c.lower(), p.lower()).ratio()
            pairs += 1
    dl = (time.perf_counter() - t0) / pairs * len(posts) * len(candidates)
    print(f"reference: difflib ratio over all pairs would take ~{dl:.0f} s (extrapolated from {pairs} pairs)")
    print(ratio_line("filters", ours, anchor, "s", anchor / ours))


if __name__ == "__main__":
    main()
