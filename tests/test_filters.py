"""The candidate filters, on crafted cases (no model needed)."""
import random

import pytest

from workers.filters import (
    END,
    FILTERS,
    SLICE_MIN_WORDS,
    START,
    Blocklist,
    NearCopyIndex,
    filter_candidates,
    is_repetitive,
    max_slice_edits,
    max_word_edits,
    normalize,
)

TRAINING = [
    "the council has voted 7 to 2 to rename the duck pond and the ducks were not consulted",
    "whoever said money can't buy happiness has never bought a bag of warm croissants",
    "I love my dog so much",
    "thank you so much",
    "good morning everyone",
    "hot take: stairs are just a slow elevator you have to do yourself",
]


def run(raws, **kw):
    kw.setdefault("training_posts", TRAINING)
    return filter_candidates(raws, **kw)


def fin(text):
    return text + END



def random_edits(rng, ws: list[str], vocab: list[str], n: int) -> list[str]:
    """``ws`` with ``n`` random word substitutions, insertions and deletions."""
    ws = list(ws)
    for _ in range(n):
        op, i = rng.random(), rng.randrange(len(ws))
        if op < 0.4:
            ws[i] = rng.choice(vocab)
        elif op < 0.7:
            ws.insert(i, rng.choice(vocab))
        elif len(ws) > 1:
            ws.pop(i)
    return ws

def test_every_key_present_and_clean_output():
    r = run([fin("a perfectly fine new post"), fin("\n" + START + "  another fine one here  ")])
    assert set(r.dropped) == set(FILTERS)
    assert all(v == 0 for v in r.dropped.values())
    assert r.candidates == ["a perfectly fine new post", "another fine one here"]
    for c in r.candidates:
        assert START not in c and END not in c and c == c.strip()


def test_text_after_the_end_marker_is_ignored():
    r = run([fin("first post") + "\n" + START + "second post"])
    assert r.candidates == ["first post"]


def test_unfinished():
    r = run(["no end marker here", START + "still no end", "a " + START + " b" + END])
    assert r.dropped["unfinished"] == 3 and r.candidates == []


def test_garbled_marker_pieces():
    r = run(["<||>|>I." + END, "a post with <|endo in it" + END, "fine post here" + END])
    assert r.dropped["garbled"] == 2 and r.candidates == ["fine post here"]


def test_empty():
    r = run([END, fin("   \n\t "), fin(START), fin("\u200b\u200b")])
    assert r.dropped["empty"] == 4


def varied(n, base, step=1):
    return "".join(chr(base + (i * step) % 80) for i in range(n))


def prose(n_chars):
    words = "the ducks filed an appeal against the council about bread rights and moon".split()
    out, i = [], 0
    while len(" ".join(out)) < n_chars:
        out.append(f"{words[i % len(words)]}{i}")
        i += 1
    return " ".join(out)[:n_chars].strip()


def test_too_long_for_x_by_weighted_length():
    ascii_ok = prose(280)
    cjk = varied(141, 0x4E00)  # 141 CJK characters weigh 282 > 280
    emoji = varied(141, 0x1F600)  # 141 emoji weigh 282
    r = run([fin(ascii_ok), fin(cjk), fin(emoji), fin(varied(140, 0x4E00)), fin(prose(281))])
    assert r.fates == [None, "too_long", "too_long", None, "too_long"]


def test_too_long_for_any_platform():
    text = prose(299)
    assert run([fin(text)], platforms=("mastodon",)).candidates
    assert run([fin(text)], platforms=("bluesky",)).candidates
    assert run([fin(text)], platforms=("mastodon", "x")).dropped["too_long"] == 1
    assert run([fin(text)], platforms=("outbox",)).dropped["too_long"] == 1  # outbox only: X's rule
    with pytest.raises(ValueError):
        run([fin("x")], platforms=("myspace",))


def test_verbatim_after_normalisation():
    r = run([
        fin("Whoever said money CAN'T buy happiness, has never bought a bag of warm croissants!!"),
        fin("  I   love my dog so much.  "),
        fin("ｔｈａｎｋ ｙｏｕ ｓｏ ｍｕｃｈ"),  # full-width: NFKC
    ])
    assert r.dropped["verbatim"] == 3


def test_near_copy_one_or_two_words_changed():
    r = run([
        fin("the council has voted 7 to 2 to rename the goose pond and the ducks were not consulted"),
        fin("whoever said money can't buy joy has never bought a box of warm croissants"),
        fin("hot take: stairs are just a slow escalator you have to do yourself"),
        fin("I love my cat so much"),  # 6 words, 1 changed
    ])
    assert r.fates == ["near_copy"] * 4


def test_near_copy_leaves_short_posts_sharing_common_words_alone():
    r = run([
        fin("thank you very much"),  # stock phrase, 4 words
        fin("good morning world"),
        fin("I love pizza so much"),  # 2 edits in 6 words
        fin("the council has a new logo and nobody likes it"),
        fin("money can't buy happiness but it can buy snacks"),
        fin("you have to do it yourself"),
    ])
    assert r.candidates and r.dropped["near_copy"] == 0 and r.dropped["verbatim"] == 0


def test_max_word_edits_is_a_quarter():
    assert [max_word_edits(n) for n in (1, 4, 5, 7, 8, 12, 40)] == [0, 0, 1, 1, 2, 3, 10]


def test_near_copy_index_agrees_with_brute_force():
    rng = random.Random(7)
    vocab = ["the", "a", "to", "of", "and", "I", "you", "cat", "dog", "pond", "duck", "bread", "moon",
             "tired", "coffee", "monday", "why", "is", "my", "so", "very", "today", "never", "again"]
    posts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 14))) for _ in range(400)]
    index = NearCopyIndex(posts)
    from workers.filters import _levenshtein, words

    def brute(text):
        cw = words(text)
        for p in posts:
            pw = words(p)
            allowed = max_word_edits(max(len(cw), len(pw)))
            if len(pw) >= 4 and allowed and _levenshtein(cw, pw, allowed) <= allowed:
                return True
        return False

    queries = []
    for p in rng.sample(posts, 100):
        queries.append(" ".join(random_edits(rng, p.split(), vocab, rng.randint(0, 3))))
    queries += [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 14))) for _ in range(100)]
    for q in queries:
        assert (index.find_whole(q) is not None) == brute(q), q


# A real post of 60 words; a candidate lifted out of it is far more than a
# quarter away from the whole post, so only the slice rule catches it.
LONG_POST = (
    "last night the council met in the library and after three hours of shouting about parking "
    "they finally agreed that the duck pond will be drained in spring so the ducks must find a new "
    "home by april and nobody has told the ducks yet which seems unfair because I am so "
    "tired of this town deciding things for everyone"
)
SLICE = "duck pond will be drained in spring so the ducks"  # words 22-31 of LONG_POST


def test_long_post_and_slice_are_what_the_tests_say():
    assert len(LONG_POST.split()) == 60 and SLICE in LONG_POST and len(SLICE.split()) == 10
    assert max_word_edits(60) < 50  # the whole-post rule cannot see it


def test_slice_of_a_long_real_post_is_a_near_copy():
    training = TRAINING + [LONG_POST]
    r = run([
        fin(SLICE),
        fin("Duck pond will be DRAINED in spring, so the ducks..."),  # normalisation
        fin("duck pond will be drained in summer so the ducks"),  # one word changed
        fin("duck pond will be emptied in spring so the ducks"),  # one word changed
        fin("duck pond will be drained in the spring so the ducks"),  # one word inserted
        fin("duck pond will be drained in spring so ducks"),  # one word deleted
        fin("the village duck pond will be drained in late spring so the ducks"),  # two inserted (13 words)
        fin("they finally agreed that the duck pond will be drained"),  # another 10-word slice
    ], training_posts=training)
    assert r.fates == ["near_copy"] * 8
    assert r.dropped["near_copy"] == 8 and r.candidates == []
    # The same candidates against the short posts alone: nothing to copy.
    assert run([fin(SLICE)]).candidates == [SLICE]


def test_slice_rule_leaves_stock_phrases_and_short_posts_alone():
    training = TRAINING + [LONG_POST]
    kept = [
        "I am so tired of this",  # a 6-word run of LONG_POST, but a stock phrase: too short
        "honestly I am so tired of this",  # 6 of 7 words a run of LONG_POST: still too short
        "I am so tired of this weather lol",  # 8 words, 6 of them a run: 2 new words are > 0 allowed
        "the ducks must find a better lawyer before the vote in may",  # shares "the ducks must find a"
        "after three hours of yoga I finally feel like a person again",  # shares "after three hours of"
        "nobody has told me anything about the new parking rules either",  # "nobody has told", "parking"
        "the duck pond will be drained?? the ducks deserve better than this",  # 6-word run + new words
    ]
    r = run([fin(t) for t in kept], training_posts=training)
    assert r.candidates == kept, r.fates
    assert r.dropped["near_copy"] == 0 and r.dropped["verbatim"] == 0


def test_max_slice_edits():
    assert SLICE_MIN_WORDS == 8
    assert [max_slice_edits(n) for n in (4, 7)] == [None, None]
    # at least 8 words matched in order, and at most a quarter of the candidate changed
    assert [max_slice_edits(n) for n in (8, 9, 10, 11, 12, 15, 16, 40)] == [0, 1, 2, 2, 3, 3, 4, 10]


def full_slice_distance(a, b):
    """Smallest edit distance between a and any run of b, by the full table."""
    prev = list(range(len(a) + 1))
    best = prev[-1]
    for y in b:
        cur = [0]
        for i in range(1, len(a) + 1):
            cur.append(min(prev[i] + 1, cur[i - 1] + 1, prev[i - 1] + (a[i - 1] != y)))
        prev = cur
        best = min(best, cur[-1])
    return best


def test_slice_distance_matches_the_full_table():
    from workers.filters import _slice_distance

    rng = random.Random(3)
    for _ in range(3000):
        k = rng.randint(1, 5)
        a = [rng.randrange(k) for _ in range(rng.randint(0, 10))]
        b = [rng.randrange(k) for _ in range(rng.randint(0, 25))]
        cutoff = rng.randint(0, 5)
        assert _slice_distance(a, b, cutoff) == min(full_slice_distance(a, b), cutoff + 1), (a, b, cutoff)


def test_slice_index_agrees_with_brute_force():
    rng = random.Random(17)
    vocab = ["the", "a", "to", "of", "and", "I", "you", "cat", "dog", "pond", "duck", "bread", "moon",
             "tired", "coffee", "monday", "why", "is", "my", "so", "very", "today", "never", "again",
             "council", "vote", "spring", "rain", "lunch", "nap"]
    posts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))) for _ in range(300)]
    index = NearCopyIndex(posts)
    from workers.filters import words

    def brute(text):
        cw = words(text)
        d = max_slice_edits(len(cw))
        return d is not None and any(
            len(words(p)) >= 4 and full_slice_distance(cw, words(p)) <= d for p in posts)

    queries = []
    for p in rng.sample([p for p in posts if len(p.split()) >= 12], 80):
        ws = p.split()
        i = rng.randrange(len(ws) - 7)
        ws = ws[i:i + rng.randint(7, 16)]
        queries.append(" ".join(random_edits(rng, ws, vocab, rng.randint(0, 4))))
    queries += [" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 16))) for _ in range(80)]
    answers = [index.find_slice(q) is not None for q in queries]
    assert answers == [brute(q) for q in queries]
    assert 20 < sum(answers) < len(queries)  # both kinds of answer are exercised


def test_repetition():
    loops = [
        "I am the best. I am the best. I am the best. I am the best.",
        "ha " * 12,
        "line one is long enough\nline one is long enough",
        "no\nno\nno",
        "!" * 60,
        "lol" * 20,
        "we need to talk about the ducks and we need to talk about the ducks",
    ]
    for text in loops:
        assert is_repetitive(text), text
    fine = [
        "nooooooooooooooooo",
        "ha ha ha",
        "hahahahahaha that is so funny",
        "I like ducks. I like geese. I like swans.",
        "the council has voted 7 to 2 to rename the duck pond",
    ]
    for text in fine:
        assert not is_repetitive(text), text
    r = run([fin(t) for t in loops[:3]])
    assert r.dropped["repetition"] == 3


def test_duplicates_within_batch_and_earlier():
    r = run(
        [fin("Ducks are people too"), fin("ducks are people, too!"), fin("a brand new thought"),
         fin("Old news from yesterday")],
        earlier_candidates=["old news from yesterday"],
    )
    assert r.fates == [None, "duplicate", None, "duplicate"]
    assert r.dropped["duplicate"] == 2


def test_blocklist_whole_word_case_and_unicode():
    block = ["darn", "Straße", "crème brûlée", "猫"]
    texts = [
        "well DARN it",  # case
        "darnation is a word",  # not a whole word: kept
        "the STRASSE is closed",  # casefold ß == ss
        "I ate a Crème   Brûlée today",  # phrase, spacing
        "ｄａｒｎ full-width",  # NFKC
        "我的猫很可爱",  # no-space script: substring
        "undarned socks",  # kept
    ]
    r = run([fin(t) for t in texts], blocklist=block)
    assert r.fates == ["blocked", None, "blocked", "blocked", "blocked", "blocked", None]
    assert not Blocklist([])


def test_first_filter_wins_and_counts_add_up():
    raws = [fin("thank you so much"), "unfinished", fin("a" * 400), fin("fresh post here")]
    r = run(raws)
    assert sum(r.dropped.values()) + len(r.candidates) == len(raws)
    assert r.fates == ["verbatim", "unfinished", "too_long", None]


def test_normalize():
    assert normalize("Don't  STOP,  me now!") == normalize("dont stop me now")
    assert normalize("...") != normalize("!!!")
    assert normalize("Café, CRÈME brûlée!") == normalize("cafe\u0301 crème brûlée")


def test_ascii_fast_path_matches_the_unicode_rules():
    import unicodedata

    from workers import filters

    def slow(text):
        base = unicodedata.normalize("NFKC", text).casefold()
        key = " ".join(filters._PUNCT.sub(" ", filters._APOSTROPHES.sub("", base)).split())
        return key if key else " ".join(base.split())

    rng = random.Random(5)
    alphabet = [chr(i) for i in range(32, 127)] + ["\n", "\t"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert normalize(text) == slow(text), repr(text)


def test_edit_distance_without_rapidfuzz(monkeypatch):
    from workers import filters

    def full(a, b):
        d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        return d[-1][-1]

    monkeypatch.setattr(filters, "_rf_levenshtein", None)
    rng = random.Random(11)
    for _ in range(500):
        a = [rng.randrange(5) for _ in range(rng.randint(0, 9))]
        b = [rng.randrange(5) for _ in range(rng.randint(0, 9))]
        cutoff = rng.randint(0, 4)
        assert filters._levenshtein(a, b, cutoff) == min(full(a, b), cutoff + 1)
    index = NearCopyIndex(TRAINING)
    assert index.find("I love my cat so much") is not None
    # The slice rule gives the same answers without rapidfuzz (it is plain Python either way).
    index = NearCopyIndex(TRAINING + [LONG_POST])
    assert index.find(SLICE) is not None
    assert index.find("duck pond will be drained next spring so the ducks") is not None
    assert index.find("I am so tired of this weather lol") is None


def test_mentions_are_dropped_or_counted_defused_as_the_persona_says():
    from core.mentions import ZWSP, defuse, for_publishing, has_mention
    from workers.filters import END, filter_candidates

    texts = ["thanks @dril for nothing" + END, "mail me at me@example.com" + END, "no one here" + END]
    kept = filter_candidates(texts, training_posts=[], mentions="drop")
    assert kept.candidates == ["mail me at me@example.com", "no one here"] and kept.dropped["mention"] == 1
    assert filter_candidates(texts, training_posts=[], mentions="keep").dropped["mention"] == 0
    # Under "defuse" the post must still fit once defused (one more character per mention).
    import random
    rng = random.Random(1)
    words = " ".join("".join(rng.choice("bcdfghjklmnpqrstvwz") + rng.choice("aeiou") for _ in range(3)) for _ in range(60))
    full = ("@dril " + words)[:280].strip()
    full = full + "x" * (280 - len(full))
    assert len(full) == 280
    assert filter_candidates([full + END], training_posts=[], mentions="keep").candidates == [full]
    assert filter_candidates([full + END], training_posts=[], mentions="defuse").dropped["too_long"] == 1

    assert defuse("hi @dril and ＠someone, (@x_y) @a@mastodon.social") == \
        f"hi @{ZWSP}dril and ＠{ZWSP}someone, (@{ZWSP}x_y) @{ZWSP}a@mastodon.social"
    assert defuse("me@example.com #@ a @ b") == "me@example.com #@ a @ b"
    assert not has_mention(defuse("@dril @dril"))
    assert for_publishing("@dril", "keep") == "@dril" and for_publishing("@dril", "drop") == f"@{ZWSP}dril"
