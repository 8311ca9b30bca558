"""Secret redaction: every form the agent must mask, in text, in argv and in environments."""

from __future__ import annotations

import shlex

import pytest

from autotrace.redact import MASK, is_secret_name, redact_argv, redact_text

# (argv, the secret that must vanish, a word that must stay)
ARGV_CASES = [
    (["mysql", "--password", "hunter2secret", "db"], "hunter2secret", "db"),
    (["mysql", "--password=hunter2secret", "db"], "hunter2secret", "--password="),
    (["gh", "--token", "tok123456789", "repo"], "tok123456789", "repo"),
    (["gh", "--token=tok123456789"], "tok123456789", "gh"),
    (["cli", "--api-key", "abcdef123456"], "abcdef123456", "cli"),
    (["docker", "login", "-u", "me", "-p", "pw-hunter2"], "pw-hunter2", "me"),
    (
        ["docker", "login", "registry.example.com", "-p", "pw-hunter2"],
        "pw-hunter2",
        "registry.example.com",
    ),
    (["env", "OPENAI_API_KEY=abc123def456"], "abc123def456", "OPENAI_API_KEY="),
    (["env", "DB_PASSWORD=hunter2secret", "PATH=/usr/bin"], "hunter2secret", "PATH=/usr/bin"),
    (
        ["docker", "run", "-e", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "img"],
        "wJalrXUtnFEMI",
        "img",
    ),
    (["docker", "run", "--env", "GITHUB_TOKEN=abc123def456", "img"], "abc123def456", "img"),
    (["curl", "-H", "Authorization: Bearer abc.def.ghi123456"], "abc.def.ghi123456", "curl"),
    (["curl", "-H", "authorization: bearer abcdefghi123456"], "abcdefghi123456", "curl"),
    (["tool", "sk-proj-abcdefghijklmnop1234"], "sk-proj-abcdefghijklmnop1234", "tool"),
    (["tool", "sk-ant-api03-abcdefghijklmnop"], "sk-ant-api03-abcdefghijklmnop", "tool"),
    (
        ["git", "push", "ghp_abcdefghijklmnopqrstuvwxyz0123"],
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "push",
    ),
    (["aws", "AKIAIOSFODNN7EXAMPLE"], "AKIAIOSFODNN7EXAMPLE", "aws"),
    (
        ["git", "clone", "https://me:hunter2secret@github.com/o/r.git"],
        "hunter2secret",
        "github.com/o/r.git",
    ),
    (["psql", "postgresql://admin:pw-hunter2@db:5432/x"], "pw-hunter2", "db:5432/x"),
    (["curl", "https://x.example/api?api_key=abc123def456&q=1"], "abc123def456", "q=1"),
]

# (text, secret, kept)
TEXT_CASES = [
    ("mysql --password hunter2secret db", "hunter2secret", "db"),
    ("mysql --password=hunter2secret db", "hunter2secret", "db"),
    ("gh --token tok123456789 repo", "tok123456789", "repo"),
    ("OPENAI_API_KEY=abc123def456 python x.py", "abc123def456", "python x.py"),
    ("export MY_SECRET=s3cr3tvalue", "s3cr3tvalue", "export"),
    ("Authorization: Bearer abc.def.ghi123456", "abc.def.ghi123456", "Authorization"),
    ("key sk-proj-abcdefghijklmnop1234 used", "sk-proj-abcdefghijklmnop1234", "used"),
    ("key sk-ant-api03-abcdefghijklmnop used", "sk-ant-api03-abcdefghijklmnop", "used"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123", "token"),
    ("id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "id"),
    ("https://me:hunter2secret@github.com/o/r.git", "hunter2secret", "github.com/o/r.git"),
    ('{"api_key": "abc123def456"}', "abc123def456", "api_key"),
    ("docker login -u me -p pw-hunter2 registry", "pw-hunter2", "registry"),
]

ENV_CASES = [
    ("OPENAI_API_KEY", "abc123def456"),
    ("ANTHROPIC_API_KEY", "xyz987654321"),
    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
    ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEJr"),
    ("GITHUB_TOKEN", "plainvalue123"),
    ("DB_PASSWORD", "hunter2"),
    ("HF_TOKEN", "plainvalue456"),
    ("MY_SERVICE_SECRET", "plainvalue789"),
    ("PRIVATE_KEY", "-----BEGIN"),
]


@pytest.mark.parametrize(("argv", "secret", "kept"), ARGV_CASES)
def test_redact_argv_masks_secret_forms(argv: list[str], secret: str, kept: str) -> None:
    joined = shlex.join(redact_argv(argv))
    assert secret not in joined
    assert MASK in joined
    assert kept in joined


@pytest.mark.parametrize(("text", "secret", "kept"), TEXT_CASES)
def test_redact_text_masks_secret_forms(text: str, secret: str, kept: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert MASK in redacted
    assert kept in redacted


@pytest.mark.parametrize(("name", "value"), ENV_CASES)
def test_the_value_of_a_secret_name_is_masked(name: str, value: str) -> None:
    assert is_secret_name(name)
    assert redact_text(f"{name}={value} HOME=/home/me PATH=/usr/bin:/bin") == (
        f"{name}={MASK} HOME=/home/me PATH=/usr/bin:/bin"
    )


@pytest.mark.parametrize(
    "text",
    [
        "echo hello world",
        "python -m pytest -k test_tokens_are_counted",
        "ls -p /tmp",
        "docker compose up --build",
        "https://example.com/path?q=1",
        "sleep 600",
    ],
)
def test_redact_text_leaves_ordinary_commands_alone(text: str) -> None:
    assert redact_text(text) == text
    assert redact_argv(shlex.split(text)) == shlex.split(text)


def test_a_named_text_is_masked_the_same_when_cached_and_follows_new_secret_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A text field (cached by name and text) gets the name rule and the text rules, the
    same the second time; a secret-named variable added later is masked in a text cached
    before it came."""
    from autotrace.redact import redact_value

    cases = [
        ("detail", "echo hello", "echo hello"),
        ("api_key", "plain-looking-value", MASK),
        ("detail", "curl -H 'Authorization: Bearer abcdef0123456789abcdef'", None),
        ("task", "", ""),
    ]
    for name, text, expected in cases:
        first = redact_value(text, name)
        assert first == redact_value(text, name)  # cached: the same
        assert first == (expected if expected is not None else redact_text(text))
    assert "abcdef0123456789abcdef" not in redact_value(cases[2][1], "detail")
    value = "zq8Lw2mXv7Rt"  # no shape of a secret: only the variable makes it one
    text = f"connect --password-file x {value}"
    assert value in redact_value(text, "detail")
    monkeypatch.setenv("AUTOTRACE_TEST_NEW_TOKEN", value)
    assert value not in redact_value(text, "detail")
