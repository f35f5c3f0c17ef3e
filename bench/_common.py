"""Helpers shared by the benchmarks in bench/ (no TensorFlow here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CACHE = Path(os.environ.get("PARODYBOT_BENCH_CACHE", Path.home() / ".cache" / "parodybot-bench"))


def run_child(cmd: list[str], what: str, **kwargs) -> tuple[dict, list[str]]:
    """Run one measurement in a fresh process; its result is the JSON it
    prints on a ``RESULT `` line. Returns (result, its other stdout lines)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    lines = proc.stdout.splitlines()
    found = [json.loads(x[len("RESULT "):]) for x in lines if x.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        sys.exit(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return found[-1], [x for x in lines if not x.startswith("RESULT ")]


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def ratio_line(name: str, ours: float, anchor: float, unit: str, ratio: float) -> str:
    """The benchmarks' last line: ``NAME: ours X UNIT, anchor Y UNIT, ratio R``."""
    return f"{name}: ours {ours:.4g} {unit}, anchor {anchor:.4g} {unit}, ratio {ratio:.3g}"


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


def joke_corpus(language: str = "en") -> list[str]:
    """The jokes the pyjokes package ships: a real corpus no one here wrote."""
    import pyjokes

    return list(pyjokes.get_jokes(language=language, category="all"))


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) of ``values``, linear between the closest ranks."""
    xs = sorted(values)
    if not xs:
        raise ValueError("no values")
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values) -> float:
    return percentile(values, 50)


def standin_discord_section(standin, guild_ids) -> dict:
    """The ``[discord]`` config section that points the bot at a local DiscordStandin."""
    return {
        "api_base": standin.api_base,
        "gateway_url": standin.gateway_url,
        "guild_ids": [int(g) for g in guild_ids],
        "attachment_hosts": [standin.cdn_host],
    }


def write_standin_config(path: Path, standin, guild_ids, *, log_level: str = "INFO") -> Path:
    """A config.toml at ``path`` for a bot process pointed at a local DiscordStandin."""
    section = standin_discord_section(standin, guild_ids)
    # JSON strings and lists of strings or integers are valid TOML values.
    lines = [f"log_level = {json.dumps(log_level)}", "[discord]"] + [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
