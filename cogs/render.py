"""The one place that shapes what the bot sends into Discord's limits, and that
shows text people typed (or a model wrote) as plain text.

Discord refuses a message over 2,000 characters, and an embed over its limits
(title 256, description 4,096, field name 256 and value 1,024, 25 fields,
footer 2,048, author 256, 6,000 in all) with error 50035: the member would see
"the application did not respond". Everything the cogs send goes through
``fit`` / ``fit_lines`` / ``fit_embed``, which cut and say that they did.
"""
from __future__ import annotations

import re

import discord

CONTENT_LIMIT = 2000
EMBED_LIMITS = {"title": 256, "description": 4096, "field_name": 256, "field_value": 1024, "fields": 25,
                "footer": 2048, "author": 256, "total": 6000}

# Markdown that Discord renders (bold, italics, underline, strike, spoilers,
# code, quotes, headers, lists, masked links). A backslash before any of these
# shows the character itself.
_MARKDOWN = re.compile(r"([\\*_~|`>\[\]<])")
_LINE_START = re.compile(r"(?m)^(\s*)(#|-|\+|\d+\.)")  # headers, subtext (-#) and lists
_MENTION = re.compile(r"@(everyone|here)")


def plain(text: str) -> str:
    """``text`` as it would be posted: no Markdown, no mention pills, no masked links.
    (Pings are off anyway: the client's allowed_mentions is none.)"""
    escaped = _LINE_START.sub(r"\1\\\2", _MARKDOWN.sub(r"\\\1", text))
    return _MENTION.sub("@\u200b\\1", escaped)


def fit(text: str, limit: int = CONTENT_LIMIT, *, note: str = "… (cut to fit Discord's limit)") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(note))].rstrip() + note


def fit_lines(lines: list[str], limit: int = CONTENT_LIMIT, *, more: str = "… and {n} more", unread: int = 0) -> str:
    """Lines joined while they fit; the rest counted in a last line ("… and 180 more").
    ``unread``: more lines that were never read (counted too)."""
    out: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        rest = len(lines) - i - 1 + unread
        tail = len(more.format(n=rest + 1)) + 1
        line = fit(line, limit - tail - 1)
        if size + len(line) + 1 + (tail if rest else 0) > limit:
            out.append(more.format(n=len(lines) - i + unread))
            break
        out.append(line)
        size += len(line) + 1
    else:
        if unread:
            out.append(more.format(n=unread))
    return "\n".join(out)


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Cut the embed's parts to Discord's limits, fields last to first when the
    total is over 6,000 (a cut part ends in "…")."""
    L = EMBED_LIMITS
    if embed.title:
        embed.title = fit(embed.title, L["title"], note="…")
    if embed.description:
        embed.description = fit(embed.description, L["description"], note="…")
    if embed.author and embed.author.name:
        embed.set_author(name=fit(embed.author.name, L["author"], note="…"), url=embed.author.url,
                         icon_url=embed.author.icon_url)
    if embed.footer and embed.footer.text:
        embed.set_footer(text=fit(embed.footer.text, L["footer"], note="…"), icon_url=embed.footer.icon_url)
    fields = embed.fields[: L["fields"]]
    embed.clear_fields()
    for f in fields:
        embed.add_field(name=fit(f.name or "​", L["field_name"], note="…"),
                        value=fit(f.value or "​", L["field_value"], note="…"), inline=f.inline)
    while len(embed) > L["total"] and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    if len(embed) > L["total"] and embed.description:
        embed.description = fit(embed.description, len(embed.description) - (len(embed) - L["total"]), note="…")
    return embed
