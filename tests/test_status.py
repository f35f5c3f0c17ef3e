"""/status through the real discord.py client and the local Discord stand-in."""

from core import __version__, contract


async def test_member_runs_status_and_sees_the_answer(world, bot):
    ix = await world.standin.invoke(world.erin, "status", channel=world.general)
    await ix.wait_for_response(timeout=5)
    embed = ix.response["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Version"] == __version__
    assert fields["Database"].startswith("ok")
    assert fields["Worker"].startswith("not seen yet")
    assert not ix.ephemeral


async def test_status_shows_a_worker_that_beats(world, bot):
    # What a worker does every few seconds, through the same queue.
    contract.beat(bot.services.queue, {"busy": ["train dril"]})
    ix = await world.standin.invoke(world.erin, "status", channel=world.general)
    await ix.wait_for_response(timeout=5)
    fields = {f["name"]: f["value"] for f in ix.response["embeds"][0]["fields"]}
    assert fields["Worker"].startswith("online")
    assert "train dril" in fields["Worker"]
