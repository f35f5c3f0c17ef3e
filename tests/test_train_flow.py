"""/train end to end: the real bot, a real worker process, the tiny model on CPU."""
from __future__ import annotations

from importlib import resources

import pytest

from core.contract import persona_key

CORPUS = resources.files("core.data").joinpath("demo_corpus.csv").read_bytes()


# The demo corpus with a post with a hashtag first.
TAGGED = CORPUS.replace(b"tweets\r\n", b"tweets\r\nmy #tagged post about nothing\r\n", 1)


def job_message(world, message_id):
    return world.standin.message(message_id)


def job_ended(world, message_id):
    """The job's message once it says done or failed, else None (for wait_for)."""
    msg = job_message(world, message_id)
    return msg if msg and ("done:" in msg["content"] or "failed:" in msg["content"]) else None


@pytest.fixture
def held_worker(data_dir, tmp_path):
    """A worker that waits at its first sample until the test lets it go on (core/faults.py)."""
    from conftest import WorkerProcess

    release = tmp_path / "release-the-worker"
    proc = WorkerProcess(data_dir, env={"PARODYBOT_HOLD": f"progress-sample:{release}"}).start()
    proc.release = release.touch
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.timeout(240)
async def test_train_with_attached_csv_reaches_100_percent_with_the_loss_chart(world, bot, held_worker, data_dir):
    worker = held_worker
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"persona": "jokes", "steps": 30, "model": "tiny", "limit": 250,
                                             "sample_every": 10,
                                             "strip_hashtags": True, "file": ("jokes.csv", TAGGED, "text/csv")})
    await ix.wait_for_response(timeout=5)
    assert "queued" in ix.response["content"] and "Job #1" in ix.response["content"]
    # Mid-run (the worker waits at its first sample, step 10 of 30), the member sees the
    # bar, the loss on held-out posts (5% by default, measured from step 1) and the sample.
    running = await world.standin.wait_for(
        lambda: "🎲 sample at step 10" in (c := job_message(world, ix.response["id"])["content"]) and c,
        timeout=200, what="the first sample in the progress message")
    assert "step 10/30" in running and "100%" not in running, running
    assert "📉 validation loss" in running, running
    worker.release()
    final = await world.standin.wait_for(
        lambda: job_ended(world, ix.response["id"]),
        timeout=200, what="training to finish")
    assert "failed" not in final["content"], final["content"] + "\n" + worker.output()[-3000:]
    assert "100%" in final["content"] and "step 30/30" in final["content"]
    assert "kept 250" in final["content"]  # the cleaning counts, of the first 250 posts (limit)
    assert "📚 dataset: 250 posts, 250 new · csv:jokes.csv 250" in final["content"]
    dataset = (data_dir / "worker" / "datasets" / persona_key(world.guild.id, "jokes") / "dataset.csv").read_text()
    assert "my post about nothing" in dataset and "#tagged" not in dataset  # strip_hashtags
    assert "📉 validation loss" in final["content"] and "(best" in final["content"]
    png = [a for a in final["attachments"] if a["filename"].endswith(".png")]
    assert png and png[0]["data"].startswith(b"\x89PNG")
    samples = final["embeds"][0]
    assert samples["title"] == "Sample outputs" and len(samples["fields"]) == 3
    job = (await bot.services.store.list_jobs())[0]
    assert job["state"] == "done" and job["result"]["steps_done"] == 30

    # Continue training: the step counter and the loss chart go on from step 30.
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"persona": "jokes", "more_steps": 5})
    await ix.wait_for_response(timeout=5)
    more = await world.standin.wait_for(
        lambda: job_ended(world, ix.response["id"]),
        timeout=120, what="the continuation")
    assert "done: 35 steps" in more["content"] and "➕ continues its model 5 steps more" in more["content"], more["content"]
    assert (await bot.services.store.get_job(2))["result"]["losses"][0][0] == 1  # the chart starts at step 1
    assert len((await bot.services.store.get_job(2))["result"]["losses"]) == 35

    # A new persona can begin from jokes' model instead of the base model.
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"persona": "jokes2", "steps": 3, "start_from": "jokes",
                                             "file": ("jokes.csv", CORPUS, "text/csv")})
    await ix.wait_for_response(timeout=5)
    seeded = await world.standin.wait_for(
        lambda: job_ended(world, ix.response["id"]),
        timeout=120, what="the run that starts from jokes' model")
    assert "done: 3 steps" in seeded["content"] and "🌱 starts from the model of **jokes**" in seeded["content"], \
        seeded["content"]

    # The trained model generates: from a prompt, and with a seed the same candidates again.
    asked = {"persona": "jokes", "count": 3, "prompt": "Why did the", "seed": 11, "top_k": 40}
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options=asked)
    await ix.wait_for_response(timeout=5)
    final = await world.standin.wait_for(
        lambda: job_ended(world, ix.response["id"]),
        timeout=120, what="the generate job")
    assert "done:" in final["content"], final["content"]
    # /train made the persona with the channel it ran in as its curation channel.
    voted = await world.standin.wait_for(
        lambda: (ms := [m["embeds"][0]["description"] for m in world.standin.messages(world.general)
                        if m.get("embeds") and "candidate #" in ((m["embeds"][0].get("author") or {}).get("name") or "")])
        and len(ms) == int(final["content"].split("done: ")[1].split(" ")[0]) and ms,
        timeout=30, what="the candidate messages")
    assert all(text.startswith("Why did the") for text in voted)
    key = persona_key(world.guild.id, "jokes")
    voted = [c["text"] for c in sorted(await bot.services.store.candidates(persona=key), key=lambda c: c["id"])]
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options=dict(asked, to_file=True))
    await ix.wait_for_response(timeout=5)
    again = await world.standin.wait_for(
        lambda: (m := job_message(world, ix.response["id"])) and m["attachments"] and m, timeout=120, what="the file")
    body = world.standin.attachment_bytes(again["attachments"][0]["url"]).decode("utf-8")
    assert body.split("\n" + "=" * 20 + "\n")[:-1] == voted


@pytest.mark.timeout(240)
async def test_cancel_a_running_training(world, bot, worker):
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"persona": "jokes", "steps": 5000, "model": "tiny",
                                             "file": ("jokes.csv", CORPUS, "text/csv")})
    await ix.wait_for_response(timeout=5)
    await world.standin.wait_for(lambda: "step" in job_message(world, ix.response["id"])["content"],
                                 timeout=120, what="training to start")
    choices = await world.standin.autocomplete(world.alice, "cancel", channel=world.general, focused="job",
                                               options={"job": ""})
    assert choices and choices[0]["value"] == 1 and "train jokes" in choices[0]["name"]
    cx = await world.standin.invoke(world.alice, "cancel", channel=world.general, options={"job": 1})
    await cx.wait_for_response(timeout=5)
    assert "Job #1" in cx.response["content"]
    final = await world.standin.wait_for(
        lambda: (m := job_message(world, ix.response["id"])) and "cancelled" in m["content"] and m,
        timeout=120, what="the job to be cancelled")
    assert "checkpoint saved" in final["content"]
    assert (await bot.services.store.get_job(1))["state"] == "cancelled"


@pytest.mark.timeout(300)
async def test_a_sigkilled_worker_resumes_training_from_its_last_checkpoint(world, bot, data_dir, tmp_path):
    from conftest import WorkerProcess

    config = tmp_path / "worker.toml"
    config.write_text("[training]\nsave_every = 5\n")
    worker = WorkerProcess(data_dir, config).start()
    try:
        ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                        options={"persona": "jokes", "steps": 60, "model": "tiny",
                                                 "file": ("jokes.csv", CORPUS, "text/csv")})
        await ix.wait_for_response(timeout=5)
        key = persona_key(world.guild.id, "jokes")  # the worker's folders are named by the persona's key
        run_dir = data_dir / "worker" / "checkpoint" / f"{key}.run"

        def saved_step():
            counter = run_dir / "counter"
            return int(counter.read_text()) if counter.exists() else 0

        await world.standin.wait_for(lambda: saved_step() >= 10, timeout=150, what="a checkpoint at step 10")
        worker.kill()  # SIGKILL the worker and its training child
        killed_at = saved_step()
        assert killed_at < 60
        assert not (data_dir / "worker" / "checkpoint" / key).exists()  # the working checkpoint is untouched

        worker = WorkerProcess(data_dir, config).start()  # a restarted worker picks the job up again
        final = await world.standin.wait_for(
            lambda: job_ended(world, ix.response["id"]),
            timeout=200, what="the resumed run to finish")
        assert "done:" in final["content"], final["content"] + worker.output()[-2000:]
        job = await bot.services.store.get_job(1)
        assert job["result"]["resumed_from"] >= killed_at >= 10
        assert job["result"]["steps_done"] == 60
        assert (data_dir / "worker" / "checkpoint" / key).is_dir()
    finally:
        worker.stop()


@pytest.mark.timeout(300)
async def test_a_worker_started_beside_a_live_one_never_takes_its_job(world, bot, data_dir, tmp_path):
    """Two workers on one folder (one restarted while the other runs): the job stays
    with the live one; only once that one is dead does a restart queue it again."""
    from conftest import WorkerProcess

    config = tmp_path / "worker.toml"
    config.write_text("[training]\nsave_every = 5\n")
    first = WorkerProcess(data_dir, config, name="first").start()
    second = WorkerProcess(data_dir, config, name="second")
    try:
        ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                        options={"persona": "jokes", "steps": 100_000, "model": "tiny",
                                                 "file": ("jokes.csv", CORPUS, "text/csv")})
        await ix.wait_for_response(timeout=5)
        counter = data_dir / "worker" / "checkpoint" / f"{persona_key(world.guild.id, 'jokes')}.run" / "counter"
        await world.standin.wait_for(counter.exists, timeout=150, what="the first worker's first checkpoint")

        second.start()
        await world.standin.wait_for(lambda: "worker ready" in second.output(), timeout=60, what="the second worker")
        assert "running in another live worker; leaving it there" in second.output()
        assert "re-queued" not in second.output()

        first.kill()  # now its worker is gone: a restart takes the job over and resumes it
        second.stop()
        second = WorkerProcess(data_dir, config, name="second").start()
        await world.standin.wait_for(lambda: "re-queued interrupted train job" in second.output(), timeout=60,
                                     what="the restarted worker to queue the job again")
        await world.standin.wait_for(lambda: "resumed from its checkpoint at step" in (world.standin.message(ix.response["id"])["content"] or ""),
                                     timeout=120, what="the job's message to say it resumed")
    finally:
        first.kill()
        second.kill()


@pytest.mark.timeout(300)
async def test_progress_survives_a_bot_restart(world, bot_handle, worker):
    await bot_handle.start()
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"persona": "jokes", "steps": 80, "model": "tiny",
                                             "file": ("jokes.csv", CORPUS, "text/csv")})
    await ix.wait_for_response(timeout=5)
    await world.standin.wait_for(lambda: "step" in job_message(world, ix.response["id"])["content"],
                                 timeout=150, what="training to start")
    await bot_handle.stop()  # the bot goes away while the worker keeps training
    await bot_handle.start()
    final = await world.standin.wait_for(
        lambda: (m := job_message(world, ix.response["id"])) and "done:" in m["content"] and m,
        timeout=200, what="the job to finish after the restart")
    assert "step 80/80" in final["content"]
    assert any(a["filename"].endswith(".png") for a in final["attachments"])


def test_a_running_training_shows_its_latest_sample_and_held_out_loss():
    from cogs.jobs import render_job

    job = {"id": 3, "kind": "train", "persona": persona_key(1, "jokes"), "state": "running",
           "progress": {"state": "running", "phase": "finetuning", "step": 14, "steps": 30, "loss": 4.2,
                        "val_loss": 5.1, "best_val_loss": 5.0, "sample": "my post about *nothing*", "sample_step": 10}}
    text = render_job(job)
    assert "🎲 sample at step 10: my post about \\*nothing\\*" in text  # as plain text, not Markdown
    assert "📉 validation loss 5.10 (best 5.00)" in text
    done = render_job(dict(job, state="done", progress=dict(job["progress"], state="done")))
    assert "sample at step" not in done  # the final message has its samples in their own embed
