"""Every cleaning rule, with its count."""
from __future__ import annotations

import pytest

from workers.cleaning import RULES, CleanOptions, clean, clean_text, normalise_whitespace, strip_links
from workers.sources import RawPost


def test_counts_always_present():
    r = clean([])
    assert r.kept == [] and r.dropped == {"retweet": 0, "reply": 0, "empty": 0, "duplicate": 0}
    assert set(RULES) == set(r.dropped)


def test_retweets_by_flag_and_text():
    r = clean([RawPost("RT @dril: no", is_retweet=False), RawPost("quoted thing", is_retweet=True),
               RawPost("rt @x: lower case"), RawPost("ART @ the museum"), RawPost("kept")])
    assert r.kept == ["ART @ the museum", "kept"]
    assert r.dropped["retweet"] == 3 and r.total == 5


def test_retweets_kept_when_asked():
    r = clean([RawPost("RT @dril: yes", is_retweet=True)], CleanOptions(drop_retweets=False))
    assert r.kept == ["RT @dril: yes"] and r.dropped["retweet"] == 0


def test_replies_by_flag_and_leading_mention():
    posts = [RawPost("sure", is_reply=True), RawPost("@friend hello"), RawPost("  @friend_名 hi"),
             RawPost(".@everyone look"), RawPost("hi @friend"), RawPost("email me a@b.com")]
    r = clean(posts)
    assert r.kept == [".@everyone look", "hi @friend", "email me a@b.com"]
    assert r.dropped["reply"] == 3
    r = clean(posts, CleanOptions(leading_mention_is_reply=False))
    assert r.dropped["reply"] == 1 and "@friend hello" in r.kept
    r = clean(posts, CleanOptions(drop_replies=False))
    assert r.dropped["reply"] == 0 and len(r.kept) == 6


def test_html_entities_unescaped_once():
    assert clean_text("fish &amp; chips &lt;3 &gt;:( it&#39;s &quot;ok&quot; &amp;amp;") == \
        "fish & chips <3 >:( it's \"ok\" &amp;"


@pytest.mark.parametrize("text,expected", [
    ("look https://t.co/AbC123 now", "look now"),
    ("ends with a link http://example.com/a?b=c&d=e.", "ends with a link."),
    ("www.example.org/page, then", ", then"),
    ("bare t.co/xyz and pic.twitter.com/AbCdEf", "bare and"),
    ("pic.x.com/abc", ""),
    ("(see https://en.wikipedia.org/wiki/Foo_(bar))", "(see )"),
    ("HTTPS://LOUD.EXAMPLE", ""),
    ("not a link: www or t.com or example.com", "not a link: www or t.com or example.com"),
])
def test_urls_stripped(text, expected):
    assert clean_text(text) == expected


def test_urls_kept_when_asked():
    assert clean_text("a https://t.co/x", CleanOptions(strip_urls=False)) == "a https://t.co/x"


def test_url_only_post_is_empty():
    r = clean([RawPost("https://t.co/abc"), RawPost("pic.twitter.com/xyz   "), RawPost("ok")])
    assert r.kept == ["ok"] and r.dropped["empty"] == 2


def test_mentions_unicode_aware():
    opts = CleanOptions(strip_mentions=True, drop_replies=False)
    assert clean_text("hi @user_名 and @dril and ＠wide, @bob@mastodon.social!", opts) == "hi and and,!"
    assert clean_text("mail a@b.com stays", opts) == "mail a@b.com stays"
    assert clean_text("hi @dril", CleanOptions()) == "hi @dril"


def test_hashtags_unicode_aware():
    opts = CleanOptions(strip_hashtags=True)
    assert clean_text("#café au lait #日本語 #हिन्दी #tag_2 ok", opts) == "au lait ok"
    assert clean_text("we're #1 in C# &#35;", opts) == "we're #1 in C# #"
    assert clean_text("love it #blessed. #wow", opts) == "love it."
    assert clean_text("#tag", CleanOptions()) == "#tag"


def test_whitespace_normalised_line_breaks_kept():
    assert normalise_whitespace("  a \t\t b  \r\n\r\n  c\u00a0\u00a0d  \n\n\n\n\ne\n\n") == "a b\n\nc d\n\ne"
    assert normalise_whitespace("line one\nline two") == "line one\nline two"
    assert normalise_whitespace("zero\u200bwidth") == "zerowidth"


def test_empty_after_cleaning_counted():
    r = clean([RawPost(""), RawPost("   \n\t "), RawPost("#only", is_reply=False)],
              CleanOptions(strip_hashtags=True))
    assert r.kept == [] and r.dropped["empty"] == 3


def test_exact_duplicates_after_cleaning():
    r = clean([RawPost("same thing"), RawPost("same   thing https://t.co/a"), RawPost("same thing\n"),
               RawPost("Same thing")])
    assert r.kept == ["same thing", "Same thing"] and r.dropped["duplicate"] == 2


def test_every_rule_at_once():
    posts = [RawPost("RT @a: x"), RawPost("@b y"), RawPost("https://t.co/q"), RawPost("dup"), RawPost("dup"),
             RawPost("kept &amp; fine")]
    r = clean(posts)
    assert r.kept == ["dup", "kept & fine"]
    assert r.dropped == {"retweet": 1, "reply": 1, "empty": 1, "duplicate": 1}
    assert r.total == len(posts)


def test_plain_strings_accepted():
    assert clean(["a", "a", "b"]).kept == ["a", "b"]


def test_strip_links_helper():
    assert strip_links("a https://x.y/z) b") == "a ) b"
    assert strip_links("so https://t.co/x, then https://t.co/y") == "so, then "


# --- replies: what the source knows wins (issue 13) ---------------------------------


def test_a_post_the_source_says_is_no_reply_is_kept_whatever_it_starts_with():
    # Bluesky: no `reply` on the record; an X archive: no in_reply_to_status_id.
    posts = [RawPost("@alice.bsky.social is the best", is_reply=False),
             RawPost("@dril is my favourite poster", is_reply=False),
             RawPost("who asked", is_reply=True)]  # a reply the source names, though no @ starts it
    result = clean(posts)
    assert result.kept == ["@alice.bsky.social is the best", "@dril is my favourite poster"]
    assert result.dropped["reply"] == 1


def test_the_text_guess_only_where_the_source_cannot_say_and_after_links_go():
    # A one-column CSV cannot say: a leading @mention is taken as a reply, links stripped first.
    result = clean([RawPost("https://t.co/x @dril hi"), RawPost("hi https://t.co/x"), RawPost("@dril hi")])
    assert result.kept == ["hi"] and result.dropped["reply"] == 2
    # ... and a post that the source says is no reply is never guessed about.
    assert clean([RawPost("https://t.co/x @dril hi", is_reply=False)]).kept == ["@dril hi"]
