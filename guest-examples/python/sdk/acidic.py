"""The acidic SDK for Python steps: a step is a function of a context.

    import acidic

    @acidic.step
    def run(cx: acidic.Ctx):
        name = cx.arg("name")                    # the run's args
        n = cx.get("greetings", 0)               # a persisted attribute
        cx.set("greetings", n + 1)               # committed with the step
        if not name:
            raise acidic.Fatal("name is empty")  # fails the run, commits nothing
        return cx.finish(f"hello, {name}")       # or return None: continue

Attributes, args and results are plain Python values (JSON underneath).
`raise acidic.Fatal(msg)` fails the run at once; `acidic.Retryable(msg)`, or
any other exception, is a retryable error (the step's retry policy applies).
Built with `componentize-py -d wit -w step componentize <module>`; `@step`
defines the module's `WitWorld`, the class componentize-py exports.
"""

import json
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional

from componentize_py_types import Err
from wit_world.imports import attributes, context, sql, staging

__all__ = ["Ctx", "Fatal", "Retryable", "StepError", "Json", "step"]

_MISSING = object()


class StepError(Exception):
    """A failed step: nothing it did is committed."""

    retryable = True

    def __init__(self, message: Any):
        super().__init__(str(message))
        self.message = str(message)


class Fatal(StepError):
    """Fails the run now."""

    retryable = False


class Retryable(StepError):
    """Retried per the step's retry policy."""

    retryable = True


class Json:
    """Binds a value as SQL JSON (jsonb on Postgres, text on SQLite)."""

    def __init__(self, value: Any):
        self.value = value


def _json(value: Any, what: str) -> str:
    """JSON text of `value`; a value JSON cannot hold fails the run."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Fatal(f"{what}: {e}")


_I64 = range(-(2**63), 2**63)


def _to_sql(v: Any) -> sql.Value:
    if v is None:
        return sql.Value_Null()
    if isinstance(v, bool):
        return sql.Value_Integer(1 if v else 0)
    if isinstance(v, int):
        if v not in _I64:
            raise Fatal(f"sql parameter {v} does not fit a 64-bit integer")
        return sql.Value_Integer(v)
    if isinstance(v, float):
        return sql.Value_Real(v)
    if isinstance(v, str):
        return sql.Value_Text(v)
    if isinstance(v, (bytes, bytearray)):
        return sql.Value_Blob(bytes(v))
    if isinstance(v, Json):
        return sql.Value_Json(_json(v.value, "sql parameter"))
    return sql.Value_Json(_json(v, "sql parameter"))


def _from_sql(v: sql.Value) -> Any:
    if isinstance(v, sql.Value_Null):
        return None
    if isinstance(v, sql.Value_Json):
        return json.loads(v.value)
    return v.value


def _sql_error(e: Err) -> StepError:
    if isinstance(e.value, sql.SqlError_Refused):
        return Fatal(f"sql refused: {e.value.value}")
    if isinstance(e.value, sql.SqlError_Failed):
        return Retryable(f"sql failed: {e.value.value}")
    return Retryable(f"sql: {e.value}")


class Ctx:
    """What a step sees: its input, the run's args and attributes, staging, SQL, logging."""

    def __init__(self, input: context.StepInput):
        self.input = input
        self._args: Any = _MISSING

    @property
    def step(self) -> str:
        """The step being run."""
        return self.input.step

    @property
    def key(self) -> str:
        """The run's idempotency key."""
        return self.input.idempotency_key

    @property
    def run_id(self) -> int:
        """The run's numeric id."""
        return self.input.run_id

    @property
    def workflow(self) -> str:
        """The workflow's name."""
        return self.input.workflow

    @property
    def attempt(self) -> int:
        """This step's attempt, from 1."""
        return self.input.attempt

    @property
    def step_key(self) -> str:
        """A key stable across retries of this step: the idempotency key for external APIs."""
        return self.input.step_key

    @property
    def args(self) -> Any:
        """The run's args."""
        if self._args is _MISSING:
            self._args = json.loads(self.input.args)
        return self._args

    def arg(self, name: str, default: Any = _MISSING) -> Any:
        """One arg; without a default, a missing arg fails the run."""
        args = self.args if isinstance(self.args, dict) else {}
        if name in args:
            return args[name]
        if default is _MISSING:
            raise Fatal(f"missing arg `{name}`")
        return default

    def get(self, name: str, default: Any = None) -> Any:
        """An attribute's value, or `default` if it is not set."""
        text = attributes.get(name)
        return default if text is None else json.loads(text)

    def require(self, name: str) -> Any:
        """An attribute's value; a missing one fails the run."""
        text = attributes.get(name)
        if text is None:
            raise Fatal(f"attribute `{name}` is not set")
        return json.loads(text)

    def set(self, name: str, value: Any) -> None:
        """Sets an attribute; committed with the step."""
        text = _json(value, f"attribute `{name}`")
        try:
            attributes.set(name, text)
        except Err as e:
            raise Fatal(f"attribute `{name}`: {e.value}")

    def delete(self, name: str) -> None:
        """Removes an attribute."""
        attributes.delete(name)

    def attribute_names(self) -> List[str]:
        """The names of all attributes, sorted."""
        return attributes.names()

    def enqueue(
        self,
        workflow: str,
        args: Any,
        key: Optional[str] = None,
        delay_ms: Optional[int] = None,
        queue: Optional[str] = None,
        awaits: bool = False,
    ) -> str:
        """Stages a run of `workflow` (it exists only if this step commits); returns its key."""
        if delay_ms is not None and delay_ms not in range(2**64):
            raise Fatal(f"enqueue {workflow}: delay_ms {delay_ms} is out of range")
        job = staging.Job(workflow, _json(args, f"enqueue {workflow}: args"), key, delay_ms, queue, awaits)
        try:
            return staging.enqueue(job)
        except Err as e:
            raise Fatal(f"enqueue {workflow}: {e.value}")

    def children(self) -> List[Dict[str, Any]]:
        """The runs this run staged, oldest first."""
        return [
            {
                "workflow": c.workflow,
                "key": c.key,
                "status": c.status,
                "output": None if c.output is None else json.loads(c.output),
            }
            for c in staging.children()
        ]

    def execute(self, statement: str, params: List[Any] = ()) -> int:
        """Runs one INSERT, UPDATE or DELETE in the step's transaction; returns rows changed."""
        try:
            return sql.execute(statement, [_to_sql(p) for p in params])
        except Err as e:
            raise _sql_error(e)

    def query(self, statement: str, params: List[Any] = ()) -> List[Dict[str, Any]]:
        """Runs one SELECT in the step's transaction; returns rows as dicts."""
        try:
            rows = sql.query(statement, [_to_sql(p) for p in params])
        except Err as e:
            raise _sql_error(e)
        return [dict(zip(rows.columns, map(_from_sql, r))) for r in rows.rows]

    def set_http_status(self, status: int) -> None:
        """Sets the HTTP status `acidic serve` answers this run's request with,
        if this step commits (a finished run's default is 201) or fails the run
        for good (default 500): 402 for a declined card, say. 200 to 599."""
        context.set_http_status(int(status) & 0xFFFF)

    def log(self, level: str, message: str) -> None:
        """Writes a log line: 'trace', 'debug', 'info', 'warn' or 'error'."""
        lvl = context.Level.__members__.get(str(level).upper(), context.Level.INFO)
        context.log(lvl, str(message))

    def info(self, message: str) -> None:
        """Writes an info log line."""
        context.log(context.Level.INFO, str(message))

    def finish(self, result: Any = None) -> context.Outcome:
        """The outcome that ends the run now with `result`."""
        return context.Outcome_Finish(_json(result, "the result"))

    def repeat(self) -> context.Outcome:
        """The outcome that commits and runs this step again."""
        return context.Outcome_Repeat()


_OUTCOMES = (context.Outcome_Continue, context.Outcome_Finish, context.Outcome_Repeat)


def _call(fn: Callable[[Ctx], Any], input: context.StepInput) -> context.Outcome:
    try:
        out = fn(Ctx(input))
    except StepError as e:
        raise Err(context.StepError(e.message, e.retryable))
    except Exception as e:
        detail = "".join(traceback.format_exception(e)).strip()
        raise Err(context.StepError(f"{type(e).__name__}: {e}\n{detail}", True))
    if out is None:
        return context.Outcome_Continue()
    if isinstance(out, _OUTCOMES):
        return out
    raise Err(
        context.StepError(
            f"a step returns None, cx.finish(value) or cx.repeat(), not {out!r}", False
        )
    )


def step(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
    """Makes `fn(cx)` the component's step: defines `WitWorld` in fn's module."""

    class WitWorld:
        def run(self, input: context.StepInput) -> context.Outcome:
            return _call(fn, input)

    sys.modules[fn.__module__].WitWorld = WitWorld  # type: ignore[attr-defined]
    return fn
