"""How the command line names a persona: ``NAME`` when only one server has a
persona of that name, ``GUILD_ID/NAME`` otherwise (DESIGN: the CLI)."""
from __future__ import annotations

from core.config import Config
from core.contract import BadInput, check_persona_name, persona_key


def split_ref(ref: str) -> tuple[int | None, str]:
    guild, sep, name = ref.strip().rpartition("/")
    if sep and not guild.isdigit():
        raise BadInput(f"persona {ref!r} is not allowed: write NAME (1 to 32 characters from a-z, 0-9 and _) "
                       "or GUILD_ID/NAME, e.g. dril or 123456789012345678/dril")
    return (int(guild) if sep else None), check_persona_name(name)


async def find_in_store(store, ref: str) -> dict | None:
    """The bot's persona ``ref`` names, None when none has that name; BadInput when
    ``NAME`` is ambiguous (the message lists the GUILD_ID/NAME forms to use)."""
    guild_id, name = split_ref(ref)
    if guild_id is not None:
        return await store.find_persona(guild_id, name)
    found = await store.personas_named(name)
    if len(found) > 1:
        forms = ", ".join(f"{p['guild_id']}/{name}" for p in found)
        raise BadInput(f"more than one server has a persona {name!r}: name one of {forms}")
    return found[0] if found else None


async def require_in_store(store, ref: str) -> dict:
    persona = await find_in_store(store, ref)
    if persona is None:
        raise BadInput(f"there is no persona {ref!r} (`/persona list` in Discord shows them)")
    return persona


def worker_key(cfg: Config, ref: str) -> str:
    """The worker-side key (folders) for ``ref``. Asks the bot's database when this
    machine has one; a worker machine without it computes the key from
    ``GUILD_ID/NAME``, and a bare ``NAME`` it does not know is a dataset of this
    worker's own (the key of personas from before guilds, too)."""
    import asyncio

    guild_id, name = split_ref(ref)
    if cfg.db_path.exists():
        from bot.store import Store

        async def look() -> dict | None:
            store = await Store.open(cfg.db_path)
            try:
                return await find_in_store(store, ref)
            finally:
                await store.close()

        persona = asyncio.run(look())
        if persona is not None:
            return persona["key"]
    return persona_key(guild_id, name) if guild_id is not None else name
