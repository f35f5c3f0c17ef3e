"""Length limits per platform, measured as each platform measures them."""
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from core import textlimits as tl

REPO = Path(__file__).resolve().parents[1]
FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467"  # one grapheme, 18 bytes


def test_x_weighted_length_counts_urls_cjk_and_emoji():
    assert tl.weighted_length_x("a" * 280) == 280
    assert tl.weighted_length_x("https://example.com/" + "a" * 200) == 23
    assert tl.weighted_length_x("see https://example.com/a/very/long/path?q=1") == 4 + 23
    assert tl.weighted_length_x("日本語") == 6
    assert tl.weighted_length_x("😀") == 2
    assert tl.weighted_length_x(FAMILY) == 2


def test_x_limit_280_weighted():
    assert tl.fits("a" * 280, "x") and not tl.fits("a" * 281, "x")
    assert tl.fits("日" * 140, "x") and not tl.fits("日" * 141, "x")
    assert tl.fits("😀" * 140, "twitter") and not tl.fits("😀" * 141, "x")
    long_url = "https://example.com/" + "p" * 400
    assert tl.fits("a" * 256 + " " + long_url, "x")  # 256 + 1 + 23 = 280
    assert not tl.fits("a" * 257 + " " + long_url, "x")


def test_graphemes_are_extended_clusters():
    assert tl.graphemes("e\u0301a") == ["e\u0301", "a"]
    assert len(tl.graphemes(FAMILY)) == 1
    assert len(tl.graphemes("\U0001F1E9\U0001F1EA\U0001F1EB\U0001F1F7")) == 2  # two flags
    assert tl.grapheme_count("") == 0


def test_bluesky_300_graphemes_and_3000_bytes():
    assert tl.fits("a" * 300, "bluesky") and not tl.fits("a" * 301, "bsky")
    assert tl.fits("e\u0301" * 300, "bluesky")  # 600 code points, 300 graphemes
    assert tl.fits(FAMILY * 160, "bluesky")  # 2,880 bytes
    assert not tl.fits(FAMILY * 170, "bluesky")  # 170 graphemes but 3,060 bytes


def test_mastodon_500_with_urls_as_23_and_remote_mentions_short():
    assert tl.fits("a" * 500, "mastodon") and not tl.fits("a" * 501, "mastodon")
    url = "https://example.com/" + "x" * 300
    assert tl.mastodon_length(f"look {url}.") == 5 + 23 + 1
    assert tl.fits("a" * 476 + " " + url, "mastodon")  # 476 + 1 + 23 = 500
    assert not tl.fits("a" * 477 + " " + url, "mastodon")
    assert tl.mastodon_length("@dril@mastodon.example hi") == len("@dril hi")
    assert tl.mastodon_length("e\u0301") == 1


def test_outbox_has_no_limit_but_a_lone_outbox_uses_x_rules():
    assert tl.fits("a" * 10_000, "outbox")
    only_outbox = tl.limit_for({"outbox"})
    assert only_outbox.platforms == ("x",)
    assert not only_outbox("a" * 281) and only_outbox("a" * 280)
    assert tl.limit_for([]).platforms == ("x",)


def test_limit_for_combines_targets():
    checker = tl.limit_for(["mastodon", "bluesky", "outbox"])
    assert checker.platforms == ("bluesky", "mastodon")
    assert checker("a" * 300) and not checker("a" * 301)
    assert checker.violations("a" * 301) == ["bluesky"]
    assert checker.violations("a" * 501) == ["bluesky", "mastodon"]
    both = tl.limit_for({"twitter", "bsky"})
    assert both.platforms == ("x", "bluesky")
    assert not both("a" * 290) and both.violations("a" * 290) == ["x"]
    assert "X 280" in both.describe()


def test_unknown_platform_is_an_error():
    with pytest.raises(ValueError, match="unknown platform"):
        tl.fits("hi", "myspace")
    with pytest.raises(ValueError):
        tl.limit_for(["x", "friendster"])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=600), st.lists(st.sampled_from(tl.PLATFORMS), max_size=4))
def test_checker_is_the_conjunction_of_fits(text, platforms):
    checker = tl.limit_for(platforms)
    assert checker(text) == all(tl.fits(text, p) for p in checker.platforms)
    assert checker(text) == (checker.violations(text) == [])
    for p in ("x", "bluesky", "mastodon"):
        assert tl.fits(text, p) <= (tl.length(text, p) <= tl.limit(p))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_grapheme_count_never_exceeds_code_points(text):
    assert tl.grapheme_count(text) <= len(text)
    assert "".join(tl.graphemes(text)) == text


def test_module_is_light():
    code = ("import sys, core.textlimits; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'discord','tweepy','twitter_text','regex','tensorflow','aiohttp','atproto_client','mastodon'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
