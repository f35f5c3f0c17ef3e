"""/train end to end: the real bot, a real worker process, the tiny model on CPU."""
from __future__ import annotations

import asyncio
from importlib import resources

import pytest

CORPUS = resources.files("bot.data").joinpath("demo_corpus.csv").read_bytes()


def job_message(world, message_id):
    return world.standin.message(message_id)


@pytest.mark.timeout(240)
async def test_train_with_attached_csv_reaches_100_percent_with_the_loss_chart(world, bot, worker):
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"persona": "jokes", "steps": 30, "model": "tiny",
                                             "file": ("jokes.csv", CORPUS, "text/csv")})
    await ix.wait_for_response(timeout=5)
    assert "queued" in ix.response["content"] and "Job #1" in ix.response["content"]
    seen = []

    def progress():
        msg = job_message(world, ix.response["id"])
        if not seen or seen[-1] != msg["content"]:
            seen.append(msg["content"])
        return msg if "done:" in msg["content"] or "failed:" in msg["content"] else None

    final = await world.standin.wait_for(progress, timeout=200, what="training to finish")
    assert "failed" not in final["content"], final["content"] + "\n" + worker.output()[-3000:]
    assert "100%" in final["content"] and "step 30/30" in final["content"]
    assert "kept 283" in final["content"]  # the cleaning counts
    # The member saw the bar move on the way (more than the first and last versions).
    assert any("step" in text and "100%" not in text for text in seen), seen
    png = [a for a in final["attachments"] if a["filename"].endswith(".png")]
    assert png and png[0]["data"].startswith(b"\x89PNG")
    samples = final["embeds"][0]
    assert samples["title"] == "Sample outputs" and len(samples["fields"]) == 3
    job = (await bot.store.list_jobs())[0]
    assert job["state"] == "done" and job["result"]["steps_done"] == 30


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
    assert (await bot.store.get_job(1))["state"] == "cancelled"
