"""Secret forms for the secrets suite, and benign details that must come out unchanged.

``SECRETS`` (form -> secret value) holds the forms the program of earlier suites hands to
fixed calls (model clients, boto3, exceptions); ``FORMS`` holds the corpus proper: each
``Form`` is a text (or an argv), the secret value(s) inside it, and the channel the
program pushes it through. Every value is fake but shaped like the real thing (right
prefix, length and alphabet), generated here from a fixed seed, so that it is the
redaction rules, not luck, that keep it out of traces.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass, field

_rng = random.Random(20261129)
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"
BASE32 = string.ascii_uppercase + "234567"
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def rand(n: int, alphabet: str = ALNUM) -> str:
    """``n`` random characters of ``alphabet`` (a fixed seed: the corpus is the same each run)."""
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _pw() -> str:
    """A password-like value: letters, digits, one symbol, no prefix to find it by."""
    return rand(6) + _rng.choice("!#%^*-_") + rand(7)


def _jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    head = part({"alg": "HS256", "typ": "JWT", "kid": rand(8)})
    body = part({"sub": rand(10), "iat": _rng.randrange(1_600_000_000, 1_800_000_000)})
    return f"{head}.{body}.{rand(43, URLSAFE)}"


def _pem_body() -> str:
    return "\n".join(rand(64, B64) for _ in range(4)) + "\n" + rand(20, B64) + "=="


SECRETS: dict[str, str] = {
    # argv of the traced program itself (inspect-trace run -- python secrets_program.py ...)
    "argv --password": "Hunter2-argvPw-q81x",
    "argv --token=": "tokArgvEq-7Yh2kLmP0o",
    "argv sk- key": "sk-proj-" + rand(40, URLSAFE),
    # environment of the traced program
    "env MY_SERVICE_SECRET": "MySvcSecretEnv-" + rand(10),
    # model clients against the local LLM server
    "openai api_key": "sk-proj-" + rand(48, URLSAFE),
    "openai default header X-Api-Key": rand(32),
    "openai error body echoing the key": "sk-proj-" + rand(48, URLSAFE),
    "anthropic api_key": "sk-ant-api03-" + rand(93, URLSAFE) + "AA",
    "anthropic error body with password": _pw(),
    "anthropic header Authorization: Bearer": rand(40, URLSAFE),
    # boto3 credentials against the local S3 server
    "boto3 aws_access_key_id": "AKIA" + rand(16, BASE32),
    "boto3 aws_secret_access_key": rand(40, B64),
    "boto3 aws_session_token": "FwoGZXIvYXdzE" + rand(120, B64),
}


@dataclass(frozen=True)
class Form:
    """One secret form: ``text`` (or ``argv``) holds ``secrets``; ``channel`` carries it."""

    name: str
    channel: str
    secrets: tuple[str, ...]
    text: str = ""
    argv: tuple[str, ...] = field(default_factory=tuple)


# Channels (see secrets_program.py): argv words of a child (`true`), the argv of a traced
# Python child (its own process record too), CalledProcessError from check=True, a shell
# string, os.system, an env value set by the program after start-up then used in a shell
# string, an exception raised in a traced action, an httpx error (its URL), a model call
# whose error body echoes the text, an S3 key, an MCP tool call's arguments, a
# trace_message text, a trace_message field, a trace_action extra, a trace_action detail,
# and the source line of a stuck action's stack.
ARGV_CHANNELS = ("argv", "python-argv", "called-process-error")
TEXT_CHANNELS = (
    "shell",
    "os.system",
    "error",
    "model-error",
    "tool",
    "message",
    "message-field",
    "extra",
    "detail",
)
URL_CHANNELS = ("httpx-error", "s3-key")
STACK = "stack"
ENV_SET = "env-set"


def _argv_forms() -> list[tuple[str, list[str], list[str]]]:
    """(name, argv, secrets) for command lines with secrets in flag or positional places."""
    out: list[tuple[str, list[str], list[str]]] = []

    def add(name: str, argv: list[str], *secrets: str) -> None:
        out.append((name, argv, list(secrets)))

    p = _pw
    add("--password X", (s := p()) and ["mysql", "--password", s, "db"], s)
    add("--password=X", (s := p()) and ["mysql", f"--password={s}", "db"], s)
    add(
        "--password 'with spaces'",
        (s := f"{rand(5)} {rand(6)} {rand(5)}") and ["cli", "--password", s],
        s,
    )
    add("--token X", (s := rand(24)) and ["gh", "--token", s, "repo"], s)
    add("--api-key X", (s := rand(32)) and ["cli", "--api-key", s], s)
    add("--api_key X", (s := rand(32)) and ["cli", "--api_key", s], s)
    add("--openai-api-key X", (s := rand(32)) and ["tool", "--openai-api-key", s], s)
    add("--db-password X", (s := p()) and ["migrate", "--db-password", s], s)
    add("--client_secret X", (s := rand(30, URLSAFE)) and ["oauth", "--client_secret", s], s)
    add(
        "--passphrase X", (s := f"{rand(6)} {rand(6)}") and ["gpg", "--passphrase", s, "-d", "f"], s
    )
    add("--secret=X", (s := rand(28)) and ["deploy", f"--secret={s}"], s)
    add("--auth-token X", (s := rand(40)) and ["cli", "--auth-token", s], s)
    add(
        "--client-secret=X", (s := rand(34, URLSAFE)) and ["az", "login", f"--client-secret={s}"], s
    )
    add("mysql -pX (glued)", (s := p()) and ["mysql", "-u", "root", f"-p{s}", "db"], s)
    add("mysqldump -pX", (s := p()) and ["mysqldump", f"-p{s}", "--all-databases"], s)
    add("sshpass -p X", (s := p()) and ["sshpass", "-p", s, "ssh", "host"], s)
    add("sshpass -pX", (s := p()) and ["sshpass", f"-p{s}", "scp", "a", "b:"], s)
    add("redis-cli -a X", (s := p()) and ["redis-cli", "-h", "cache", "-a", s, "ping"], s)
    add("sqlcmd -P X", (s := p()) and ["sqlcmd", "-S", "db", "-U", "sa", "-P", s], s)
    add("ldapsearch -w X", (s := p()) and ["ldapsearch", "-x", "-D", "cn=admin", "-w", s], s)
    add("curl -u user:X", (s := p()) and ["curl", "-u", f"svc:{s}", "http://127.0.0.1:9/"], s)
    add("curl --user=user:X", (s := p()) and ["curl", f"--user=svc:{s}", "http://127.0.0.1:9/"], s)
    add("smbclient -U user%X", (s := p()) and ["smbclient", "//fs/share", "-U", f"bob%{s}"], s)
    add(
        "skopeo --src-creds user:X",
        (s := p()) and ["skopeo", "copy", "--src-creds", f"me:{s}", "a", "b"],
        s,
    )
    add(
        "skopeo --dest-creds=user:X",
        (s := p()) and ["skopeo", "copy", f"--dest-creds=me:{s}", "a", "b"],
        s,
    )
    add(
        "aws configure set aws_secret_access_key X",
        (s := rand(40, B64)) and ["aws", "configure", "set", "aws_secret_access_key", s],
        s,
    )
    add(
        "npm config set //reg/:_authToken X",
        (s := "npm_" + rand(36))
        and ["npm", "config", "set", "//registry.npmjs.org/:_authToken", s],
        s,
    )
    add(
        "npm config set //reg/:_authToken=X",
        (s := rand(36)) and ["npm", "config", "set", f"//npm.example.com/:_authToken={s}"],
        s,
    )
    add(
        "docker login -p X", (s := p()) and ["docker", "login", "-u", "me", "-p", s, "reg.local"], s
    )
    add(
        "podman login --password X",
        (s := p()) and ["podman", "login", "--password", s, "quay.io"],
        s,
    )
    add(
        "env DB_PASSWORD='a b c'",
        (s := f"{rand(5)} {rand(5)} {rand(4)}") and ["env", f"DB_PASSWORD={s}", "app"],
        s,
    )
    add(
        "env OPENAI_API_KEY=X",
        (s := "sk-proj-" + rand(48, URLSAFE)) and ["env", f"OPENAI_API_KEY={s}", "app"],
        s,
    )
    add(
        "docker run -e AWS_SECRET_ACCESS_KEY=X",
        (s := rand(40, B64)) and ["docker", "run", "-e", f"AWS_SECRET_ACCESS_KEY={s}", "img"],
        s,
    )
    add(
        "docker run --env GITHUB_TOKEN=X",
        (s := "ghp_" + rand(36)) and ["docker", "run", "--env", f"GITHUB_TOKEN={s}", "img"],
        s,
    )
    add(
        "curl -H 'Authorization: Bearer a|b'",
        (s := f"{rand(8, HEX)}|{rand(40)}")
        and ["curl", "-H", f"Authorization: Bearer {s}", "http://127.0.0.1:9/"],
        s,
    )
    add(
        "curl -H 'X-Api-Key: X'",
        (s := rand(32)) and ["curl", "-H", f"X-Api-Key: {s}", "http://127.0.0.1:9/"],
        s,
    )
    add(
        "curl -H 'Cookie: session=X'",
        (s := rand(40, URLSAFE))
        and ["curl", "-H", f"Cookie: session={s}; theme=dark", "http://127.0.0.1:9/"],
        s,
    )
    add(
        "git clone https://user:X@host",
        (s := p()) and ["git", "clone", f"https://deploy:{s}@git.example.com/r.git"],
        s,
    )
    add(
        "psql postgres://u:p@/with@/",
        (s := f"{rand(5)}@{rand(4)}/{rand(5)}")
        and ["psql", f"postgres://app:{s}@db.internal:5432/x"],
        s,
    )
    add(
        "openssl -passin pass:X",
        (s := p()) and ["openssl", "rsa", "-in", "k.pem", "-passin", f"pass:{s}"],
        s,
    )
    add("bare sk-ant- key", (s := "sk-ant-api03-" + rand(93, URLSAFE) + "AA") and ["tool", s], s)
    add("bare ghp_ token", (s := "ghp_" + rand(36)) and ["git", "push", s], s)
    add("bare AKIA id", (s := "AKIA" + rand(16, BASE32)) and ["aws", s], s)
    return out


def _token_forms() -> list[tuple[str, str]]:
    """(name, token) for formats found by the catalogue, wherever they stand."""
    return [
        ("GitLab PAT", "glpat-" + rand(20, URLSAFE)),
        ("GitLab runner token", "glrt-" + rand(20, URLSAFE)),
        ("npm token", "npm_" + rand(36)),
        ("PyPI token", "pypi-AgEIcHlwaS5vcmc" + rand(70, URLSAFE)),
        ("Stripe live key", "sk_live_" + rand(24)),
        ("Stripe restricted key", "rk_live_" + rand(24)),
        ("Stripe webhook secret", "whsec_" + rand(32)),
        ("Slack app token", f"xapp-1-A{rand(10, BASE32)}-{rand(13, '0123456789')}-{rand(64, HEX)}"),
        ("Slack bot token", f"xoxb-{rand(12, '0123456789')}-{rand(12, '0123456789')}-{rand(24)}"),
        (
            "Slack user token",
            f"xoxp-{rand(12, '0123456789')}-{rand(12, '0123456789')}-{rand(12, '0123456789')}-{rand(32, HEX)}",
        ),
        ("Groq key", "gsk_" + rand(52)),
        ("xAI key", "xai-" + rand(80)),
        ("Google OAuth access token", "ya29." + rand(120, URLSAFE)),
        ("Google OAuth client secret", "GOCSPX-" + rand(28, URLSAFE)),
        ("Google API key", "AIza" + rand(35, URLSAFE)),
        ("SendGrid key", f"SG.{rand(22, URLSAFE)}.{rand(43, URLSAFE)}"),
        ("Databricks token", "dapi" + rand(32, HEX)),
        ("Shopify access token", "shpat_" + rand(32, HEX)),
        ("Shopify shared secret", "shpss_" + rand(32, HEX)),
        ("DigitalOcean PAT", "dop_v1_" + rand(64, HEX)),
        ("DigitalOcean OAuth", "doo_v1_" + rand(64, HEX)),
        ("Vault service token", "hvs." + rand(96, URLSAFE)),
        ("Vault batch token", "hvb." + rand(138, URLSAFE)),
        ("age secret key", "AGE-SECRET-KEY-1" + rand(58, BECH32)),
        ("JWT", _jwt()),
        ("OpenAI project key", "sk-proj-" + rand(58, URLSAFE) + "T3BlbkFJ" + rand(58, URLSAFE)),
        ("Anthropic key", "sk-ant-api03-" + rand(93, URLSAFE) + "AA"),
        ("GitHub fine-grained PAT", "github_pat_" + rand(82, ALNUM + "_")),
        ("GitHub OAuth token", "gho_" + rand(36)),
        ("Hugging Face token", "hf_" + rand(34, string.ascii_letters)),
        ("Linear key", "lin_api_" + rand(40)),
        ("Notion token", "ntn_" + rand(11, "0123456789") + rand(35)),
        ("Perplexity key", "pplx-" + rand(48)),
        ("Doppler token", "dp.pt." + rand(43)),
        ("Postman key", f"PMAK-{rand(24, HEX)}-{rand(34, HEX)}"),
        ("Sentry user token", "sntryu_" + rand(64, HEX)),
        ("Pulumi token", "pul-" + rand(40, HEX)),
        ("Heroku key v2", "HRKU-AA" + rand(58, URLSAFE)),
        ("Grafana service account token", f"glsa_{rand(32)}_{rand(8, HEX)}"),
        ("Twilio key", "SK" + rand(32, HEX)),
        ("Square token", "EAAA" + rand(60, URLSAFE)),
        ("1Password service token", "ops_eyJ" + rand(260, B64)),
        (
            "Slack webhook",
            f"https://hooks.slack.com/services/T{rand(10, BASE32)}/B{rand(10, BASE32)}/{rand(24)}",
        ),
        (
            "Discord webhook",
            f"https://discord.com/api/webhooks/{rand(18, '0123456789')}/{rand(68, URLSAFE)}",
        ),
        ("AWS access key id", "AKIA" + rand(16, BASE32)),
    ]


def _text_forms() -> list[tuple[str, str, list[str]]]:
    """(name, text, secrets) for structural forms: names, headers, URLs, connection strings."""
    out: list[tuple[str, str, list[str]]] = []

    def add(name: str, text: str, *secrets: str) -> None:
        out.append((name, text, list(secrets)))

    p = _pw
    add(
        'export DB_PASSWORD="with spaces"',
        f'export DB_PASSWORD="{(s := f"{rand(5)} {rand(6)} {rand(4)}")}"',
        s,
    )
    add("--password 'quoted'", f"app --password '{(s := f'{rand(6)} {rand(6)}')}' --verbose", s)
    add(
        "PASSWORD=value,with;symbols",
        f"PASSWORD={(s := rand(5) + ',' + rand(4) + '}' + rand(5) + '@' + rand(4))} run",
        s,
    )
    add("API_TOKEN=value&more", f"API_TOKEN={(s := rand(8) + '&' + rand(8))} ./run.sh", s)
    add(
        "SECRET=value/with/slashes",
        f"SECRET={(s := rand(6) + '/' + rand(6) + '/' + rand(6))} ./run.sh",
        s,
    )
    add("PWD= in a connection string", f"Driver={{ODBC}};Server=db;Uid=sa;PWD={(s := p())};", s)
    add("*_PWD=", f"ORACLE_PWD={(s := p())} sqlplus", s)
    add("*_KEY=", f"STRIPE_KEY={(s := rand(30))} node app.js", s)
    add(
        "AccountKey=",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={(s := rand(86, B64) + '==')};EndpointSuffix=core.windows.net",
        s,
    )
    add(
        "SAS sig=",
        f"https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2026-01-01&sr=b&sp=r&sig={(s := rand(43, ALNUM) + '%3D')}",
        s,
    )
    add(
        "SharedAccessKey=",
        f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey={(s := rand(43, B64) + '=')}",
        s,
    )
    add(
        "Server=..;Password=..",
        f"Server=tcp:db,1433;Database=app;User ID=sa;Password={(s := p())};Encrypt=true",
        s,
    )
    add(
        "Password=..;.. with ; inside",
        f"Host=db;Username=app;Password={(s := rand(6) + ';' + rand(6))};Port=5432",
        s,
    )
    add("postgres://u:p@h", f"postgres://app:{(s := p())}@db.internal:5432/app", s)
    add("mongodb+srv://u:p@h", f"mongodb+srv://admin:{(s := p())}@cluster0.abcde.mongodb.net/db", s)
    add("redis://:p@h", f"redis://:{(s := p())}@cache.internal:6379/0", s)
    add(
        "URL password with @",
        f"https://bob:{(s := rand(5) + '@' + rand(6))}@git.example.com/r.git",
        s,
    )
    add(
        "URL password with /",
        f"amqp://guest:{(s := rand(5) + '/' + rand(6))}@mq.internal:5672/vh",
        s,
    )
    add(
        "Authorization: Bearer a|b",
        f"Authorization: Bearer {(s := rand(6, '0123456789') + '|' + rand(40))}",
        s,
    )
    add(
        "Authorization: Basic",
        f"Authorization: Basic {(s := base64.b64encode(f'svc:{rand(12)}'.encode()).decode())}",
        s,
    )
    add("Authorization: token (GitHub)", f"Authorization: token {(s := rand(40, HEX))}", s)
    add(
        "Proxy-Authorization:",
        f"Proxy-Authorization: Basic {(s := base64.b64encode(f'p:{rand(12)}'.encode()).decode())}",
        s,
    )
    add("Cookie:", f"Cookie: sessionid={(s := rand(32, HEX))}; csrftoken={(t := rand(32))}", s, t)
    add("Set-Cookie:", f"Set-Cookie: auth={(s := rand(40, URLSAFE))}; Path=/; HttpOnly", s)
    add("Ocp-Apim-Subscription-Key:", f"Ocp-Apim-Subscription-Key: {(s := rand(32, HEX))}", s)
    add("X-Api-Key:", f"X-Api-Key: {(s := rand(32))}", s)
    add("x-goog-api-key header", f"x-goog-api-key: {(s := rand(30))}", s)
    add("PRIVATE-TOKEN header", f"PRIVATE-TOKEN: {(s := rand(26))}", s)
    add('"pwd": JSON key', f'{{"user": "bob", "pwd": "{(s := p())}"}}', s)
    add('"api_key": JSON key', f'{{"api_key": "{(s := rand(32))}", "model": "m"}}', s)
    add(
        '"client_secret": JSON',
        f'{{"client_id": "app", "client_secret": "{(s := rand(40, URLSAFE))}"}}',
        s,
    )
    add(
        '"password": JSON with spaces',
        f'{{"password": "{(s := f"{rand(5)} {rand(5)} {rand(5)}")}"}}',
        s,
    )
    add("'password': dict repr", f"{{'user': 'bob', 'password': '{(s := p())}'}}", s)
    add("escaped JSON in a message", f'body={{\\"token\\": \\"{(s := rand(30))}\\"}}', s)
    add(
        "form body client_secret=",
        f"grant_type=client_credentials&client_id=app&client_secret={(s := rand(32, URLSAFE))}",
        s,
    )
    add(
        "query ?access_token=",
        f"GET https://api.example.com/v1/items?access_token={(s := rand(30))}&page=2",
        s,
    )
    add(
        "query X-Amz-Signature",
        f"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={(t := 'AKIA' + rand(16, BASE32))}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={(s := rand(64, HEX))}",
        s,
        t,
    )
    add(
        "query X-Amz-Security-Token",
        f"https://b.s3.amazonaws.com/k?X-Amz-Security-Token={(s := 'IQoJb3JpZ2luX2Vj' + rand(80, B64))}&X-Amz-Expires=60",
        s,
    )
    add("python kwargs auth=(user, pw)", f'requests.get(url, auth=("svc", "{(s := p())}"))', s)
    add("python kwarg password=", f'client.login(user="bob", password="{(s := p())}")', s)
    add("python assignment api_key = '...'", f"api_key = '{(s := rand(32))}'", s)
    add("yaml password: value", f"password: {(s := p())}", s)
    add('yaml token: "value"', f'token: "{(s := rand(36))}"', s)
    add(
        "echo X | docker login --password-stdin",
        f"echo {(s := p())} | docker login -u me --password-stdin reg.local",
        s,
    )
    add(
        "echo 'X' | podman login --password-stdin",
        f"echo '{(s := p())}' | podman login --password-stdin quay.io",
        s,
    )
    add("env prefix FOO_TOKEN=X cmd", f"FOO_TOKEN={(s := rand(30))} ./deploy.sh --now", s)
    add(
        "env prefix two secrets",
        f"DB_PASSWORD={(s := p())} REDIS_PASSWORD={(t := p())} ./app",
        s,
        t,
    )
    add("env prefix quoted with spaces", f"MY_SECRET='{(s := f'{rand(5)} {rand(5)}')}' ./app", s)
    add("mysql -pX in a shell string", f"mysql -h db -u root -p{(s := p())} app < dump.sql", s)
    add("sshpass -p X in a shell string", f"sshpass -p '{(s := p())}' ssh deploy@host uptime", s)
    add("redis-cli -a X in a shell string", f"redis-cli -h cache -a {(s := p())} FLUSHALL", s)
    add("sqlcmd -P X in a shell string", f"sqlcmd -S db -U sa -P {(s := p())} -Q 'select 1'", s)
    add(
        "ldapsearch -w X in a shell string",
        f"ldapsearch -x -D cn=admin,dc=x -w {(s := p())} -b dc=x",
        s,
    )
    add(
        "curl -u user:X in a shell string",
        f"curl -fsS -u admin:{(s := p())} http://127.0.0.1:9/api",
        s,
    )
    add(
        "smbclient -U user%X in a shell string",
        f"smbclient //fs/share -U bob%{(s := p())} -c ls",
        s,
    )
    add(
        "aws configure set in a shell string",
        f"aws configure set aws_secret_access_key {(s := rand(40, B64))}",
        s,
    )
    add(
        "npm config set _authToken in a shell string",
        f"npm config set //registry.npmjs.org/:_authToken {(s := 'npm_' + rand(36))}",
        s,
    )
    add(
        "--api_key=X in a shell string",
        f"python train.py --api_key={(s := rand(32))} --epochs 3",
        s,
    )
    add("-password X (single dash)", f"keytool -list -keystore ks.jks -storepass {(s := p())}", s)
    add(
        "PEM private key block",
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + (s := _pem_body())
        + "\n-----END RSA PRIVATE KEY-----",
        *s.split("\n"),
    )
    add(
        "PEM private key cut short",
        "key=-----BEGIN OPENSSH PRIVATE KEY-----\n" + (s := rand(70, B64)),
        s,
    )
    add("high-entropy word after a plain flag", f"uploader --sig-value {(s := rand(40, ALNUM))}", s)
    add("high-entropy bare word", f"token for the run: {(s := rand(44, ALNUM))}", s)
    add("AWS secret key by name in text", f"aws_secret_access_key={(s := rand(40, B64))}", s)
    add("session token by name", f"AWS_SESSION_TOKEN={(s := 'FwoGZXIvYXdzE' + rand(100, B64))}", s)
    add(
        "Basic auth in URL of an error",
        f"ConnectionError: http://admin:{(s := p())}@10.0.0.1:8080/api refused",
        s,
    )
    add(
        "secret in an error body echo",
        f"401 Unauthorized: invalid key '{(s := 'sk-proj-' + rand(48, URLSAFE))}'",
        s,
    )
    add(
        "CalledProcessError-like list repr",
        f"Command '['sshpass', '-p', '{(s := f'{rand(5)} {rand(5)}')}', 'ssh', 'h']' returned non-zero exit status 5.",
        s,
    )
    add(
        "git credential url in text",
        f"fatal: unable to access 'https://oauth2:{(s := 'glpat-' + rand(20, URLSAFE))}@gitlab.com/g/r.git/'",
        s,
    )
    return out


def _stack_forms() -> list[tuple[str, str, list[str]]]:
    """(name, python source line, secrets) shown in a stuck action's stack."""
    p = _pw
    return [
        ("stack auth=(user, pw)", f'auth = ("svc", "{(s := p())}")', [s]),
        ("stack password = '...'", f"password = '{(s := p())}'", [s]),
        (
            "stack headers Authorization",
            f'headers = {{"Authorization": "Bearer {(s := rand(40, URLSAFE))}"}}',
            [s],
        ),
        ("stack token literal", f'client = make_client("{(s := "ghp_" + rand(36))}")', [s]),
        ("stack connection string", f'dsn = "postgres://app:{(s := p())}@db/app"', [s]),
    ]


def _url_forms() -> list[tuple[str, str, list[str]]]:
    """(name, URL path+query or S3 key, secrets)."""
    p = _pw
    return [
        ("httpx URL ?api_key=", f"/v1/items?api_key={(s := rand(32))}&page=1", [s]),
        ("httpx URL ?token=", f"/hook?token={(s := rand(40, URLSAFE))}", [s]),
        ("httpx URL sig=", f"/blob?sv=2022&sig={(s := rand(43))}", [s]),
        ("httpx URL ?password=", f"/login?user=bob&password={(s := p())}", [s]),
        ("S3 key with token=", f"exports/token={(s := rand(32))}/part-0.csv", [s]),
        ("S3 key with password=", f"backups/password={(s := p())}/db.sql", [s]),
        ("S3 key with a GitHub token", f"tmp/{(s := 'ghp_' + rand(36))}.txt", [s]),
    ]


def _env_set_forms() -> list[tuple[str, str, str]]:
    """(env name, value, shell template with {v}): set in os.environ, then used bare."""
    return [
        ("DEPLOY_TOKEN", rand(12) + "-" + rand(9), "exit 0; ./deploy --with {v}"),
        ("SERVICE_PASSWORD", _pw(), "exit 0; printf '%s' {v} | login-tool"),
        ("PARTNER_API_KEY", rand(24), "exit 0; fetch-report {v} 2026-01"),
        ("SIGNING_SECRET", rand(20), "exit 0; sign --value={v}"),
    ]


def _build() -> list[Form]:
    forms: list[Form] = []
    for i, (name, argv, secrets) in enumerate(_argv_forms()):
        channel = ARGV_CHANNELS[i % len(ARGV_CHANNELS)]
        forms.append(Form(f"{name} [{channel}]", channel, tuple(secrets), argv=tuple(argv)))
    texts = [(n, t, s) for n, t, s in _text_forms()]
    texts += [(n, f"using {tok} now", [tok]) for n, tok in _token_forms()]
    for i, (name, text, secrets) in enumerate(texts):
        channel = TEXT_CHANNELS[i % len(TEXT_CHANNELS)]
        forms.append(Form(f"{name} [{channel}]", channel, tuple(secrets), text=text))
    for name, line, secrets in _stack_forms():
        forms.append(Form(name, STACK, tuple(secrets), text=line))
    for name, text, secrets in _url_forms():
        channel = URL_CHANNELS[0] if name.startswith("httpx") else URL_CHANNELS[1]
        forms.append(Form(f"{name} [{channel}]", channel, tuple(secrets), text=text))
    for env_name, value, template in _env_set_forms():
        forms.append(
            Form(
                f"{env_name} set after start-up [{ENV_SET}]",
                ENV_SET,
                (value,),
                text=f"{env_name}={template.format(v=value)}",
            )
        )
    return forms


FORMS: list[Form] = _build()

# Details that hold no secret: each must be written exactly as given.
BENIGN: list[str] = [
    "pytest tests/test_token_refresh.py::test_x",
    "git log --author=alice --since=2.weeks",
    "stuck at watchdog.py:123 in wait_for",
    "git checkout 3f9c2b1a7e8d4c6b5a4f3e2d1c0b9a8f7e6d5c4b",
    "trace 4f2b9c1e-8a3d-4e5f-9a1b-2c3d4e5f6a7b",
    "PutObject s3://my-bucket/data/2024/01/part-0001.parquet",
    "generate (anthropic/claude-3-5-sonnet-20241022)",
    "generate (openai/gpt-4o-2024-08-06)",
    "generate (openai/gpt-4o-mini, max_tokens=1024)",
    "python -m pip install --no-cache-dir -r requirements.txt",
    "PWD=/home/user/work make test",
    "docker login --password-stdin registry.example.com",
    "docker run --rm -e LOG_LEVEL=debug -v /data:/data img:1.2.3",
    "pytest tests/test_auth.py -k test_password_reset -x",
    "sort_key=name partition_key=date limit=100",
    "--token-file /run/secrets/token --password-file /etc/pw",
    "basic authentication failed for user alice",
    "bash(cmd='ls -la /tmp')",
    "read_file(path='src/tokenizer.py')",
    "https://example.com/docs?page=2&lang=en",
    "postgres://db.internal:5432/app",
    "http://127.0.0.1:8080/v1/chat/completions",
    "ssh -p 2222 deploy@host uptime",
    "mysql -h db -u root -p app",
    "redis-cli -h cache -p 6380 ping",
    "kubectl get secrets -n prod",
    "aws s3 cp s3://bucket/key.json ./key.json",
    "make -j4 TOKEN_LIMIT=4096",
    "inspect eval tasks/passkey.py --model openai/gpt-4o",
    "token count 1532 (prompt 1200, completion 332)",
    "session 20261129T052112-4242 started",
    "api_key = os.environ['OPENAI_API_KEY']",
    "token = get_token()",
    "password_hash=bcrypt_verify(hash, given)",
    "git commit -m 'fix: handle expired token'",
    "npm publish --access public",
    "Model: generate (mockllm/model) (enter)",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
]


def windows(secret: str, width: int = 12) -> set[str]:
    """Every substring of ``secret`` of ``width`` characters: a partly masked secret leaks too."""
    if len(secret) <= width:
        return {secret}
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}
