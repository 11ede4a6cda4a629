"""Task handlers: the `@tq.task` definition and payload validation from the signature (`--app`
loading is in loading.py: this module is below the TaskQueue and never imports it)."""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskq_cli.config import RetryDefaults
from taskq_cli.errors import UsageError, ValidationFailed

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass(frozen=True)
class TaskContext:
    """What a running handler may learn about itself (`taskq_cli.current_task()`)."""

    id: str
    name: str
    queue: str
    attempt: int
    max_retries: int
    lease: float = 30.0  # the worker's lease in seconds
    # the results of its dependencies (after=) by id: None for one that returned nothing (or whose
    # result expired); empty for a task without dependencies
    dependency_results: dict[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskq_current_task", default=None
)


def current_task() -> TaskContext | None:
    """The task this handler is running, or None outside a worker."""
    return _current.get()


def set_current_task(ctx: TaskContext | None) -> contextvars.Token[TaskContext | None]:
    return _current.set(ctx)


@dataclass(frozen=True)
class UniqueSpec:
    """A handler's uniqueness (`@tq.task(unique=...)`): the key from the name and the whole payload
    (`fields` None) or these payload fields; held until `until`, at most `hold` seconds; `debounce`
    seconds after the last enqueue (see producer.unique_lock)."""

    fields: tuple[str, ...] | None = None
    until: str | None = None
    hold: float | None = None
    debounce: float | None = None


@dataclass
class TaskDef:
    """A registered handler and its own defaults (decorator values over the queue's defaults)."""

    name: str
    fn: Callable[..., Any]
    queue: str
    retry: RetryDefaults
    explicit: frozenset[str] = frozenset()  # option names the decorator set itself
    unique: UniqueSpec | None = None  # the decorator's unique=/unique_until=/unique_for=/debounce=
    _validator: tuple[type[BaseModel], dict[str, str]] | None = field(default=None, repr=False)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The handler's keyword arguments from a payload; ValidationFailed names every problem."""
        model, names = self._model()
        try:
            parsed = model.model_validate(payload)
        except Exception as exc:
            failed = self._failed(exc)
            if failed is None:
                raise
            raise failed from None
        kwargs = {param: getattr(parsed, attr) for attr, param in names.items()}
        kwargs.update(parsed.model_extra or {})
        return kwargs

    def check(self, payload: dict[str, Any]) -> None:
        """`validate` for a producer, which needs no keyword arguments: the same validation and the
        same ValidationFailed, straight through the model's core validator (no model_validate
        wrapper, no kwargs built; a few µs of every enqueue)."""
        model, _ = self._model()
        try:
            model.__pydantic_validator__.validate_python(payload)
        except Exception as exc:
            failed = self._failed(exc)
            if failed is None:
                raise
            raise failed from None

    def _failed(self, exc: Exception) -> ValidationFailed | None:
        """ValidationFailed naming every problem of a pydantic ValidationError; None for any other."""
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            return None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
        )
        return ValidationFailed(f"invalid payload for task {self.name!r}: {problems}")

    def _model(self) -> tuple[type[BaseModel], dict[str, str]]:
        if self._validator is None:
            self._validator = build_validator(self.name, self.fn)
        return self._validator


def build_validator(name: str, fn: Callable[..., Any]) -> tuple[type[BaseModel], dict[str, str]]:
    """A pydantic model of the handler's keyword parameters. Fields are aliased (`p_0` <- `to`) so
    a parameter may be called anything, even a BaseModel attribute such as `json`."""
    from pydantic import ConfigDict, Field, create_model

    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: validate the shape, not the types
        hints = {}
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    takes_extra = False
    for index, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            takes_extra = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise UsageError(f"task {name!r}: handlers take keyword parameters only ({param})")
        default = ... if param.default is param.empty else param.default
        attr = f"p_{index}"
        fields[attr] = (hints.get(param.name, Any), Field(default, alias=param.name))
        names[attr] = param.name
    config = ConfigDict(extra="allow" if takes_extra else "forbid", arbitrary_types_allowed=True)
    model = create_model(f"Payload_{abs(hash(name))}", __config__=config, **fields)
    return model, names
