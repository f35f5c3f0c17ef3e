"""Near-copy filter: 1,000 candidates against 100,000 training posts.

Ours: ``workers.filters.NearCopyIndex`` (word-bigram inverted index with
prefix filtering, then the exact word-level edit distance on the few posts
found). Anchor: the naive way, the same measure and threshold over every
(candidate, post) pair with rapidfuzz's compiled Levenshtein (the fastest
pairwise baseline here, so the ratio is not flattered), timed on a sample of
candidates and extrapolated to 1,000. Both must give the same answers on
the sample; difflib's character ratio over all pairs (the textbook naive
way) is timed on a smaller sample for reference.

Posts are synthetic but shaped like posts: 3-40 words drawn with a Zipf
law from a vocabulary whose head is the real word frequencies of the jokes
that pyjokes ships (so "the", "a", "to" and friends dominate as in real
text); 1 in 20 candidates is a real post with one to three words changed.

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

from workers.filters import NearCopyIndex, _levenshtein, max_word_edits, words


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
    candidates, planted = [], set()
    for i, c in enumerate(fresh):
        if i % 20 == 7:
            src = rng.choice([p for p in rng.sample(posts, 50) if len(p.split()) >= 8])
            candidates.append(mutate(rng, vocab, src))
            planted.add(i)
        else:
            candidates.append(c)
    print(f"{len(posts)} training posts, {len(candidates)} candidates ({len(planted)} planted near copies)")

    t0 = time.perf_counter()
    index = NearCopyIndex(posts)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = [index.find(c) for c in candidates]
    query = time.perf_counter() - t0
    flagged = {i for i, h in enumerate(hits) if h is not None}
    caught = len(flagged & planted)
    print(f"ours: index build {build:.2f} s, query {query:.3f} s for {len(candidates)} candidates; "
          f"flagged {len(flagged)}, planted caught {caught}/{len(planted)}")
    ours = build + query

    # Anchor: every pair, same measure; sample candidates incl. some planted ones.
    post_words = [words(p) for p in posts]
    sample = sorted(set(rng.sample(range(len(candidates)), args.sample - 2)) | set(sorted(planted)[:2]))
    t0 = time.perf_counter()
    naive = {i: naive_find(candidates[i], post_words) for i in sample}
    per = (time.perf_counter() - t0) / len(sample)
    anchor = per * len(candidates)
    agree = all((naive[i] is None) == (hits[i] is None) for i in sample)
    print(f"anchor (pairwise rapidfuzz word edit distance): {per * 1000:.0f} ms per candidate on "
          f"{len(sample)} candidates -> {anchor:.1f} s for {len(candidates)} (extrapolated); "
          f"same answers as ours on the sample: {agree}")

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
