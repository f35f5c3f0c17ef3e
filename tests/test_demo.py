"""`parodybot demo` (the README's first command) runs the loop and prints the transcript."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(400)
def test_demo_runs_the_whole_loop(tmp_path):
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "bot", "demo"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=380)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "alice: /status" in out and "parodybot status" in out
    assert "step 400/400" in out and "loss-jokes-job1.png" in out
    assert "candidate #1" in out
    assert "✅ approved (net +3): #1 in the posting queue" in out
    assert "❌ rejected (net -2)" in out
    # The scheduler posted both approved candidates to the outbox, and the messages say so.
    assert out.count("📤 posted (net +3)") == 2
    outbox = (tmp_path / "data" / "outbox.jsonl").read_text().splitlines()
    assert len(outbox) == 2
    assert "Posted by the scheduler" in out and "demo: done" in out
    assert "Traceback" not in out + result.stderr
