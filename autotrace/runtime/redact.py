"""Secret redaction: the one place for the secret patterns, applied before a record is built."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"

# Names that mark a value as secret (env vars, KEY=VALUE words, flags, JSON keys).
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential|auth|session[_-]?key|signature)[A-Za-z0-9_.-]*"
SECRET_NAME_RE = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)

# Flags whose next argv word is a secret.
SECRET_FLAGS = frozenset(
    {
        "--password",
        "--passwd",
        "--pass",
        "--token",
        "--api-key",
        "--apikey",
        "--secret",
        "--client-secret",
        "--access-key",
        "--secret-key",
        "--secret-access-key",
        "--auth",
        "--auth-token",
        "--private-key",
        "--password-stdin-value",
    }
)

_TEXT_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization headers and bearer/basic tokens.
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # Well-known token shapes.
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),
    (re.compile(r"\b(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{16,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), MASK),
    # user:password@ in URLs.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*):[^\s/@]+@"), rf"\1:{MASK}@"),
    # Query parameters and KEY=VALUE / "key": "value" forms with a secret-looking name.
    (
        re.compile(rf"(?i)(\b{_SECRET_NAME}\s*[=:]\s*[\"']?)([^\s\"'&,;}}]+)"),
        rf"\1{MASK}",
    ),
    (
        re.compile(rf"(?i)(\"{_SECRET_NAME}\"\s*:\s*\")([^\"]*)(\")"),
        rf"\1{MASK}\3",
    ),
    # The same in a Python dict repr ('password': '...'), as SDK errors print bodies.
    (
        re.compile(rf"(?i)('{_SECRET_NAME}'\s*:\s*')([^']*)(')"),
        rf"\1{MASK}\3",
    ),
    # --password X / --password=X style flags inside a command string.
    (
        re.compile(
            r"(?i)((?<!\S)--(?:password|passwd|pass|token|secret|api-key|apikey|auth-token|client-secret|secret-key|access-key)\s+)(?!-)\S+"
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"(?i)(--(?:password|passwd|pass|token|secret|api-key|apikey)=)\S+"), rf"\1{MASK}"),
    # `docker login -p X` (and podman, helm, ...): -p is a password only after login.
    (re.compile(r"(?i)(\blogin\b(?:\s+(?!-p\b)\S+)*?\s+-p\s+)(?!-)\S+"), rf"\1{MASK}"),
]


# Every pattern above needs one of these words: one search of this decides, for most
# texts, that there is nothing to redact (the full set of substitutions costs ~10 us).
# (Matched against the lowered text: an IGNORECASE alternation is five times slower.)
_TRIGGER = re.compile(
    r"bearer|basic|token|sk-|gh[pousr]_|github_pat|akia|asia|xox|hf_|aiza|://|pass|secret"
    r"|key|auth|credential|signature|session|login"
)


def redact_text(text: str) -> str:
    """Replace every secret-looking substring of ``text`` with ***."""
    if not text or not _TRIGGER.search(text.lower()):
        return text
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_argv(argv: Iterable[object]) -> list[str]:
    """A command line with secret flag values, KEY=VALUE secrets and tokens masked."""
    words = [str(word) for word in argv]
    out: list[str] = []
    mask_next = False
    saw_login = False
    for word in words:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        lowered = word.lower()
        if lowered in SECRET_FLAGS or (saw_login and word == "-p"):
            out.append(word)
            mask_next = True
            continue
        if lowered == "login":
            saw_login = True
        out.append(redact_text(word))
    return out


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of an environment with the values of secret-looking names masked."""
    return {
        key: (MASK if SECRET_NAME_RE.match(key) else redact_text(value))
        for key, value in env.items()
    }
