"""The static table of patches: each shipped patch and the modules whose import installs it.

The bootstrap registers one import hook per module listed here, so no patch module is
imported (and nothing is cached on disk) until the program imports one of its targets.
A test loads every patch and checks its ``target_modules()`` against this table: a new
patch or target is one line here. Patch selection (AUTOTRACE_PATCHES and
AUTOTRACE_EXCLUDE_PATCHES, or the launcher's options) is also decided here, once.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable

SHIPPED: dict[str, tuple[str, ...]] = {
    "aioboto3": ("aioboto3.s3.inject",),
    "aiobotocore": ("aiobotocore.client",),
    "anthropic": (
        "anthropic._streaming",
        "anthropic.lib.streaming._messages",
        "anthropic.lib.streaming._beta_messages",
        "anthropic.resources.messages.messages",
        "anthropic.resources.beta.messages.messages",
        "anthropic.resources.messages",
        "anthropic.resources.beta.messages",
    ),
    "botocore": ("botocore.client",),
    "inspect_ai": (
        "inspect_ai._util.trace",
        "inspect_ai._util.logger",
        "inspect_ai.model._model",
        "inspect_ai.model._call_tools",
        "inspect_ai.util._subtask",
        "inspect_ai.util._sandbox.local",
        "inspect_ai.util._sandbox.docker.docker",
        "inspect_ai.log._file",
        "inspect_ai.log._recorders.json",
    ),
    "mcp": ("mcp.client.session", "mcp.client.client"),
    "openai": (
        "openai.resources.chat.completions.completions",
        "openai.resources.chat.completions",
        "openai.resources.responses.responses",
        "openai.resources.beta.responses.responses",
        "openai.resources.completions",
        "openai.resources.embeddings",
        "openai._streaming",
        "openai.lib.streaming.chat._completions",
        "openai.lib.streaming.responses._responses",
    ),
    "os_system": ("os",),
    "s3fs": ("fsspec.asyn", "s3fs.core"),
    "s3transfer": ("s3transfer.manager", "s3transfer.tasks"),
    "subprocess": ("subprocess", "asyncio.base_subprocess"),
    "threads": ("concurrent.futures.thread", "asyncio.tasks", "anyio.to_thread", "asyncio"),
}


def select(names: Iterable[str], only: Iterable[str], excluded: Iterable[str]) -> list[str]:
    """``names`` kept by a selection: those in ``only`` (all when empty), none in ``excluded``."""
    wanted, dropped = set(only), set(excluded)
    return [name for name in names if (not wanted or name in wanted) and name not in dropped]


def parse_extra(text: str) -> dict[str, list[str]]:
    """AUTOTRACE_EXTRA_PATCHES as {ref: targets}: 'module:attr=mod mod, module:attr'.

    The launcher writes each third-party patch with its targets; an entry without them
    (set by hand) has its patch loaded at start-up to learn them.
    """
    table: dict[str, list[str]] = {}
    for item in text.split(","):
        ref, _, modules = item.partition("=")
        if ref.strip():
            table[ref.strip()] = modules.split()
    return table


def format_extra(table: dict[str, list[str]]) -> str:
    """The inverse of ``parse_extra``."""
    return ",".join(f"{ref}={' '.join(modules)}" for ref, modules in table.items())
