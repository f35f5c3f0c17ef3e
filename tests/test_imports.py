"""The bot process must never load TensorFlow or gpt-2-simple."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import importlib, pkgutil, sys
import bot, cogs
names = []
for pkg in (bot, cogs):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        names.append(info.name)
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "gpt_2_simple", "keras"))
print(len(names), "modules")
print("HEAVY:", heavy)
"""


def test_bot_and_cogs_never_import_tensorflow():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "HEAVY: []" in result.stdout, result.stdout
    count = int(result.stdout.split()[0])
    assert count >= 8  # every module was really imported, not an empty walk


def test_contract_is_light():
    code = "import sys, core.contract; print(sorted(m for m in sys.modules if m.split('.')[0] in ('discord','tensorflow','aiosqlite','matplotlib')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
