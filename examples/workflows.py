"""Workflows: a chain, a group and a chord (docs/workflows.md).

Run a worker on these handlers, then the producer, from the project root:

    taskq worker --app examples.workflows        # terminal 1 (or: taskq dev --app examples.workflows)
    python -m examples.workflows                 # terminal 2: enqueues and prints the results
"""

from __future__ import annotations

from typing import Any

from taskq_cli import TaskQueue, current_task

tq = TaskQueue()


def results() -> dict[str, Any]:
    """The results of this task's dependencies, by id (`after=`)."""
    ctx = current_task()
    return dict(ctx.dependency_results) if ctx else {}


# -- a chain: fetch -> parse -> store, each after the one before ----------------------------------


@tq.task(name="fetch")
def fetch(url: str) -> str:
    return f"<html><title>{url}</title></html>"  # no network in the example: a page of our own


@tq.task(name="parse")
def parse() -> str:
    [page] = results().values()  # the one task before it in the chain: fetch
    return page.split("<title>")[1].split("</title>")[0]


@tq.task(name="store")
def store() -> dict[str, str]:
    [title] = results().values()
    return {"stored": title}


# -- a group and a chord: three sizes at once, then one task after all of them ----------------------


@tq.task(name="resize")
def resize(size: int) -> str:
    return f"cat-{size}.png"


@tq.task(name="notify")
def notify() -> list[str]:
    return sorted(results().values())  # every resize's result, once all are done


def main() -> None:
    # --8<-- [start:shapes]
    ids = tq.chain([("fetch", {"url": "example.org"}), ("parse", {}), ("store", {})])
    print("chain:", tq.result(ids[-1], wait=30))

    sizes = tq.group([("resize", {"size": s}) for s in (64, 128, 256)])
    done = tq.enqueue("notify", {}, after=sizes)  # a chord: after all of the group
    print("chord:", tq.result(done, wait=30))
    # --8<-- [end:shapes]


if __name__ == "__main__":
    main()
