"""Secret redaction: the one function every text of a record goes through, and its rules.

``redact_text`` masks every span that one of these finds:
- token formats from a maintained catalogue: gitleaks' published rule set, vendored as
  data (secret_rules/gitleaks.toml, MIT; rules.tsv is derived from it by
  secret_rules/build.py), plus local.toml for the few formats it lacks. A rule runs only
  when one of its keywords is in the text (found by the text's character pairs, and by
  one compiled pattern of every keyword once a process has masked many texts).
- structural rules: ``NAME=value`` / ``"name": value`` / ``name: value`` for secret-looking
  names, ``--flag value`` and ``--flag=value``, tools whose secret is positional or follows
  a one-letter flag, Authorization / Cookie headers, URL userinfo, ``echo X | ...
  --password-stdin``, ``config set NAME VALUE``;
- the current values of secret-named environment variables, wherever they appear;
- a high-entropy rule for long random words.

Each finds spans of the original text; the spans are merged and replaced by ***, so one
rule never sees another's mask. Results are cached by text: a detail is paid for once.
Callers mask first and shorten after.
"""

from __future__ import annotations

import math
import os
import re
import shlex

# Imported by every traced process with its first record: typing costs milliseconds there.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any


class _Later:
    """A pattern compiled when first used: most texts pass every rule's cheap gate
    without reaching its pattern, and compiling them all cost a process milliseconds
    before its first record."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, *args: Any) -> None:
        self._args = args
        self._compiled: re.Pattern[str] | None = None

    def _get(self) -> re.Pattern[str]:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(*self._args)
        return compiled

    def finditer(self, *args: Any) -> Iterator[re.Match[str]]:
        return self._get().finditer(*args)

    def search(self, *args: Any) -> re.Match[str] | None:
        return self._get().search(*args)

    def match(self, *args: Any) -> re.Match[str] | None:
        return self._get().match(*args)

    def fullmatch(self, *args: Any) -> re.Match[str] | None:
        return self._get().fullmatch(*args)

    def sub(self, *args: Any) -> str:
        return self._get().sub(*args)

    def __getattr__(self, name: str) -> Any:  # anything else a pattern has
        return getattr(self._get(), name)


MASK = "***"

_CACHE_SIZE = 4096  # distinct texts remembered
_CACHE_MAX_TEXT = 8192  # longer texts (tracebacks, bodies) are redacted each time

# --- names that mark a value as secret ---------------------------------------------------

# A name is split into words (snake, kebab, dotted, camelCase); it is secret when its last
# word is one of these, or is "key" after a qualifier, or it is an upper-case *_KEY.
_SECRET_LAST = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
        "creds",
        "auth",
        "authorization",
        "cookie",
        "signature",
        "sig",
        "accountkey",
        "privatekey",
        "secretkey",
        "accesskey",
        "authtoken",
        "sessionid",
        "sessiontoken",
        "clientsecret",
        "storepass",
        "keypass",
        "srcstorepass",
        "deststorepass",
        "passin",
        "passout",
    }
)
_KEY_QUALIFIERS = frozenset(
    {
        "api",
        "access",
        "secret",
        "private",
        "account",
        "session",
        "client",
        "signing",
        "encryption",
        "master",
        "license",
        "subscription",
        "shared",
        "app",
        "auth",
        "ssh",
        "service",
        "admin",
        "webhook",
        "storage",
        "consumer",
        "deploy",
        "sas",
    }
)
# A flag or name whose last word is one of these names a file or a mode, not a secret.
_NOT_SECRET_LAST = frozenset({"stdin", "file", "path", "dir", "env", "name", "id", "type", "url"})
_WORDS = _Later(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_name_cache: dict[str, bool] = {}
# Every secret name holds one of these once lower-cased and rid of "_", "-" and "." (the
# only characters between the words of a name, flag or key): a text without any of them
# names no secret, and the name rules' patterns need not run (or be compiled) for it.
_SECRET_ROOTS = ("pass", "pwd", "secret", "token", "key", "cred", "auth", "cookie", "sig", "session")  # fmt: skip


def may_name_a_secret(text: str) -> bool:
    """Whether ``text`` holds a word that may name a secret (a cheap gate for the name rules)."""
    squeezed = text.lower().replace("_", "").replace("-", "").replace(".", "")
    return any(root in squeezed for root in _SECRET_ROOTS)


def is_secret_name(name: str) -> bool:
    """Whether a variable, flag, key or header called ``name`` holds a secret."""
    known = _name_cache.get(name)
    if known is not None:
        return known
    bare = name.strip("-_./:'\" ")
    secret = False
    words = [w.lower() for w in _WORDS.findall(bare)] if may_name_a_secret(bare) else []
    if words and words[-1] not in _NOT_SECRET_LAST:
        last = words[-1]
        secret = (
            last in _SECRET_LAST
            or (last == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS)
            or (last == "key" and bare.isupper() and "_" in bare)
            or (len(words) > 1 and words[-2] + last in _SECRET_LAST)
        )
    if len(_name_cache) < 4096:
        _name_cache[name] = secret
    return secret


# --- value shapes -------------------------------------------------------------------------

_QUOTED = r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\\"(?:(?!\\").){0,500}\\\""""
# A value after a name: quoted (spaces allowed), a parenthesised or bracketed group, or a
# bare word (anything but space and quotes).
_VALUE = (
    rf"(?:{_QUOTED}|\([^()\n]{{0,300}}\)|\[[^\[\]\n]{{0,300}}\]"
    r"|(?:(?![&;,][A-Za-z_][\w.-]*=)[^\s\"'`])+)"
)
_NEXT_KEY = _Later(r"[&;,][A-Za-z_][\w.-]*=")
_CODE_VALUE = _Later(
    r"(?:self|cls|os|config|settings|args|kwargs|env|environ|request|options|opts|ctx)\.[\w.]*"
    r"|[A-Za-z_][\w.]*[(\[].*"
)
_NOT_VALUES = frozenset({"none", "null", "true", "false", "undefined", "nil", "", MASK})


def _value_span(text: str, start: int, end: int, sep: str = "=") -> tuple[int, int] | None:
    """The part of a value (text[start:end]) to mask, or None when it is not a secret value."""
    value = text[start:end]
    if not value:
        return None
    first = value[0]
    if first in "\"'" or value.startswith('\\"'):
        quote = 2 if first == "\\" else 1
        inner = value[quote:-quote]
        if inner.strip().lower() in _NOT_VALUES or inner.startswith(("$", "%", "{{")):
            return None
        return (start + quote, end - quote) if inner else None
    if first in "([":
        return (start + 1, end - 1) if end - start > 2 else None
    cut = _NEXT_KEY.search(value)
    if cut is not None:
        value = value[: cut.start()]
    value = value.rstrip(")]},.")
    if value.lower() in _NOT_VALUES or value.startswith(("$", "%", "{{", "/", "~/", "./")):
        return None
    if sep != "=" and value.isdigit():
        return None  # a line number or a port after ':'
    if _CODE_VALUE.fullmatch(value):
        return None  # source code: the value is computed, not written
    return (start, start + len(value)) if value else None


# --- structural rules ---------------------------------------------------------------------

Span = tuple[int, int]
_NAME = r"[A-Za-z_][\w.-]*"

# Searched as a lookahead, so matches overlap: a value that swallows the next name
# (`message: "... password: x"`) does not hide it.
_KEY_VALUE = _Later(
    rf"""(?=(?<![\w.\-])(?P<q>\\"|["']|)(?P<name>{_NAME})(?P=q)[ \t]*(?P<sep>:=|=|:(?![:/\\]))[ \t]*(?P<value>{_VALUE}))"""
)
# --flag value, --flag=value, and the same inside a list repr ('--flag', 'value').
_LIST_SEP = r"""['"]\s*,\s*['"]"""
_FLAG_VALUE = _Later(
    rf"""(?=(?<![\w-])(?P<flag>--?[A-Za-z][\w-]*)(?:{_LIST_SEP}(?P<listed>[^'"\n]*)|(?:=|[ \t]+)(?P<value>{_VALUE})))"""
)
_SEP = rf"(?:[ \t]+|{_LIST_SEP}|=)"
_BARE = r"""(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s'",\]]+)"""
_CMD = r"""[^\n|;&]*?"""  # the rest of one command, up to a pipe or a separator


def _after(flag: str, glued: bool = False) -> str:
    """What follows ``flag``: a separate word (also inside a list repr), or glued to it."""
    tail = r"""|(?P<glued>[^\s'",\]]+)""" if glued else ""
    return rf"""(?<![\w-])(?:{flag})(?:{_LIST_SEP}(?P<listed>[^'"\n]*)|(?:[ \t]+|=){_BARE}{tail})"""


# (words one of which the text must hold: a cheap gate, pattern)
_TOOL_RULES: list[tuple[tuple[str, ...], _Later]] = [
    # mysql -pSECRET (glued only: a lone -p prompts)
    (
        ("mysql", "mariadb"),
        _Later(
            rf"""\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|mysqlimport|mysqlsh)\b{_CMD}(?<![\w-])-p(?P<glued>[^\s'",\]]+)"""
        ),
    ),
    (("sshpass",), _Later(rf"""\bsshpass\b{_CMD}{_after("-p", glued=True)}""")),
    (("redis-cli",), _Later(rf"""\bredis-cli\b{_CMD}{_after("-a")}""")),
    (
        ("sqlcmd", "bcp", "osql", "isql"),
        _Later(rf"""\b(?:sqlcmd|bcp|osql|isql)\b{_CMD}{_after("-P", glued=True)}"""),
    ),
    (
        ("ldap",),
        _Later(
            rf"""\bldap(?:search|add|modify|delete|whoami|passwd|compare|modrdn|exop|url)?\b{_CMD}{_after("-w")}"""
        ),
    ),
    (
        ("login",),
        _Later(
            rf"""\b(?:docker|podman|helm|buildah|nerdctl|oras|crane|regctl|cosign)\b{_CMD}\blogin\b{_CMD}{_after("-p")}"""
        ),
    ),
    # curl -u user:SECRET, --proxy-user, -U
    (
        ("curl",),
        _Later(
            rf"""\bcurl\b{_CMD}(?<![\w-])(?:-u|-U|--user|--proxy-user)(?:{_SEP})?['"]?[^\s:'"]*:(?P<value>[^\s'"]+)"""
        ),
    ),
    # smbclient -U user%SECRET
    (
        ("smb", "rpcclient", "net", "cifs"),
        _Later(
            rf"""\b(?:smbclient|rpcclient|smbmap|smbcacls|smbget|net|mount\.cifs)\b{_CMD}(?<![\w-])(?:-U|--user|--username)(?:{_SEP})?['"]?[^\s%'"]*%(?P<value>[^\s'"]+)"""
        ),
    ),
    # echo SECRET | docker login --password-stdin
    (
        ("--password-stdin",),
        _Later(
            rf"""\b(?:echo|printf)\s+(?:-[neE]+\s+)?(?:'%s\\?n?'\s+)?{_BARE}\s*\|[^\n;&]*--password-stdin"""
        ),
    ),
]
_TOOL_WORDS = tuple(sorted({word for words, _ in _TOOL_RULES for word in words}))  # one look
# aws configure set NAME VALUE, npm config set //host/:_authToken VALUE: masked by name.
_CONFIG_SET = _Later(
    rf"""\b(?:configure|config)(?:{_SEP})set(?:{_SEP}--?[\w-]+)*{_SEP}(?P<name>[^\s'"=]+)(?:{_SEP}){_BARE}"""
)
_AUTH_HEADER = _Later(
    r"""(?i)\b(?:proxy-)?authorization(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?"""
    r"""(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|sso-key|sharedkey|aws4-hmac-sha256|ntlm)[ \t]+)?"""
    r"""(?P<value>[^"'\n\r\\]+)"""
)
_COOKIE_HEADER = _Later(
    r"""(?i)\b(?:set-)?cookie(?:\\?["'])?[ \t]*:[ \t]*(?:\\?["'])?(?P<value>[^"'\n\r\\]+)"""
)
_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_BEARER = _Later(r"""(?i)\b(?:bearer|basic)[ \t]+(?P<value>[A-Za-z0-9._~+/=|:-]{8,})""")
_URL_USERINFO = _Later(r"""(?i)\b[a-z][a-z0-9+.-]*://(?P<user>[^\s/:@'"]*):(?P<value>[^\s'"]*)@""")
_ENTROPY_WORD = _Later(r"""(?<![\w+/=.-])[A-Za-z0-9+/_-]{24,}={0,2}(?![\w+/=.-])""")


def _group_span(m: re.Match[str], group: str = "value") -> Span | None:
    start, end = m.span(group)
    return (start, end) if end > start and m.group(group) != MASK else None


def _any_group_span(m: re.Match[str]) -> Span | None:
    """The span of whichever of value / listed / glued matched."""
    for name in ("value", "listed", "glued"):
        if name in m.re.groupindex and m.group(name) is not None:
            return _group_span(m, name)
    return None


def _structural(text: str) -> Iterator[Span]:
    lowered = text.lower()
    named = may_name_a_secret(lowered)  # the name, flag and config rules need a secret name
    for m in _KEY_VALUE.finditer(text) if named and ("=" in text or ":" in text) else ():
        name = m.group("name")
        if is_secret_name(name) and name.lower() not in _HEADER_NAMES:
            span = _value_span(text, *m.span("value"), sep=m.group("sep"))
            if span is not None:
                yield span
    for m in _FLAG_VALUE.finditer(text) if named and "-" in text else ():
        if not is_secret_name(m.group("flag")):
            continue
        if m.group("listed") is not None:
            span = _group_span(m, "listed")
            if span is not None:
                yield span
            continue
        value = m.group("value")
        if value.startswith("--") or value == MASK:
            continue
        span = _value_span(text, *m.span("value"))
        if span is not None:
            yield span
    tool_rules = _TOOL_RULES if any(word in text for word in _TOOL_WORDS) else ()
    for words, rule in tool_rules:
        if not any(word in text for word in words):
            continue
        for m in rule.finditer(text):
            span = _any_group_span(m)
            if span is not None:
                yield _unquoted(text, span)
    for m in _CONFIG_SET.finditer(text) if named and "config" in text else ():
        if is_secret_name(re.split(r"[/:]", m.group("name"))[-1]):
            span = _group_span(m)
            if span is not None:
                yield _unquoted(text, span)
    for word, rule in (("authorization", _AUTH_HEADER), ("cookie", _COOKIE_HEADER)):
        if word not in lowered:
            continue
        for m in rule.finditer(text):
            span = _group_span(m)
            if span is not None and m.group("value").strip() not in ("", MASK):
                yield span
    for m in _BEARER.finditer(text) if "bearer" in lowered or "basic" in lowered else ():
        value = m.group("value")
        if not value.isalpha() or not value.islower():
            yield m.span("value")
    for m in _URL_USERINFO.finditer(text) if "://" in text else ():
        value = m.group("value")
        port = value.split("/", 1)[0]
        if value and value != MASK and not (port.isdigit() and "/" in value):
            yield m.span("value")


def _unquoted(text: str, span: Span) -> Span:
    start, end = span
    if end - start >= 2 and text[start] in "\"'" and text[end - 1] == text[start]:
        return start + 1, end - 1
    return span


# --- the catalogue ------------------------------------------------------------------------


class _Catalogue:
    """Token-format rules from secret_rules/rules.tsv, each compiled when first needed."""

    def __init__(self) -> None:
        path = os.path.join(os.path.dirname(__file__), "secret_rules", "rules.tsv")
        with open(path, encoding="utf-8") as f:
            self.version, self.rules = parse_rules(f.read())
        self.by_keyword: dict[str, list[int]] = {}
        for index, (_, _, _, _, keywords, _) in enumerate(self.rules):
            for keyword in keywords:
                self.by_keyword.setdefault(keyword, []).append(index)
        # Keywords by their first two characters: a text's character pairs pick the few
        # worth a substring test. (One regex of every keyword takes milliseconds to
        # compile: not before a process's first record, only after PAIR_LOOKUPS texts.)
        self.by_pair: dict[str, list[str]] = {}
        for keyword in self.by_keyword:
            self.by_pair.setdefault(keyword[:2], []).append(keyword)
        self.compiled: dict[int, re.Pattern[str]] = {}
        self._lookups = 0
        self._keywords_at: re.Pattern[str] | None = None  # compiled after PAIR_LOOKUPS texts
        self._with_prefixes: dict[str, set[int]] = {}

    # Texts looked up by character pairs before one pattern of every keyword is compiled
    # (about 2 ms, once: a short process never pays it; a long one, redacting thousands of
    # texts, finds keywords about four times faster with it).
    PAIR_LOOKUPS = 300

    def chosen(self, lowered: str) -> set[int]:
        """The rules one of whose keywords ``lowered`` (a lower-cased text) holds
        (gitleaks' keywords have two characters or more)."""
        keywords_at = self._keywords_at
        if keywords_at is None:
            self._lookups += 1
            if self._lookups <= self.PAIR_LOOKUPS:
                return self.chosen_by_pairs(lowered)
            keywords_at = self._compile_keywords()
        chosen: set[int] = set()
        for longest in keywords_at.findall(lowered):
            chosen |= self._with_prefixes[longest]
        return chosen

    def chosen_by_pairs(self, lowered: str) -> set[int]:
        pairs = {lowered[i : i + 2] for i in range(len(lowered) - 1)}
        chosen: set[int] = set()
        for pair in self.by_pair.keys() & pairs:
            for keyword in self.by_pair[pair]:
                if keyword in lowered:
                    chosen.update(self.by_keyword[keyword])
        return chosen

    def _compile_keywords(self) -> re.Pattern[str]:
        """At every position, the longest keyword that starts there (a zero-width match,
        so keywords that overlap are all found); a keyword's rules are taken with those
        of every keyword that is a prefix of it (found at the same position)."""
        for keyword in self.by_keyword:
            rules: set[int] = set()
            for end in range(2, len(keyword) + 1):
                rules.update(self.by_keyword.get(keyword[:end], ()))
            self._with_prefixes[keyword] = rules
        pattern = self._keywords_at = re.compile(f"(?=({_trie(list(self.by_keyword))}))")
        return pattern

    def spans(self, text: str) -> Iterator[Span]:
        lowered = text.lower()
        if len(lowered) != len(text):  # a character whose lower case is longer: no offsets
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        for index in sorted(self.chosen(lowered)):
            _, _, group, entropy, _, regex = self.rules[index]
            pattern = self.compiled.get(index)
            if pattern is None:
                pattern = self.compiled[index] = re.compile(regex)
            for m in pattern.finditer(text):
                span = _rule_span(m, group)
                if span is None:
                    continue
                if entropy and _entropy(text[span[0] : span[1]]) < entropy:
                    continue
                yield span


def _trie(words: list[str]) -> str:
    """One alternation of ``words`` as a trie (a branch per character): it matches the
    longest word that starts where it is tried."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


Rule = tuple[str, str, int, float, tuple[str, ...], str]  # the columns of rules.tsv


def parse_rules(text: str) -> tuple[str, list[Rule]]:
    """(gitleaks version, rules) of rules.tsv's text: id, source, group, entropy,
    keywords (comma-separated), regex."""
    lines = text.split("\n")
    version = lines[1].split("\t")[1]  # "#gitleaks <version> <commit>"
    rules: list[Rule] = []
    for line in lines[3:]:
        if line:
            rule_id, source, group, entropy, keywords, regex = line.split("\t", 5)
            rules.append(
                (rule_id, source, int(group), float(entropy), tuple(keywords.split(",")), regex)
            )
    return version, rules


def _rule_span(m: re.Match[str], group: int) -> Span | None:
    """The secret of a match: its secretGroup, else its unnamed groups' extent, else all."""
    if group:
        start, end = m.span(group)
    elif m.re.groups and not m.re.groupindex:
        spans = [m.span(g) for g in range(1, m.re.groups + 1) if m.span(g)[1] > m.span(g)[0]]
        if not spans:
            return None
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
    else:
        start, end = m.span()
    return (start, end) if end > start else None


def _entropy(word: str) -> float:
    """Shannon entropy of ``word`` in bits per character."""
    if not word:
        return 0.0
    size = len(word)
    return -sum(
        count / size * math.log2(count / size) for count in (word.count(c) for c in set(word))
    )


_catalogue: _Catalogue | None = None


def catalogue() -> _Catalogue:
    """The token-format catalogue, loaded on first use."""
    global _catalogue
    if _catalogue is None:
        _catalogue = _Catalogue()
    return _catalogue


def _high_entropy(text: str) -> Iterator[Span]:
    """Long random words: mixed case and digits, few underscores, >= 4.2 bits a character."""
    for m in _ENTROPY_WORD.finditer(text):
        word = m.group()
        if word.count("_") > 2 or word.count("/") > 4:
            continue
        upper = sum(c.isupper() for c in word)
        lower = sum(c.islower() for c in word)
        digits = sum(c.isdigit() for c in word)
        if upper >= 2 and lower >= 2 and digits >= 2 and _entropy(word) >= 4.2:
            yield m.span()


# --- environment values -------------------------------------------------------------------

_env_key: tuple[Any, ...] = ()
_env_names: list[str] = []
_env_values: list[str] = []


def _env_secrets() -> list[str]:
    """Current values of secret-named environment variables (recomputed when they change)."""
    global _env_key, _env_names, _env_values
    environ = os.environ
    size = len(environ)
    if not _env_key or _env_key[0] != size:
        _env_names = [name for name in environ if is_secret_name(name)]
    key = (size, *(environ.get(name) for name in _env_names))
    if key != _env_key:
        _env_key = key
        values = []
        for value in key[1:]:
            if (
                isinstance(value, str)
                and len(value) >= 8
                and not value.isdigit()
                and not value.startswith(("/", "~", "."))
                and value.lower() not in _NOT_VALUES
            ):
                values.append(value)
        _env_values = sorted(set(values), key=len, reverse=True)
        _cache.clear()
        _field_cache.clear()
    return _env_values


def _env_spans(text: str) -> Iterator[Span]:
    for value in _env_secrets():
        start = text.find(value)
        while start >= 0:
            yield start, start + len(value)
            start = text.find(value, start + len(value))


# --- the one function ---------------------------------------------------------------------

_DETECTORS: tuple[Callable[[str], Iterable[Span]], ...] = (
    _env_spans,
    lambda text: catalogue().spans(text),
    _structural,
    _high_entropy,
)
_cache: dict[str, str] = {}
_field_cache: dict[tuple[str, str], str] = {}  # (name, text) -> the text redacted
_cache_env_size = -1


def _mask(text: str) -> str:
    spans = [span for detect in _DETECTORS for span in detect(text)]
    return _mask_spans(text, spans) if spans else text


def redact_text(text: str) -> str:
    """``text`` with every secret in it replaced by ***; cached by text."""
    _follow_environment()
    cached = _cache.get(text)
    if cached is not None:
        return cached
    if not text:
        return text
    return _remember(_cache, text, text, _mask(text))


def _follow_environment() -> None:
    """Look at the secret-named variables again if one was added or removed."""
    global _cache_env_size
    if len(os.environ) != _cache_env_size:
        _cache_env_size = len(os.environ)
        _env_secrets()


def _remember(cache: dict[Any, str], key: Any, text: str, result: str) -> str:
    """``result`` for ``text``, kept in ``cache`` unless the text is too long to keep."""
    if len(text) <= _CACHE_MAX_TEXT:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = result
    return result


def _redact_named_text(name: str, text: str) -> str:
    """A text field called ``name``, redacted; cached by name and text (a record's fields
    repeat from record to record: the same task, the same detail in its enter and its end)."""
    _follow_environment()
    key = (name, text)
    cached = _field_cache.get(key)
    if cached is not None:
        return cached
    masked = MASK if text and is_secret_name(name) else redact_text(text)
    return _remember(_field_cache, key, text, masked)


def redact_value(value: Any, name: str | None = None) -> Any:
    """A field value with its texts redacted: strings, and lists, tuples and dicts of them.

    A value whose key is a secret name (``{"password": ...}``) is masked whatever it is.
    """
    if type(value) is str and name is not None:  # the common field: one look-up
        return _redact_named_text(name, value)
    if (
        name is not None
        and isinstance(value, (str, int, float, bytes))
        and not isinstance(value, bool)
        and value != ""
        and is_secret_name(name)
    ):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def redact_argv(argv: Iterable[object]) -> list[str]:
    """A command line with its secrets masked, word by word.

    The words are read together as the shell-joined line (so a flag masks the word after
    it), and each span found is mapped back to the words it covers: the parent's record
    of a command and the child's own process record give the same verdict.
    """
    words = [str(word) for word in argv]
    quoted = [shlex.quote(word) for word in words]
    line = " ".join(quoted)
    masked_line = redact_text(line)
    if masked_line == line:
        return words
    spans = sorted(span for detect in _DETECTORS for span in detect(line))
    out: list[str] = []
    position = 0
    for word, q in zip(words, quoted, strict=True):
        start, end = position, position + len(q)
        position = end + 1
        hits = [(max(s, start), min(e, end)) for s, e in spans if s < end and e > start]
        assignment = _ASSIGNMENT.match(word)
        if hits and assignment is not None and is_secret_name(assignment.group(1)):
            out.append(f"{assignment.group(1)}={MASK}")  # an env assignment: all after =
        elif not hits:
            out.append(word)
        elif any(s <= start and e >= end for s, e in hits) or (
            q[:1] == "'" and len(q) >= 2 and any(s <= start + 1 and e >= end - 1 for s, e in hits)
        ):
            out.append(MASK)
        elif q == word:
            out.append(_mask_spans(word, [(s - start, e - start) for s, e in hits]))
        else:
            single = redact_text(word)
            out.append(single if single != word else MASK)
    return out


_ASSIGNMENT = _Later(r"([A-Za-z_][\w.-]*)=(?=.)", re.DOTALL)


def _mask_spans(text: str, spans: list[Span]) -> str:
    """``text`` with each span (merged when they touch or overlap) replaced by one ***."""
    out: list[str] = []
    position = -1
    for start, end in sorted(spans):
        if start <= position:  # touches the previous mask: extend it
            position = max(position, end)
            continue
        out.append(text[max(position, 0) : start])
        out.append(MASK)
        position = end
    out.append(text[max(position, 0) :])
    return "".join(out)
