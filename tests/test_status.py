"""/status through the real discord.py client and the local Discord stand-in."""

from core import __version__, contract, fleet


async def test_member_runs_status_and_sees_the_answer(world, bot):
    ix = await world.standin.invoke(world.erin, "status", channel=world.general)
    await ix.wait_for_response(timeout=5)
    embed = ix.response["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Version"] == __version__
    assert fields["Database"].startswith("ok")
    assert fields["Workers"].startswith("not seen yet")
    assert not ix.ephemeral


async def test_status_lists_every_worker_and_only_this_servers_jobs_by_name(world, bot):
    # What two workers do every few seconds, through the same queue: one runs a job of
    # this server and one of another server; a third has stopped.
    queue = bot.services.queue
    gpu, cpu, gone = (fleet.register(queue) for _ in range(3))
    fleet.beat(queue, gpu, {"id": "gpu-box-1", "device": "GPU: NVIDIA H100",
                            "running": [{"job": "a", "kind": "train", "persona": contract.persona_key(world.guild.id, "dril")}]})
    fleet.beat(queue, cpu, {"id": "cpu-box", "device": "CPU",
                            "running": [{"job": "b", "kind": "generate", "persona": contract.persona_key(1234, "secret_one")}]})
    fleet.sign_off(queue, gone, {"id": "old-box", "device": "CPU"})
    ix = await world.standin.invoke(world.erin, "status", channel=world.general)
    await ix.wait_for_response(timeout=5)
    fields = {f["name"]: f["value"] for f in ix.response["embeds"][0]["fields"]}
    lines = fields["Workers (2 online)"].splitlines()
    assert lines[0].startswith("`cpu-box` · CPU · online") and lines[0].endswith("running 1 job(s) of another server")
    assert lines[1].startswith("`gpu-box-1` · GPU: NVIDIA H100 · online") and lines[1].endswith("running train dril")
    assert lines[2].startswith("`old-box` · CPU · stopped")
    assert "secret_one" not in str(ix.response)

async def test_a_command_sent_the_moment_the_bot_is_back_online_is_answered(world, bot_handle):
    # The bot opens its services and loads its cogs while discord.py waits for the
    # guilds (bot/client.py); a member who runs /status at that moment (the commands
    # stay registered from the last run) still gets the answer, not an error.
    import asyncio

    from bot.client import ParodyBot

    await bot_handle.start()
    await bot_handle.stop()
    await world.standin.wait_for(lambda: not world.standin.bot_connected, 10, what="the bot to go offline")
    bot = ParodyBot(bot_handle.cfg, guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start(world.standin.bot_token))
    try:
        await world.standin.wait_for(lambda: world.standin.bot_connected, 10, what="the bot to identify")
        ix = await world.standin.invoke(world.erin, "status", channel=world.general)
        await ix.wait_for_response(timeout=5)
        fields = {f["name"]: f["value"] for f in ix.response["embeds"][0]["fields"]}
        assert fields["Version"] == __version__ and fields["Database"].startswith("ok")
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
