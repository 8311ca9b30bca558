"""Regenerate rules.py from the vendored gitleaks rule set and local.toml.

    python -m autotrace.secret_rules.build          # writes rules.py beside this file

The traced process never parses TOML (7 ms), JSON (importing json alone costs about a
millisecond) nor compiles 250 patterns: it imports rules.py (plain literals, loaded from
its cached bytecode in a fraction of a millisecond), with the keyword index built here,
and compiles a rule only when one of its keywords is in a text. This script translates gitleaks' Go
(RE2) patterns to Python's ``re``: a flag group in mid-pattern becomes a scoped group,
``\\z`` becomes ``\\Z``, and the end-of-token alternation gitleaks writes after a
token becomes "not followed by a word character" (a token before a comma, a bracket
or a full stop is a token too). Not imported at run time.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
GITLEAKS = HERE / "gitleaks.toml"
LOCAL = HERE / "local.toml"
OUTPUT = HERE / "rules.py"

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


# The fields of each rule in rules.py, in this order.
FIELDS = ("id", "source", "regex", "group", "entropy", "keywords")


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
        "keywords": tuple(sorted({k.lower() for k in raw.get("keywords", [])})),
    }


def build() -> dict[str, Any]:
    """The catalogue: gitleaks' rules (less SKIPPED), then local.toml's, and the keyword
    index the traced process looks texts up with."""
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
    by_keyword: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        for keyword in rule["keywords"]:
            by_keyword.setdefault(keyword, []).append(index)
    # Keywords by their first two characters (gitleaks' keywords have two or more): a
    # text's character pairs pick the few worth a substring test.
    by_pair: dict[str, list[str]] = {}
    for keyword in sorted(by_keyword):
        by_pair.setdefault(keyword[:2], []).append(keyword)
    return {
        "GITLEAKS_VERSION": GITLEAKS_VERSION,
        "GITLEAKS_COMMIT": GITLEAKS_COMMIT,
        "FIELDS": FIELDS,
        # Tuples of constants: the compiler folds them into one constant, which the
        # traced process loads from bytecode as it is (dicts would be built one by one).
        "RULES": tuple(tuple(rule[field] for field in FIELDS) for rule in rules),
        "BY_KEYWORD": {k: tuple(v) for k, v in sorted(by_keyword.items())},
        "BY_PAIR": {k: tuple(v) for k, v in sorted(by_pair.items())},
    }


def render(catalogue: dict[str, Any]) -> str:
    """rules.py's text: the catalogue as Python literals."""
    import pprint

    lines = [
        '"""The token-format catalogue: generated by `python -m autotrace.secret_rules.build`',
        "from gitleaks.toml and local.toml. Do not edit: edit local.toml and rebuild.",
        '"""',
        "",
        "# fmt: off",
    ]
    for name, value in catalogue.items():
        lines.append(f"{name} = {pprint.pformat(value, width=100, sort_dicts=False)}")
    return "\n".join(lines) + "\n"


def main() -> int:
    OUTPUT.write_text(render(build()), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
