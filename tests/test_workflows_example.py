"""examples/workflows.py runs as docs/workflows.md says: a worker on its handlers, then its producer
prints the chain's and the chord's results."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.conftest import ROOT, cli_env


def test_the_workflows_example_runs_a_chain_and_a_chord(
    spawn: Callable[..., subprocess.Popen[str]], redis_url: str, namespace: str
) -> None:
    spawn("worker", "--app", "examples.workflows", "--concurrency", "2", "--pool", "threads")
    produced = subprocess.run(
        [sys.executable, "-m", "examples.workflows"],
        cwd=ROOT,
        env=cli_env(redis_url, namespace),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.splitlines() == [
        "chain: {'stored': 'example.org'}",
        "chord: ['cat-128.png', 'cat-256.png', 'cat-64.png']",
    ]


def test_the_workflows_page_shows_the_example_file() -> None:
    page = (ROOT / "docs" / "workflows.md").read_text()
    assert '--8<-- "examples/workflows.py"' in page
