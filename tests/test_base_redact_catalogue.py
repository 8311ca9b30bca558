"""The token catalogue: which gitleaks release we follow, and rules.tsv matches it."""

from __future__ import annotations

import pytest

from autotrace.redact import MASK, catalogue, is_secret_name, redact_argv, redact_text
from autotrace.secret_rules import build


def test_we_follow_gitleaks_v8_30_1() -> None:
    assert build.GITLEAKS_VERSION == "v8.30.1"
    assert catalogue().version == "v8.30.1"
    text = build.GITLEAKS.read_text(encoding="utf-8")
    assert text.count("[[rules]]") == 222
    assert "MIT License" in (build.HERE / "LICENSE.gitleaks").read_text(encoding="utf-8")


def test_rules_tsv_is_what_build_makes_from_the_vendored_files() -> None:
    from autotrace.redact import parse_rules

    built = build.build()
    text = build.OUTPUT.read_text(encoding="utf-8")
    assert text == build.render(built)
    version, rules = parse_rules(text)
    assert version == built["version"]
    assert rules == [
        (r["id"], r["source"], r["group"], r["entropy"], tuple(r["keywords"]), r["regex"])
        for r in built["rules"]
    ]
    assert len(rules) == len(catalogue().rules) > 200


def test_every_secret_name_holds_one_of_the_roots_the_name_rules_are_gated_on() -> None:
    from autotrace import redact

    for word in (*redact._SECRET_LAST, "key"):
        assert any(root in word for root in redact._SECRET_ROOTS), word
    # The gate leaves every verdict as it was: names split across separators and case.
    for name in ("to_ken", "Pass-Word", "X.Amz.Sig", "sessionId", "api_KEY", "author", "PATH"):
        words = [w.lower() for w in redact._WORDS.findall(name)]
        joined = "".join(words)
        assert redact.may_name_a_secret(name) == any(r in joined for r in redact._SECRET_ROOTS)


def test_every_rule_compiles_and_has_keywords() -> None:
    import re

    for rule_id, _, _, _, keywords, regex in catalogue().rules:
        re.compile(regex)
        assert keywords, rule_id


@pytest.mark.parametrize(
    "name",
    ["DB_PASSWORD", "--db-password", "api_key", "--openai-api-key", "client_secret", "_authToken",
     "AccountKey", "ORACLE_PWD", "STRIPE_KEY", "sig", "X-Amz-Signature", "Cookie",
     "Ocp-Apim-Subscription-Key", "passphrase", "--src-creds", "aws_secret_access_key"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["author", "--author", "max_tokens", "tokenizer", "sort_key", "--password-stdin",
     "--token-file", "token_count", "design", "bypass", "primary_key", "key", "PATH"],
)  # fmt: skip
def test_names_that_hold_no_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_mask_first_then_shorten_in_tool_call_details() -> None:
    from autotrace.patches._tool_call import call_detail

    key = "sk-proj-" + "A1b2C3d4" * 8
    for detail in (call_detail("f", {"key": key}), call_detail("f", key)):
        assert key[:12] not in detail and MASK in detail


def test_a_value_put_in_the_environment_after_start_up_is_masked(monkeypatch) -> None:
    value = "Zq81-fresh-value-x7"
    assert redact_text(f"deploy --with {value}") == f"deploy --with {value}"
    monkeypatch.setenv("LATE_DEPLOY_TOKEN", value)
    assert redact_text(f"deploy --with {value}") == f"deploy --with {MASK}"


def test_argv_and_text_give_one_verdict() -> None:
    import shlex

    argv = ["sshpass", "-p", "pw with space", "ssh", "h", "--api_key=K9x8c7v6"]
    masked = redact_argv(argv)
    assert masked == ["sshpass", "-p", MASK, "ssh", "h", f"--api_key={MASK}"]
    assert redact_text(shlex.join(masked)) == shlex.join(masked)


def test_every_corpus_form_is_masked_and_every_benign_detail_kept_in_process() -> None:
    """The corpus through the functions directly: fast feedback before the slow suite."""
    import shlex
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "hard_support"))
    from secrets_corpus import BENIGN, FORMS, windows

    leaked = []
    for form in FORMS:
        if form.channel == "env-set":
            continue  # masked by the environment's value, which only the child program sets
        out = shlex.join(redact_argv(form.argv)) if form.argv else redact_text(form.text)
        if any(w in out for secret in form.secrets for w in windows(secret)):
            leaked.append((form.name, out))
    assert leaked == []
    assert [detail for detail in BENIGN if redact_text(detail) != detail] == []


def test_field_values_are_masked_by_key_and_by_text_recursively() -> None:
    from autotrace.redact import redact_value

    value = {
        "password": "hunter2",
        "retries": 3,
        "token_count": 1532,
        "nested": [{"api_key": 12345678}, "Authorization: Bearer abc|def123"],
        "ok": True,
    }
    assert redact_value(value) == {
        "password": MASK,
        "retries": 3,
        "token_count": 1532,
        "nested": [{"api_key": MASK}, f"Authorization: Bearer {MASK}"],
        "ok": True,
    }


def test_keywords_are_found_the_same_by_pairs_and_by_the_compiled_trie() -> None:
    """A process finds rule keywords by character pairs for its first texts, then by one
    compiled pattern: both choose the same rules, keywords overlapping or not."""
    import random
    import string

    from autotrace.redact import _Catalogue

    found = _Catalogue()
    pattern = found._compile_keywords()
    keywords = sorted(found.by_keyword)
    rnd = random.Random(7)
    alphabet = string.ascii_lowercase + string.digits + "-_ ./:"
    for _ in range(3000):
        parts = []
        for _ in range(rnd.randint(1, 10)):
            pick = rnd.random()
            if pick < 0.3:
                parts.append(rnd.choice(keywords))
            elif pick < 0.5:
                parts.append(rnd.choice(keywords)[:-1])  # one short of a keyword
            else:
                parts.append("".join(rnd.choices(alphabet, k=rnd.randint(1, 10))))
        text = rnd.choice(["", " ", "-"]).join(parts)
        by_trie = {i for word in pattern.findall(text) for i in found._with_prefixes[word]}
        assert by_trie == found.chosen_by_pairs(text), text
    # After PAIR_LOOKUPS texts, chosen() uses the pattern.
    fresh = _Catalogue()
    for _ in range(fresh.PAIR_LOOKUPS + 1):
        fresh.chosen("ghp_ and sk-proj-")
    assert fresh._keywords_at is not None
    assert fresh.chosen("ghp_ and sk-proj-") == fresh.chosen_by_pairs("ghp_ and sk-proj-") != set()
