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
from typing import Any

from secrets_corpus import BENIGN, FORMS, Form
from secrets_corpus import SECRETS as S

from autotrace import trace_action, trace_message


def _quiet() -> dict[str, Any]:
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def _forms(channel: str) -> list[Form]:
    return [form for form in FORMS if form.channel == channel]


def child_processes() -> None:
    """Corpus forms as argv words, shell strings, os.system and CalledProcessError text."""
    for form in _forms("argv"):
        subprocess.run(["true", *form.argv], check=True, **_quiet())
    for form in _forms("python-argv"):
        # A traced Python child that writes an action, so that its process record exists.
        code = "import subprocess; subprocess.run(['true'])"
        subprocess.run([sys.executable, "-c", code, *form.argv], check=True, **_quiet())
    for form in _forms("called-process-error"):
        try:
            with trace_action("Tool Call", "run_command"):
                subprocess.run(["false", *form.argv], check=True, **_quiet())
        except subprocess.CalledProcessError:
            pass
    for form in _forms("shell"):
        subprocess.run("exit 0; " + form.text, shell=True, **_quiet())
    for form in _forms("os.system"):
        os.system("exit 0; " + form.text)
    for form in _forms("env-set"):
        name, command = form.text.split("=", 1)
        os.environ[name] = form.secrets[0]  # set after start-up, then used bare
        subprocess.run(command, shell=True, **_quiet())
    # The traced program's own argv secrets reach a traced Python child too.
    subprocess.run(
        [sys.executable, "-c", "import subprocess; subprocess.run(['true'])", *sys.argv[1:]],
        check=True,
        **_quiet(),
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


def model_errors() -> None:
    """Model calls whose error body echoes a corpus form (the server's script has them)."""
    import openai

    client = openai.OpenAI(base_url=os.environ["LLM_URL"] + "/v1", api_key="none", max_retries=0)
    for _ in _forms("model-error"):
        try:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
            )
        except openai.APIStatusError:
            pass


def url_errors_and_keys() -> None:
    """httpx errors carrying a URL with a secret; S3 keys carrying one."""
    import boto3
    import httpx

    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    for form in _forms("httpx-error"):
        try:
            with trace_action("Tool Call", "fetch"):
                response = httpx.get(endpoint + form.text)
                response.raise_for_status()
                raise RuntimeError(f"unexpected answer from {response.url}")
        except (httpx.HTTPError, RuntimeError):
            pass
    client = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])
    for form in _forms("s3-key"):
        client.put_object(Bucket="secrets-bucket", Key=form.text, Body=b"x")


def tool_calls() -> None:
    """MCP tool calls (in-process server) whose arguments hold corpus forms."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("corpus")

    @server.tool()
    def echo(text: str) -> str:
        """Give the text back."""
        return text

    async def calls() -> None:
        async with Client(server) as client:
            for form in _forms("tool"):
                await client.call_tool("echo", {"text": form.text + " " + "x" * 80})

    asyncio.run(calls())


def api_channels() -> None:
    """Errors, messages, message fields, extras and details given to the action API."""
    for form in _forms("error"):
        try:
            with trace_action("Tool Call", "call_api"):
                raise RuntimeError(form.text)
        except RuntimeError:
            pass
    for form in _forms("message"):
        trace_message("corpus", form.text)
    for form in _forms("message-field"):
        trace_message("corpus", "a field", note=form.text, nested={"items": [form.text]})
    for form in _forms("extra"):
        with trace_action(
            "Tool Call", "extra", extra={"note": form.text, "more": [{"v": form.text}]}
        ):
            pass
    for form in _forms("detail"):
        with trace_action("Tool Call", form.text):
            pass
    for detail in BENIGN:
        with trace_action("Tool Call", detail):
            pass


def stuck_stack() -> None:
    """A stuck action whose stack shows corpus forms in its source lines."""
    forms = _forms("stack")
    lines = ["import threading", "def make_client(x):", "    return x", ""]
    for i, form in enumerate(forms):
        call = f"f{i + 1}()" if i + 1 < len(forms) else "threading.Event().wait(3)"
        lines += [f"def f{i}():", f"    {form.text}; {call}", ""]
    path = os.path.join(os.environ["SECRETS_WORK_DIR"], "stuck_module.py")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    sys.path.insert(0, os.environ["SECRETS_WORK_DIR"])
    import stuck_module  # type: ignore[import-not-found]

    with trace_action("Tool Call", "stuck"):
        stuck_module.f0()


def main() -> None:
    assert os.environ["MY_SERVICE_SECRET"] == S["env MY_SERVICE_SECRET"]
    child_processes()
    model_clients()
    model_errors()
    s3_calls()
    url_errors_and_keys()
    tool_calls()
    api_channels()
    stuck_stack()
    print("done", flush=True)


if __name__ == "__main__":
    main()
