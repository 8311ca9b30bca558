"""A traced program that hands every secret of the corpus to a real patched call.

Run by the secrets suite as ``inspect-trace run -- python secrets_program.py ARGV...``
(its own argv carries secrets too), with LLM_URL and the AWS endpoint variables set.
Each step swallows the error it provokes on purpose: the trace has to keep the secret out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from secrets_corpus import SECRETS as S

from autotrace import trace_action, trace_message


def child_processes() -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {
        **os.environ,
        "OPENAI_API_KEY": S["env OPENAI_API_KEY"],
        "DATABASE_URL": f"postgres://app:{S['env DATABASE_URL user:pass@']}@db.internal/x",
        "GITHUB_TOKEN": S["env GITHUB_TOKEN"],
    }
    # A traced Python child: its own process record carries this argv.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, subprocess; assert os.environ['GITHUB_TOKEN']; subprocess.run(['true'])",
            "--password",
            S["argv --password"],
            f"--token={S['argv --token=']}",
            "--api-key",
            S["argv --api-key"],
            f"AWS_SECRET_ACCESS_KEY={S['argv AWS_SECRET_ACCESS_KEY=']}",
            f"https://deploy:{S['argv URL user:pass@']}@git.example.com/repo.git",
            S["argv sk- key"],
            "-H",
            f"Authorization: Bearer {S['argv Authorization: Bearer']}",
            S["argv ghp_ token"],
            S["argv AKIA key id"],
        ],
        env=env,
        check=True,
        **quiet,
    )
    # A Docker CLI call (a stand-in `docker` first on PATH: no daemon, no network).
    bin_dir = os.path.join(os.environ["SECRETS_WORK_DIR"], "bin")
    os.makedirs(bin_dir, exist_ok=True)
    docker = os.path.join(bin_dir, "docker")
    with open(docker, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(docker, 0o755)
    path = bin_dir + os.pathsep + os.environ["PATH"]
    login = ["docker", "login", "-u", "me", "-p", S["argv docker login -p"], "registry.local"]
    subprocess.run(login, env={**os.environ, "PATH": path}, check=True, **quiet)
    # A program that does not exist: the spawn error is traced with its command line.
    try:
        subprocess.run(["no-such-program-here", "--password", S["argv --password"]], **quiet)
    except FileNotFoundError:
        pass
    # Shell command strings.
    subprocess.run(
        f"true --password {S['shell --password']} && "
        f"true https://admin:{S['shell URL user:pass@']}@127.0.0.1:9/ && "
        f"true -H 'Authorization: Bearer {S['shell -H Authorization: Bearer']}'",
        shell=True,
        check=True,
        **quiet,
    )


def model_clients() -> None:
    import anthropic
    import openai

    base = os.environ["LLM_URL"]
    messages = [{"role": "user", "content": "hi"}]
    o = openai.OpenAI(
        base_url=base + "/v1",
        api_key=S["openai api_key"],
        max_retries=0,
        default_headers={"X-Api-Key": S["openai default header X-Api-Key"]},
    )
    o.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    try:  # the server answers 401 echoing the key, as the real API does
        openai.OpenAI(
            base_url=base + "/v1", api_key=S["openai error body echoing the key"], max_retries=0
        ).chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
        )
    except openai.AuthenticationError:
        pass

    async def anthropic_calls() -> None:
        a = anthropic.AsyncAnthropic(
            base_url=base,
            api_key=S["anthropic api_key"],
            max_retries=0,
            default_headers={
                "Authorization": f"Bearer {S['anthropic header Authorization: Bearer']}"
            },
        )
        await a.messages.create(model="claude-x", max_tokens=10, messages=messages)  # type: ignore[arg-type]
        try:  # the server answers 400 with the request's password in the message
            await a.messages.create(model="claude-x", max_tokens=10, messages=messages)  # type: ignore[arg-type]
        except anthropic.BadRequestError:
            pass

    asyncio.run(anthropic_calls())


def s3_calls() -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
        region_name=os.environ["AWS_DEFAULT_REGION"],
        aws_access_key_id=S["boto3 aws_access_key_id"],
        aws_secret_access_key=S["boto3 aws_secret_access_key"],
        aws_session_token=S["boto3 aws_session_token"],
    )
    client.create_bucket(Bucket="secrets-bucket")
    client.put_object(Bucket="secrets-bucket", Key="a.txt", Body=b"hello")
    try:
        client.put_object(Bucket="no-such-bucket-here", Key="b.txt", Body=b"x")
    except client.exceptions.NoSuchBucket:
        pass


def errors_in_actions() -> None:
    def fail(exc: BaseException, cause: BaseException | None = None) -> None:
        try:
            with trace_action("Tool Call", "call_api"):
                if cause is not None:
                    raise exc from cause
                raise exc
        except Exception:
            pass

    password = S["error JSON request body password"]
    body = '{"username": "bob", "password": "' + password + '"}'
    fail(RuntimeError(f"POST /login failed with 500: body={body}"))
    fail(
        ValueError(
            "400 Bad Request: grant_type=client_credentials&client_id=app&client_secret="
            + S["error form body client_secret"]
        )
    )
    fail(
        OSError(
            f"GET https://api.example.com/v1/items?access_token={S['error URL ?access_token=']}&page=2"
        )
    )
    fail(
        RuntimeError("upload failed"),
        ConnectionError(
            f"proxy http://user:{S['error __cause__ proxy user:pass@']}@proxy.local:3128 refused"
        ),
    )
    fail(
        PermissionError(
            f"401 Unauthorized (Authorization: Bearer {S['error Authorization: Bearer']})"
        )
    )
    fail(KeyError(str({"model": "gpt", "api_key": S["error dict repr 'api_key'"]})))
    fail(RuntimeError(f"invalid x-api-key {S['error sk-ant- key']}"))


def details_and_messages() -> None:
    with trace_action("Tool Call", f"connect session_key={S['detail session_key=']}"):
        pass
    with trace_action("Tool Call", f"post to slack with {S['detail xoxb- Slack token']}"):
        pass
    with trace_action("Tool Call", f"download with {S['detail hf_ token']}"):
        pass
    trace_message("db", f"connecting with password={S['message password=']}")
    trace_message("db", f"url postgres://app:{S['message postgres URL user:pass@']}@db/x")


def main() -> None:
    assert os.environ["MY_SERVICE_SECRET"] == S["env MY_SERVICE_SECRET"]
    child_processes()
    model_clients()
    s3_calls()
    errors_in_actions()
    details_and_messages()
    print("done", flush=True)


if __name__ == "__main__":
    main()
