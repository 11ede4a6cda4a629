"""The docs' shell samples, run: every command of a page's ```bash/```console/```sh blocks runs in
order, in one bash, in a fresh namespace on the test Redis, with `taskq` and `python` the ones under
test, and must exit with the status the page implies (0, or the `exit N` its comment says). Output a
page shows (`$ ` console lines, or `# {...}` comment lines right under a command) must match.

What cannot run as written (it runs until stopped, installs, needs a container runtime or another
host) is in each page's `skip` with the reason, or in `instead` with the bounded equivalent that runs
in its place. State a page's text assumes (a dead task, a worker running in another terminal) is set
up by the page's `given`/`before` lines, listed here explicitly. api.md's curl lines go to one real
`taskq api` process, started once for this module with a token: `api_line` is the only rewriting."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from taskq_cli.protocol.keys import NamespaceKeys
from tests.conftest import ROOT, cli_env
from tests.support import free_port, kill_group, popen_taskq, until
from tests.support.cli_lines import SHELL_BLOCK

DOCS = ROOT / "docs"
TOKEN = "doc-samples-token"
PAGE_TIMEOUT = 90.0  # seconds for one page's whole script; each page takes a few
DEAD = "3f2a9c0d1e6f47a8b9c0d1e2f3a4b5c6"  # the ids the pages show, as short prefixes: 3f2a9c, 8b1e07
SCHEDULED = "8b1e07c4d2a94f0e9f3a1b2c3d4e5f60"
A_DEAD_TASK = (  # a send_email in "emails" that goes dead at once (not an address: Fail, no retry)
    f'taskq enqueue send_email \'{{"to": "nobody"}}\' --queue emails --id {DEAD} >/dev/null\n'
    "taskq worker --app examples.tasks --queues emails --burst --pool threads 2>/dev/null\n"
)
A_WORKER = "taskq worker --app tasks --pool threads >/dev/null 2>&1 &  # the page's other terminal\n"
LONG_RUNNING = "runs until stopped"


@dataclass(frozen=True)
class Page:
    """How one page's samples run. Keys of skip/instead/before are commands as shown, comment dropped."""

    given: str = ""  # shell lines run first: the state the page's text assumes
    skip: Mapping[str, str] = field(default_factory=dict)  # command -> why it cannot run here
    skip_blocks: Mapping[str, str] = field(default_factory=dict)  # a block's first line -> why
    instead: Mapping[str, str] = field(default_factory=dict)  # command -> bounded equivalent
    before: Mapping[str, str] = field(default_factory=dict)  # command -> shell lines run just before


REGENERATE_COMPLETIONS = (
    "for sh in bash zsh fish; do _TASKQ_COMPLETE=source_$sh taskq > completions/taskq.$sh; done"
)
PACKAGING = "builds or installs the package: tests/test_packaging.py builds the wheel and installs it"
PAGES: dict[str, Page] = {
    "api.md": Page(
        given=A_DEAD_TASK.replace(DEAD, "3f2a9c"),  # /dlq/retry's sample retries the dead 3f2a9c
        skip={
            "pip install 'taskq-cli[api]'": PACKAGING,
            "taskq api": f"{LONG_RUNNING}: the module's `taskq api` (free port, token) answers the curls",
        },
        skip_blocks={
            "cat > single.lua <<'EOF'": "the benchmark: needs wrk, starts its own redis-server on fixed "
            "ports for 10 s; bench/ and docs/benchmarks.md keep its figures",
        },
    ),
    "dashboard.md": Page(
        skip={
            "pip install 'taskq-cli[api]'": PACKAGING,
            "TASKQ_API_TOKEN=$(cat token) taskq api --host 0.0.0.0": f"{LONG_RUNNING}, on every address",
            "TASKQ_SCREENSHOTS=1 pytest tests/test_dashboard.py": "a test run that needs Chromium and "
            "rewrites docs/img/; tests/test_dashboard.py runs in the suite",
        },
        instead={"taskq api": "curl -sf -o /dev/null http://API/ui/  # the module's API serves the page"},
    ),
    "flow-control.md": Page(),
    "getting-started.md": Page(
        given='printf \'%s\\n\' \'{"name": "send_email", "payload": {"to": "c@example.com"}}\''
        " > examples/tour/batch.jsonl  # the batch.jsonl the page's reader writes\n",
        skip={
            "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[embedded]' && taskq dev "
            "--app examples.tasks --enqueue examples/demo.jsonl --exit-when-done": "installs into a venv; "
            "tests/test_dev.py runs this `taskq dev` line and tests/test_packaging.py the install",
            "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' && ruff check . && "
            "ruff format --check . && mypy && lint-imports && pytest && pytest -m soak": (
                "the lint and the test suite itself"
            ),
            "python -m pip install build && python -m build": PACKAGING,
            "pip install 'dist/taskq_cli-0.1.0-py3-none-any.whl[api]'": PACKAGING,
            "pipx install dist/taskq_cli-0.1.0-py3-none-any.whl": PACKAGING,
        },
        # `taskq task wait` needs a worker: the one "running" since "A worker" above, on the tour's app
        before={'id=$(taskq enqueue send_email \'{"to": "a@example.com"}\')': A_WORKER},
    ),
    "guarantees.md": Page(
        skip={
            "python tools/soak.py": "40,000 tasks, a minute on 2 cores: tests/test_soak.py runs a small soak",
            "python tools/soak.py --long": "the release check: 100,000 tasks, minutes",
        },
    ),
    "index.md": Page(
        given="cd examples/tour  # where the page's tasks.py is\n",
        instead={"taskq worker --app tasks": "taskq worker --app tasks --burst"},
    ),
    "observability.md": Page(
        given="cd examples/tour  # the page's `--app tasks`\n",
        instead={
            "taskq worker --app tasks --metrics-port 9464": "taskq worker --app tasks --metrics-port $PORT "
            "--burst",
            "taskq worker --app tasks --metrics-port 9464 --metrics-host 0.0.0.0": "taskq worker --app "
            "tasks --metrics-port $PORT --metrics-host 0.0.0.0 --burst",
        },
    ),
    "operating.md": Page(
        given=A_DEAD_TASK
        + f"taskq enqueue send_email '{{}}' --queue emails --delay 1h --id {SCHEDULED} >/dev/null\n",
        skip={
            "taskq stats --watch": f"{LONG_RUNNING} (Ctrl-C): tests/test_stats_watch.py drives it",
            "source completions/taskq.zsh": "zsh syntax (the samples run in bash): tests/test_completions.py "
            "loads it in zsh",
            "cp completions/taskq.fish ~/.config/fish/completions/": "installs into the user's fish config: "
            "tests/test_completions.py loads it in fish",
            REGENERATE_COMPLETIONS: "rewrites completions/ in the repository: tests/test_completions.py "
            "checks they are what this generates",
        },
    ),
    "production.md": Page(
        skip={
            "TASKQ_API_TOKEN=$(openssl rand -hex 32) docker compose up --build": "needs a container runtime: "
            "tests/test_deploy.py checks the compose file",
            "docker compose exec worker taskq stats": "needs the compose deployment above",
            "docker compose exec worker taskq doctor": "needs the compose deployment above",
            "export TASKQ_REDIS_URL=redis+cluster://10.0.0.1:7000,10.0.0.2:7000": "a deployment's addresses: "
            "tests/cluster/ runs these URL forms on a local Cluster and Sentinel",
            "export TASKQ_REDIS_URL=redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/mymaster/0": "as above",
            "taskq enqueue report '{}' --durable": "needs a replica to acknowledge (exit 1 after 5 s without "
            "one): tests/test_docs.py runs the durable example",
        },
    ),
    "retries.md": Page(given=A_DEAD_TASK),
    "scheduling.md": Page(),
    "workers.md": Page(
        given="cd examples/tour  # the page's `--app tasks`\n",
        instead={
            "taskq worker --app tasks --queues high,default,low --concurrency 8": "taskq worker --app tasks "
            "--queues high,default,low --concurrency 8 --burst",
            "taskq worker --app tasks --queues high:5,low:1": "taskq worker --app tasks --queues "
            "high:5,low:1 --burst",
        },
        skip={"taskq scheduler": f"{LONG_RUNNING}: tests/test_scheduler_ticks.py runs schedulers"},
    ),
    "workflows.md": Page(
        instead={
            "taskq worker --app examples.workflows": "taskq worker --app examples.workflows --pool threads "
            ">/dev/null 2>&1 &  # terminal 1, in the background"
        },
    ),
}
API_PAGES = {"api.md", "dashboard.md"}  # their curl lines go to the module's `taskq api`
PARALLEL = 4  # pages run at once
OPTIONAL_TOOLS = ("jq",)  # a line using one is skipped where it is not installed (.ci/run installs it)


# -- reading the samples --------------------------------------------------------------------------


@dataclass
class Command:
    text: str  # as the page shows it (continuations joined), comment kept
    key: str  # comment dropped: what skip/instead/before name
    exit: int  # the status the page implies
    shown: list[str] = field(default_factory=list)  # the output the page shows under it


def balanced(text: str) -> bool:
    """The text is whole shell words (no quote left open, no trailing backslash)."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        list(lexer)
    except ValueError:
        return False
    return not text.endswith("\\")


def split_comment(text: str) -> tuple[str, str]:
    """(command, comment): the comment is a `#` after whitespace, outside quotes."""
    for match in re.finditer(r"\s#", text):
        if balanced(text[: match.start()]):
            return text[: match.start()].rstrip(), text[match.start() :].strip().removeprefix("#").strip()
    return text.rstrip(), ""


def commands(block: str) -> Iterator[Command]:
    lines = block.splitlines()
    console = any(line.startswith("$ ") for line in lines)
    last: Command | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if console and not line.startswith("$ "):
            if last is not None and line.strip():
                last.shown.append(line)
            continue
        text = line.removeprefix("$ ")
        if not text.strip():
            last = None  # a blank line ends the output shown under a command
            continue
        if text.lstrip().startswith("#"):
            if last is not None and not console:
                last.shown.append(text.lstrip().removeprefix("#").strip())
            continue
        while not balanced(text) and i < len(lines):
            text = f"{text}\n{lines[i]}" if not text.endswith("\\") else f"{text[:-1]} {lines[i].strip()}"
            i += 1
        key, comment = split_comment(text)
        status = re.search(r"\bexit (\d+)\b", comment)
        last = Command(text, key, int(status.group(1)) if status else 0)
        yield last


def page_commands(name: str) -> list[tuple[str, list[Command]]]:
    """Per block: its first line and its commands."""
    blocks = SHELL_BLOCK.findall((DOCS / name).read_text())
    return [(block.splitlines()[0].removeprefix("$ "), list(commands(block))) for block in blocks]


# -- checking what they print ---------------------------------------------------------------------


def same_shape(shown: object, got: object) -> bool:
    """JSON the page shows against JSON printed: same keys and values, except ids and `...`."""
    if isinstance(shown, dict) and isinstance(got, dict):
        return shown.keys() == got.keys() and all(
            k == "id" or same_shape(v, got[k]) for k, v in shown.items()
        )
    if isinstance(shown, list) and isinstance(got, list):
        return len(shown) == len(got) and all(same_shape(s, g) for s, g in zip(shown, got, strict=True))
    return shown == got or (isinstance(shown, str) and "..." in shown)


def output_differs(shown: list[str], printed: str) -> str | None:
    """Why what a command printed is not what its page shows, or None."""
    if not shown:
        return None
    try:  # one JSON document (possibly over several comment lines), or one per line
        documents = [json.loads(" ".join(shown))]
        got = [json.loads(printed)]
    except json.JSONDecodeError:
        try:
            documents = [json.loads(line) for line in shown]
            got = [json.loads(line) for line in printed.splitlines()]
        except json.JSONDecodeError:
            documents = []
    if documents:
        return None if same_shape(documents, got) else f"shows {shown}, printed {printed!r}"
    printed_lines = iter(printed.splitlines())  # plain lines: each shown line, in order
    missing = [line for line in shown if not any(p.strip() == line.strip() for p in printed_lines)]
    return f"shows {missing}, printed {printed!r}" if missing else None


# -- running them ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    address: str  # host:port
    namespace: str


def api_line(text: str, api: Api | None) -> str:
    """The only rewriting of a curl line: the page's address becomes the module's API (with its
    token), and an HTTP error fails the command."""
    if api is None:
        return text
    text = text.replace("localhost:8000", api.address).replace("http://API", f"http://{api.address}")
    return re.sub(r"\bcurl -s", f"curl -s --fail-with-body -H 'Authorization: Bearer {TOKEN}'", text, count=1)


def script_of(
    page: Page, blocks: list[tuple[str, list[Command]]], out: Path, api: Api | None
) -> tuple[str, list[Command]]:
    """The bash script that runs a page's commands in order, and the commands it runs (as the page
    shows them); command N's stdout, stderr and "status start end" go to out/N.{out,err,rc}."""
    lines = ['cd "$WORKDIR"', page.given]
    ran: list[Command] = []
    used = set()
    for first, block in blocks:
        if first in page.skip_blocks:
            used.add(first)
            continue
        for command in block:
            if command.key in page.skip:
                used.add(command.key)
                continue
            if missing_tool(command.key):
                continue
            if command.key in page.before:
                used.add(command.key)
                lines.append(page.before[command.key])
            if command.key in page.instead:
                used.add(command.key)
            text = api_line(page.instead.get(command.key, command.text), api)
            lines.append(recorded(text, out / str(len(ran))))
            ran.append(command)
    unused = {*page.skip, *page.skip_blocks, *page.instead, *page.before} - used
    assert not unused, f"listed for the page but not on it (the page changed?): {sorted(unused)}"
    return "\n".join(lines) + "\n", ran


def recorded(text: str, base: Path) -> str:
    """The command in a group of the script's own shell (so `cd` and `id=$(...)` carry on), its
    output, status and times kept."""
    return (
        f"s=$EPOCHREALTIME; {{ {text}\n}} >'{base}.out' 2>'{base}.err' </dev/null; "
        f"echo \"$? $s $EPOCHREALTIME\" >'{base}.rc'"
    )


def missing_tool(command: str) -> bool:
    return any(
        re.search(rf"(^|[|;&(]\s*){tool}\b", command) and shutil.which(tool) is None
        for tool in OPTIONAL_TOOLS
    )


def bin_dir(tmp: Path) -> Path:
    """`taskq`, `python` and `python3`: this interpreter and the taskq under test."""
    folder = tmp / "bin"
    folder.mkdir()
    for name, args in (("python", ""), ("python3", ""), ("taskq", " -m taskq_cli")):
        (folder / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{args} "$@"\n')
        (folder / name).chmod(0o755)
    return folder


def workdir(tmp: Path) -> Path:
    """A copy of the repository's parts the samples use, so no sample writes into the checkout."""
    folder = tmp / "repo"
    folder.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("examples", "completions", "tools"):
        shutil.copytree(ROOT / part, folder / part, ignore=ignore)
    return folder


def run_page(name: str, tmp: Path, redis_url: str, namespace: str, api: Api | None = None) -> list[str]:
    """Run the page's samples; the list of what went wrong (empty when every command did as shown)."""
    page = PAGES[name]
    out = tmp / "out"
    out.mkdir()
    script, ran = script_of(page, page_commands(name), out, api)
    work = workdir(tmp)
    env = cli_env(redis_url, api.namespace if api else namespace, PYTHONDONTWRITEBYTECODE="1", HOME=str(tmp))
    env.update(
        PATH=f"{bin_dir(tmp)}{os.pathsep}{env['PATH']}",
        WORKDIR=str(work),
        PORT=str(free_port()),  # for a sample's fixed port (observability's --metrics-port $PORT)
        PYTHONPATH=f"{work}{os.pathsep}{env['PYTHONPATH']}",  # the copy's examples first
    )
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = shell.communicate(timeout=PAGE_TIMEOUT)
    except subprocess.TimeoutExpired:
        stderr = f"the page's script still ran after {PAGE_TIMEOUT}s"
    finally:
        kill_group(shell.pid)  # a background worker the page started, and anything left
        shell.communicate()
    problems: list[str] = []
    timings: list[str] = []
    for n, command in enumerate(ran):
        rc_file = out / f"{n}.rc"
        if not rc_file.exists():
            problems.append(f"{command.key}: did not run ({stderr.strip()[-500:]})")
            continue
        status, started, ended = rc_file.read_text().split()
        rc = int(status)
        timings.append(f"{float(ended) - float(started):.1f}s {command.key}")
        printed = (out / f"{n}.out").read_text()
        if rc != command.exit:
            err = (out / f"{n}.err").read_text().strip()[-800:]
            problems.append(
                f"{command.key}: exit {rc}, the page implies {command.exit}: {err or printed[-400:]}"
            )
        elif (why := output_differs(command.shown, printed)) is not None:
            problems.append(f"{command.key}: {why}")
    print(f"{name}:", *timings, sep="\n  ")  # where the time goes, under -s
    return problems


# -- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(suite_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One `taskq api` for the module, on a free port with a token, in a namespace of its own."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    env = cli_env(suite_redis_url, namespace, TASKQ_API_TOKEN=TOKEN)
    log = (tmp_path_factory.mktemp("api") / "api.log").open("wb")
    server = popen_taskq(["api", "--port", str(port), "--no-access-log"], env, output=log, merge=True)
    try:
        until(lambda: answers(port) or server.poll() is not None, 30, interval=0.1)
        assert server.poll() is None, Path(log.name).read_text()
        yield Api(f"127.0.0.1:{port}", namespace)
    finally:
        kill_group(server.pid)
        server.wait(timeout=10)
        log.close()
        client = redis.Redis.from_url(suite_redis_url)
        keys = list(client.scan_iter(match=NamespaceKeys(namespace).pattern(), count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def answers(port: int) -> bool:
    probe = ["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/healthz"]
    return subprocess.run(probe, check=False).returncode == 0


def test_every_page_with_shell_samples_is_listed_here() -> None:
    with_samples = {p.name for p in DOCS.glob("*.md") if SHELL_BLOCK.search(p.read_text())}
    assert with_samples == set(PAGES)


def test_every_pages_shell_samples_run_as_shown(
    tmp_path: Path, redis_url: str, extra_namespace: Callable[[], str], api: Api
) -> None:
    # the pages at once, each in its own namespace (api.md's in the API's): most of the time is
    # process start-up, which overlaps
    def run(name: str) -> list[str]:
        folder = tmp_path / name.removesuffix(".md")
        folder.mkdir()
        on_api = api if name in API_PAGES else None
        return [f"{name}: {p}" for p in run_page(name, folder, redis_url, extra_namespace(), on_api)]

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        problems = [p for found in pool.map(run, sorted(PAGES)) for p in found]
    assert problems == []
