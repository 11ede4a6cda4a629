"""The example app: `taskq worker --app examples.tasks` (or `taskq dev --app examples.tasks`), run
from the project root. It does what background jobs usually do, without needing the network:

- send_email:   builds a real e-mail and hands it to SMTP (SMTP_HOST/SMTP_PORT) or, by default, to a
                fake SMTP that drops it as an .eml file in the outbox (TASKQ_EXAMPLE_OUTBOX);
- flaky_call:   an HTTP call to a service that fails now and then: retried with backoff;
- rate_limited: an API that says "try again in a second" (Retry with an explicit delay);
- resize_image: an async handler that plans a thumbnail, refusing formats it cannot read.

    taskq enqueue send_email '{"to": "a@example.com"}'
    taskq enqueue flaky_call '{"url": "https://example.com", "fail_first": 2}'
    taskq enqueue --file examples/demo.jsonl        # the mix the README's quick start runs
"""

from __future__ import annotations

import asyncio
import os
import random
import smtplib
import struct
import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from taskq_cli import Fail, Retry, TaskQueue, current_task

tq = TaskQueue()

IMAGE_FORMATS = {".png", ".jpg", ".jpeg", ".webp"}


def outbox() -> Path:
    return Path(os.environ.get("TASKQ_EXAMPLE_OUTBOX") or Path(tempfile.gettempdir()) / "taskq-outbox")


def deliver(message: EmailMessage) -> None:
    """SMTP when SMTP_HOST is set; otherwise the fake SMTP: one .eml file per message."""
    host = os.environ.get("SMTP_HOST")
    if host:
        with smtplib.SMTP(host, int(os.environ.get("SMTP_PORT", "25")), timeout=10) as smtp:
            smtp.send_message(message)
        return
    box = outbox()
    box.mkdir(parents=True, exist_ok=True)
    name = str(message["Message-ID"]).strip("<>").replace("/", "_")
    (box / f"{name}.eml").write_bytes(bytes(message))


@tq.task(name="send_email", max_retries=3, timeout=30)
def send_email(to: str, subject: str = "hello", body: str = "") -> dict[str, str]:
    """Send one e-mail; an address without an @ can never work, so it goes dead at once."""
    if "@" not in to:
        raise Fail(f"not an e-mail address: {to!r}")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "taskq example <noreply@example.com>", to, subject
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(body or f"Hello {to.split('@', maxsplit=1)[0]}!")
    deliver(message)
    return {"to": to, "subject": subject, "status": "sent", "message_id": str(message["Message-ID"])}


# --8<-- [start:retries]
@tq.task(name="flaky_call", max_retries=5, backoff_base=0.5, backoff_max=5.0)
def flaky_call(url: str, failure_rate: float = 0.5, fail_first: int = 0) -> dict[str, object]:
    """A call to a flaky service: the first `fail_first` attempts fail, later ones at `failure_rate`.
    Each failure is retried with exponential backoff; after 6 attempts the task is dead."""
    ctx = current_task()
    attempt = ctx.attempt if ctx else 1
    if attempt <= fail_first or random.random() < failure_rate:
        raise ConnectionError(f"GET {url}: connection reset by peer (attempt {attempt})")
    return {"url": url, "status": 200, "attempt": attempt}


@tq.task(name="rate_limited", max_retries=10)
def rate_limited(key: str) -> str:
    """Asks for a retry after an explicit delay, as a rate-limited API would (HTTP 429)."""
    ctx = current_task()
    if ctx is not None and ctx.attempt < 3:
        raise Retry(delay=1.0, message=f"429 Too Many Requests for {key}: retry in 1s")
    return f"{key} done"


# --8<-- [end:retries]


@tq.task(name="resize_image", timeout=60)
async def resize_image(path: str, width: int = 800) -> dict[str, object]:
    """Plan a thumbnail `width` pixels wide, keeping the aspect ratio (an async handler)."""
    source = Path(path)
    if source.suffix.lower() not in IMAGE_FORMATS or width < 1:
        raise Fail(f"cannot make a {width}px thumbnail of {path}: formats are {sorted(IMAGE_FORMATS)}")
    original = png_size(source) or (1920, 1080)  # a missing or non-PNG file: a typical photo
    await asyncio.sleep(0.1)  # the resizing itself
    height = max(1, round(original[1] * width / original[0]))
    thumbnail = source.with_stem(f"{source.stem}-{width}w")
    return {"path": path, "thumbnail": str(thumbnail), "size": [width, height]}


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's header, or None."""
    try:
        with path.open("rb") as handle:
            header = handle.read(24)
    except OSError:
        return None
    if len(header) < 24 or not header.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    width, height = struct.unpack(">II", header[16:24])
    return (width, height) if width and height else None
