"""The one decision taken after an attempt (models.decide): ack, retry after a delay, or dead."""

from __future__ import annotations

import pytest

from taskq_cli.models import Decision, Options, Outcome, OutcomeKind, Verdict, decide

OPTIONS = Options(max_retries=2, timeout=None, backoff_base=1.0, backoff_max=3.0, result_ttl=60.0)


def error(kind: OutcomeKind, delay: float | None = None) -> Outcome:
    return Outcome.failure(kind, "E", "boom", delay=delay)


def test_a_success_is_acked() -> None:
    assert decide(Outcome.success("1"), 1, OPTIONS) == Decision(Verdict.ACK)


def test_fail_is_dead_at_once_whatever_attempts_remain() -> None:
    assert decide(error(OutcomeKind.FAIL), 1, OPTIONS).verdict is Verdict.DEAD


@pytest.mark.parametrize("kind", [OutcomeKind.ERROR, OutcomeKind.RETRY])
def test_a_failure_with_attempts_spent_is_dead(kind: OutcomeKind) -> None:
    # max_retries 2: at most 3 executions
    assert decide(error(kind, delay=1.0), 3, OPTIONS).verdict is Verdict.DEAD
    assert decide(error(kind, delay=1.0), 2, OPTIONS).verdict is Verdict.RETRY


def test_an_explicit_retry_delay_is_used_as_given_not_capped() -> None:
    assert decide(error(OutcomeKind.RETRY, delay=99.0), 1, OPTIONS) == Decision(Verdict.RETRY, 99.0)


def test_an_error_is_retried_after_the_backoff_the_protocol_draws() -> None:
    # the jittered backoff's formula lives in one place, the protocol (tests/test_backoff.py)
    assert decide(error(OutcomeKind.ERROR), 1, OPTIONS) == Decision(Verdict.RETRY, None)
