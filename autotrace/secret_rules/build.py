"""Regenerate rules.json from the vendored gitleaks rule set and local.toml.

    python -m autotrace.secret_rules.build          # writes rules.json beside this file

The traced process never parses TOML (7 ms) nor compiles 250 patterns: it loads
rules.json (a fraction of a millisecond), compiles one keyword pattern, and compiles a
rule only when one of its keywords is in a text. This script translates gitleaks' Go
(RE2) patterns to Python's ``re``: a flag group in mid-pattern becomes a scoped group,
``\\z`` becomes ``\\Z``, and the end-of-token alternation gitleaks writes after a
token becomes "not followed by a word character" (a token before a comma, a bracket
or a full stop is a token too). Not imported at run time.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
GITLEAKS = HERE / "gitleaks.toml"
LOCAL = HERE / "local.toml"
OUTPUT = HERE / "rules.json"

# The release of gitleaks whose config/gitleaks.toml is vendored (MIT, LICENSE.gitleaks).
GITLEAKS_VERSION = "v8.30.1"
GITLEAKS_COMMIT = "83d9cd684c87d95d656c1458ef04895a7f1cbd8e"

# Rules left out: generic-api-key is a keyword=value rule that leans on allowlists (our
# structural rules in redact.py do that job); the others match files or whole YAML
# documents, not the one-line texts a trace holds.
SKIPPED = frozenset({"generic-api-key", "pkcs12-file", "kubernetes-secret-yaml"})

_TOKEN_END = r"""(?:[\x60'"\s;]|\\[nr]|$)"""


def _scope_inline_flags(pattern: str) -> str:
    """Go's ``a(?i)b`` applies the flag to the rest of the group: Python wants ``a(?i:b)``."""
    out = pattern
    while True:
        index = out.find("(?i)", 1)
        if index < 0:
            return out
        depth, i, in_class = 0, index + 4, False
        while i < len(out):
            c = out[i]
            if c == "\\":
                i += 2
                continue
            if in_class:
                in_class = c != "]"
            elif c == "[":
                in_class = True
                if out[i + 1 : i + 2] == "]":
                    i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        out = out[:index] + "(?i:" + out[index + 4 : i] + ")" + out[i:]


def translate(pattern: str) -> str:
    """One gitleaks (RE2) pattern as a Python pattern with the same meaning for our texts."""
    pattern = pattern.replace(_TOKEN_END, r"(?![\w-])")
    pattern = pattern.replace(r"\z", r"\Z")
    pattern = re.sub(r"(?<!\\)\[\[", r"[\\[", pattern)  # RE2's literal [ first in a class
    if pattern.startswith("(?i)"):
        return "(?i)" + _scope_inline_flags(pattern[4:])
    return _scope_inline_flags(pattern)


def _rule(source: str, raw: dict[str, Any]) -> dict[str, Any]:
    regex = translate(raw["regex"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        re.compile(regex)
    return {
        "id": raw["id"],
        "source": source,
        "regex": regex,
        "group": int(raw.get("secretGroup", 0)),
        "entropy": float(raw.get("entropy", 0.0)),
        "keywords": sorted({k.lower() for k in raw.get("keywords", [])}),
    }


def keyword_pattern(keywords: list[str]) -> str:
    """One alternation of every keyword, as a trie (one branch per first character)."""
    trie: dict[str, Any] = {}
    for word in keywords:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        if list(node) == [""]:
            return ""
        ends = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return emit(trie)


def build() -> dict[str, Any]:
    """The rules.json document: gitleaks' rules (less SKIPPED), then local.toml's."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser, as a package
        import tomli as tomllib

    upstream = tomllib.loads(GITLEAKS.read_text(encoding="utf-8"))
    local = tomllib.loads(LOCAL.read_text(encoding="utf-8"))
    rules = [
        _rule("gitleaks", raw)
        for raw in upstream["rules"]
        if raw["id"] not in SKIPPED and "regex" in raw
    ]
    rules += [_rule("local", raw) for raw in local["rules"]]
    keywords = sorted({k for rule in rules for k in rule["keywords"]})
    return {
        "gitleaks_version": GITLEAKS_VERSION,
        "gitleaks_commit": GITLEAKS_COMMIT,
        "keyword_pattern": keyword_pattern(keywords),
        "rules": rules,
    }


def main() -> int:
    OUTPUT.write_text(json.dumps(build(), indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
