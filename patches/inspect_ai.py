"""inspect_ai: generate calls, tool calls, subtasks, sandbox exec and eval-log writes.

Newer inspect releases trace much of this themselves (``inspect_ai._util.trace.trace_action``).
Where a module of the running inspect binds ``trace_action``, the native action is the one
record of that work: our rows below pass through, and our wrapper around ``trace_action``
makes the native action the parent of what our other patches trace inside it (or writes
it itself while inspect's trace handler does not exist yet). Older releases (no
``trace_action``) get every action from the rows below.

Every hook installs on the module that *defines* a name, which runs before the modules
that ``from ... import`` it: the agent must be active before inspect is imported.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from autotrace import config, records
from autotrace.patches._tool_call import call_detail
from autotrace.redact import may_name_a_secret, redact_argv, redact_text, redact_value
from autotrace.runtime import actions
from autotrace.runtime.invisible import hide_from_warnings
from autotrace.startup.patching import Patch, Wrap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from autotrace.startup.patching import Wrapper

TRACE_MODULE = "inspect_ai._util.trace"
LOGGER_MODULE = "inspect_ai._util.logger"
MODEL_MODULE = "inspect_ai.model._model"
CALL_TOOLS_MODULE = "inspect_ai.model._call_tools"
SUBTASK_MODULE = "inspect_ai.util._subtask"
SUBPROCESS_MODULE = "inspect_ai.util._subprocess"
LOCAL_SANDBOX_MODULE = "inspect_ai.util._sandbox.local"
DOCKER_SANDBOX_MODULE = "inspect_ai.util._sandbox.docker.docker"
OLD_LOG_MODULE = "inspect_ai.log._file"  # releases before the recorders package
JSON_RECORDER_MODULE = "inspect_ai.log._recorders.json"

# Native actions whose inside is the very same work our patches would trace again
# (inspect's subprocess() is one process; an MCP call_tool is the mcp patch's Tool Call).
SAME_WORK_INSIDE = {"Subprocess": "", "MCPServer": "call_tool"}
NATIVE_PARENT_KIND = records.NATIVE_PARENT_KIND
NATIVE_PARENT_MESSAGE = "native action parent"  # agent_message adds "[autotrace] "


# --- details -------------------------------------------------------------------------


def _tool_call_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The ToolCall argument, found by type: call_tool's signature changed across releases."""
    call = kwargs.get("call")
    if call is not None:
        return call
    for value in args:
        if type(value).__name__ == "ToolCall" and hasattr(value, "function"):
            return value
    return None


def _shell_join(cmd: Any) -> str:
    import shlex

    if isinstance(cmd, str):
        return cmd
    return shlex.join(redact_argv(cmd))


# --- is this work traced natively? ---------------------------------------------------

_native_handler: logging.Handler | None = None  # inspect's trace FileHandler, once known
_native_outer: logging.Handler | None = None  # the handler holding it (its trace level)
TRACE_LEVEL = 13  # inspect's TRACE


def native_handler() -> logging.Handler | None:
    """inspect's trace file handler in this process, if its init_logger has run."""
    global _native_handler, _native_outer
    if _native_outer is None:  # (the compress hook may have named the handler alone)
        for name in ("inspect_ai", ""):
            for handler in logging.getLogger(name).handlers:
                trace_logger = getattr(handler, "trace_logger", None)
                if isinstance(trace_logger, logging.FileHandler):
                    _native_handler, _native_outer = trace_logger, handler
                    return trace_logger
    return _native_handler


def _native_records_written() -> bool:
    handler = native_handler()
    if handler is None or getattr(handler, "stream", True) is None:
        return False
    # inspect's handler drops records below its trace_logger_level (from INSPECT_TRACE_LEVEL
    # when init_logger ran); read from the environment where that attribute is unknown.
    level: object = getattr(_native_outer, "trace_logger_level", None)
    if type(level) is int:
        return level <= TRACE_LEVEL
    level = os.environ.get("INSPECT_TRACE_LEVEL", "").strip().upper()
    if level.isdigit():
        return int(level) <= TRACE_LEVEL
    return level in ("", "TRACE", "NOTSET", "DEBUG")


def _is_ours(obj: Any) -> bool:
    return bool(getattr(obj, "_self_autotrace", False))


def native_covers(module_name: str) -> bool:
    """True when ``module_name`` traces its own work with inspect's trace_action.

    Through our wrapper it always lands in a file (inspect's or ours); an original bound
    before we were active only when inspect's handler exists.
    """
    module = sys.modules.get(module_name)
    bound = getattr(module, "trace_action", None) if module is not None else None
    if bound is None:
        return False
    return _is_ours(bound) or _native_records_written()


# --- living beside inspect's trace_action ---------------------------------------------


class _Captured(threading.local):
    """inspect's enter record being made in this thread by our wrapper: its trace id (read
    from the record as it is formatted), the parent it names, whether its line names it.
    (Class attributes: every thread starts from these.)"""

    armed = False
    id: str | None = None
    parent: str | None = None
    parent_written = False


_captured = _Captured()


class _NativeAction(contextlib.ContextDecorator):
    """What inspect's ``trace_action(logger, action, message, *args)`` returns under us.

    A context manager, usable as a decorator too, as the ``contextmanager`` original is.
    Inside inspect's own context manager it enters ours (the action adopted, or written
    by us while inspect's handler does not exist; suppression of the same work inside),
    and leaves them first: inspect's enter and exit, and their errors, are as without us.
    """

    def __init__(self, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._wrapped, self._args, self._kwargs = wrapped, args, kwargs
        self._inner: Any = None  # inspect's context manager, once entered
        self._ours: list[Any] = []  # our context managers entered inside it

    def _recreate_cm(self) -> _NativeAction:
        return _NativeAction(self._wrapped, self._args, self._kwargs)

    def __enter__(self) -> None:
        try:
            plan = self._plan()
        except Exception as exc:
            PATCH.fail(f"trace_action wrapper failed: {exc!r}")
            plan = None
        if plan is None:  # as without us
            inner = self._wrapped(*self._args, **self._kwargs)
            inner.__enter__()
            self._inner = inner
            return None
        action, detail, native, call_args, call_kwargs = plan
        # inspect's enter record names the parent itself (see _format_wrapper).
        parent = actions.current_action() if native else None
        captured = _captured
        captured.armed, captured.id, captured.parent_written = native, None, False
        captured.parent = parent.trace_id if parent is not None else None
        try:
            # inspect's own enter: its errors reach the program, as without us
            inner = self._wrapped(*call_args, **call_kwargs)
            inner.__enter__()
            self._inner = inner
            trace_id, parent_written = captured.id, captured.parent_written
        finally:
            captured.armed, captured.parent = False, None
        try:
            self._enter_ours(action, detail, native, trace_id, parent_written)
        except Exception as exc:
            PATCH.fail(f"trace_action wrapper failed: {exc!r}")
        return None

    def _enter_ours(
        self, action: str, detail: str, native: bool, trace_id: Any, parent_written: bool
    ) -> None:
        ours = self._ours
        if not native:
            # inspect's records reach no file yet (its handler does not exist): ours do.
            scope: Any = actions.trace_action(action, detail)
            scope.__enter__()
            ours.append(scope)
        elif trace_id is not None:
            scope = actions.adopt_action(action, detail, str(trace_id))
            adopted = scope.__enter__()
            ours.append(scope)
            if adopted.parent_id is not None and not parent_written:
                # inspect's formatter did not write the parent into its record: one line of
                # ours says which action it runs in (Run Task > Tool Call > Subprocess).
                actions.agent_message(
                    NATIVE_PARENT_MESSAGE,
                    event_kind=NATIVE_PARENT_KIND,
                    trace_id=adopted.trace_id,
                    parent_id=adopted.parent_id,
                )
        prefix = SAME_WORK_INSIDE.get(action)
        if prefix is not None and detail.startswith(prefix):
            scope = actions.suppress_tracing()
            scope.__enter__()
            ours.append(scope)

    def _plan(self) -> tuple[str, str, bool, tuple[Any, ...], dict[str, Any]] | None:
        """(action, detail, inspect writes it?, args and kwargs for inspect's trace_action)."""
        if not PATCH.enabled:
            return None
        args, kwargs = self._args, self._kwargs
        if len(args) < 3 or not isinstance(args[1], str) or not isinstance(args[2], str):
            return None
        action, message, rest = args[1], args[2], args[3:]
        try:
            detail = message % rest if rest else message % kwargs if kwargs else message
        except Exception:  # inspect's own formatting fails the same way: let it
            return None
        native = _native_records_written()
        if native:
            redacted = redact_text(detail)
            if redacted != detail:
                # inspect's own detail for docker calls carries --env values: masked too
                # (no format arguments: inspect then takes the message as it is).
                return action, redacted, True, (args[0], action, redacted), {}
        return action, detail, native, args, kwargs

    def __exit__(self, *exc_info: Any) -> bool:
        ours, self._ours = self._ours, []
        for scope in reversed(ours):  # ours never raise nor swallow the program's error
            try:
                scope.__exit__(*exc_info)
            except Exception as exc:
                PATCH.fail(f"trace_action wrapper failed: {exc!r}")
        inner, self._inner = self._inner, None
        return bool(inner.__exit__(*exc_info)) if inner is not None else False


def _trace_action_wrapper(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return _NativeAction(wrapped, args, kwargs)


# LogRecord attributes that are the logging machinery's, not text of the record.
_RECORD_MACHINERY = frozenset(
    logging.makeLogRecord({}).__dict__.keys() | {"message", "asctime", "start_time"}
)


# ... and inspect's own identifiers: its trace id (a generated uuid) and event names.
_NOT_TEXT = _RECORD_MACHINERY | {"trace_id", "event"}


def _masked_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with its message and text fields (detail, error, stacktrace) masked: the
    record itself when masking changes nothing, else a copy (other handlers see it as is)."""
    fields = record.__dict__
    changes: dict[str, Any] = {}
    message = record.getMessage()
    masked_message = _masked_message(record, message)
    if masked_message != message:
        changes["msg"], changes["args"] = masked_message, None
    for key in fields.keys() - _NOT_TEXT:
        value = fields[key]
        if isinstance(value, (str, list, dict)):
            masked = redact_value(value, key)
            if masked != value:
                changes[key] = masked
    if not changes:
        return record
    # The same class with the same attributes (LogRecord.__init__ would read the clock,
    # the thread and the process again, for nothing).
    copy = type(record).__new__(type(record))
    copy.__dict__.update(fields)
    copy.__dict__.update(changes)
    return copy


def _masked_message(record: logging.LogRecord, message: str | None = None) -> str:
    """The record's message (``message``, if given), masked in parts that repeat.

    In a sample, inspect's messages start with a line of context (``sample=ID``, with
    ``task=`` and ``epoch=`` when there are several; the record's ``sample_id`` says so):
    it is masked alone (one mask per sample), the rest alone (the same HTTP request line
    or action in every sample: one mask for all). inspect's trace_action message,
    ``f"{action}: {detail} ({event})"``, is masked through its detail (one mask for the
    detail field, the message and the end record's alike); the action is inspect's own
    word, the event its own name.
    """
    if message is None:
        message = record.getMessage()
    fields = record.__dict__  # (getattr with a default costs an exception when absent)
    head = ""
    sample_id = fields.get("sample_id")
    if sample_id is not None and "\n" in message:
        first, _, rest = message.partition("\n")
        if f"sample={sample_id}" in first:
            head, message = first, rest
    action, detail, event = fields.get("action"), fields.get("detail"), fields.get("event")
    if (
        type(action) is str
        and type(detail) is str
        and event in records.EVENTS
        and message == f"{action}: {detail} ({event})"
        and _plain_action(action)
    ):
        masked = f"{redact_text(action)}: {redact_text(detail)} ({event})"
    else:
        masked = redact_text(message)
    if not head:
        return masked
    if type(sample_id) is int and head == f"sample={sample_id}":
        return f"{head}\n{masked}"  # inspect's word and a number: nothing to mask
    return f"{redact_text(head)}\n{masked}"


_plain_actions: dict[str, bool] = {}  # inspect's few action names, looked at once each


def _plain_action(action: str) -> bool:
    """An action name that names no secret ("Token: <detail>" is masked as one text)."""
    plain = _plain_actions.get(action)
    if plain is None:
        plain = not may_name_a_secret(action)
        if len(_plain_actions) < 256:
            _plain_actions[action] = plain
    return plain


def _format_wrapper(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """inspect's own trace lines, formatted from the record masked (other handlers see it
    as is). The enter record our wrapper of trace_action is making gives us its trace id,
    and its line names the action's parent (inspect's reader ignores fields it does not
    know)."""
    record = args[0] if args else kwargs.get("record")
    if not PATCH.enabled or not isinstance(record, logging.LogRecord):
        return wrapped(*args, **kwargs)
    try:
        masked = _masked_record(record)
        parent = _enter_being_made(record)
    except Exception as exc:
        PATCH.fail(f"trace formatter wrapper failed: {exc!r}")
        return wrapped(*args, **kwargs)
    text = wrapped(masked)
    if parent is not None and isinstance(text, str) and text.endswith("}"):
        _captured.parent_written = True
        return f"{text[:-1]}, {_PARENT_FIELD}{records.quote(parent)}}}"
    return text


_PARENT_FIELD = '"parent_id": '


def _enter_being_made(record: logging.LogRecord) -> str | None:
    """For the enter record of the native action our wrapper is entering in this thread
    (the first record it formats): note its trace id; the parent its line should name."""
    fields = record.__dict__
    if fields.get("event") != "enter":
        return None
    captured = _captured
    trace_id = fields.get("trace_id")
    if not captured.armed or captured.id is not None or not isinstance(trace_id, str):
        return None
    captured.id = trace_id
    parent = captured.parent
    if parent is None or "parent_id" in fields:
        return None
    return str(parent)


def _compress_wrapper(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """inspect gzips its trace file at exit and deletes the .log: our later lines follow."""
    global _native_handler
    compress = wrapped(*args, **kwargs)
    handler = args[0] if args else kwargs.get("log_handler")
    if isinstance(handler, logging.FileHandler):
        _native_handler = handler

    def compress_then_follow() -> None:
        writer = actions.writer
        # Lines written while inspect copies the file and deletes it would be lost: hold them.
        writer.hold()
        try:
            compress()
        finally:
            try:
                log_file = Path(handler.baseFilename)  # type: ignore[union-attr]
                ours = writer.path or config.trace_file_for(os.getpid())
                gz_file = log_file.with_suffix(".log.gz")
                if os.path.abspath(ours) == os.path.abspath(log_file) and gz_file.exists():
                    os.chmod(gz_file, 0o600)  # gzip.open made it with the umask's mode
                    writer.continue_in_gzip(str(gz_file))
            except Exception as exc:
                PATCH.fail(f"could not follow inspect's compressed trace file: {exc!r}")
            writer.release()

    return compress_then_follow


def _init_logger_wrapper(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """inspect writes its trace records to our file: one file per process holds both.

    INSPECT_TRACE_FILE is set only while init_logger creates the handler, so children
    never inherit it; a value the user set is left alone (and our writer follows it).
    """
    if not PATCH.enabled:
        return wrapped(*args, **kwargs)
    if os.environ.get(config.INSPECT_TRACE_FILE):
        # The user's file, which our writer follows too: our header goes first in it.
        actions.writer.ensure_open()
        return wrapped(*args, **kwargs)
    try:
        # Opened by our writer first: the file is 0600 whoever writes to it, and its
        # first line is our process header (run id, pid, argv), before any of inspect's.
        path = actions.writer.ensure_open()
        if path is None or os.path.abspath(path) != os.path.abspath(
            config.trace_file_for(os.getpid())
        ):
            return wrapped(*args, **kwargs)
    except Exception:
        return wrapped(*args, **kwargs)
    os.environ[config.INSPECT_TRACE_FILE] = os.environ[config.ENV_INSPECT_FILE_SET] = str(path)
    try:
        return wrapped(*args, **kwargs)
    finally:
        os.environ.pop(config.INSPECT_TRACE_FILE, None)
        os.environ.pop(config.ENV_INSPECT_FILE_SET, None)


# --- our own actions (releases or calls inspect does not trace) -------------------------


def _describe_generate(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if native_covers(MODEL_MODULE):
        return None
    return f"generate ({instance})"


def _describe_tool_call(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if native_covers(CALL_TOOLS_MODULE):
        return None
    call = _tool_call_of(args, kwargs)
    if call is None:
        return "unknown tool"
    return call_detail(str(call.function), getattr(call, "arguments", None))


def _describe_sandbox_exec(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    if native_covers(SUBPROCESS_MODULE):  # inspect's subprocess() traces the same process
        return None
    cmd = args[0] if args else kwargs.get("cmd", "")
    return _shell_join(cmd)


def _describe_log_write(
    module_name: str,
) -> Any:
    def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        if native_covers(module_name):
            return None
        location = args[0] if args else kwargs.get("location", "")
        return str(location)

    return describe


def _describe_sandbox_guarded(instance: Any, args: Any, kwargs: Any) -> str | None:
    detail: str | None = PATCH.guard(_describe_sandbox_exec)(instance, args, kwargs)
    return detail


def _sandbox_wrapper(action: str) -> Wrapper:
    """Sandbox exec as one action; the process it starts is the same work (suppressed)."""

    async def wrapper(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        detail = _describe_sandbox_guarded(instance, args, kwargs)
        if detail is None:
            return await wrapped(*args, **kwargs)
        with actions.trace_action(action, detail), actions.suppress_tracing():
            return await wrapped(*args, **kwargs)

    return wrapper


@hide_from_warnings  # run_subtask stands between the program and its subtask
def _traced_subtask(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    async def run_subtask(*args: Any, **kwargs: Any) -> Any:
        if not PATCH.enabled or native_covers(SUBTASK_MODULE):
            return await fn(*args, **kwargs)
        with actions.trace_action(records.SUBTASK, name):
            return await fn(*args, **kwargs)

    return run_subtask


def _subtask_wrapper(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``subtask`` is a decorator factory: trace the subtask function it finally returns."""
    result = wrapped(*args, **kwargs)
    try:
        name = args[0] if args else kwargs.get("name")
        if not isinstance(name, str):  # bare @subtask: result is the subtask itself
            return _traced_subtask(result, getattr(name, "__name__", "subtask"))

        @functools.wraps(result)
        def decorate(func: Any, *more: Any, **options: Any) -> Any:
            return _traced_subtask(result(func, *more, **options), name)

        return decorate
    except Exception as exc:
        PATCH.fail(f"subtask wrapper failed: {exc!r}")
        return result


Row = functools.partial(Wrap, optional=True)

# The table: (module, callable, action, detail). Every row is optional: a release that
# lacks a module or callable skips that row (0.3.40 has no trace_action, no recorders).
ROWS: list[Wrap] = [
    Row(TRACE_MODULE, "trace_action", wrapper=_trace_action_wrapper),
    Row(TRACE_MODULE, "compress_trace_log", wrapper=_compress_wrapper),
    Row(TRACE_MODULE, "TraceFormatter.format", wrapper=_format_wrapper),
    Row(LOGGER_MODULE, "init_logger", wrapper=_init_logger_wrapper),
    Row(MODEL_MODULE, "Model.generate", records.MODEL, _describe_generate),
    Row(CALL_TOOLS_MODULE, "call_tool", records.TOOL_CALL, _describe_tool_call),
    Row(SUBTASK_MODULE, "subtask", wrapper=_subtask_wrapper),
    Row(
        LOCAL_SANDBOX_MODULE,
        "LocalSandboxEnvironment.exec",
        wrapper=_sandbox_wrapper(records.SUBPROCESS),
    ),
    Row(
        DOCKER_SANDBOX_MODULE,
        "DockerSandboxEnvironment.exec",
        wrapper=_sandbox_wrapper(records.DOCKER),
    ),
    Row(
        OLD_LOG_MODULE,
        "JSONRecorder.write_log",
        records.LOG_WRITE,
        _describe_log_write(OLD_LOG_MODULE),
    ),
    Row(
        JSON_RECORDER_MODULE,
        "JSONRecorder.write_log",
        records.LOG_WRITE,
        _describe_log_write(JSON_RECORDER_MODULE),
    ),
]


def _removed() -> None:
    global _native_handler, _native_outer
    _native_handler = _native_outer = None
    PATCH.enabled = False  # wrappers that importers still hold pass through


PATCH = Patch(
    name="inspect_ai",
    description="inspect_ai: Model.generate, tool calls, subtasks, sandbox exec, log writes; "
    "inspect's own trace_action adopted as parent",
    wraps=ROWS,
    on_remove=_removed,
)
