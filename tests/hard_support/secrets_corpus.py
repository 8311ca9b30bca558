"""Secret forms for the secrets suite: (form, secret value), each value unique.

Every value is shaped like the real thing (an OpenAI key, an AWS secret, a GitHub
token...) so that it is the redaction patterns, not luck, that keep it out of traces.
"""

from __future__ import annotations

SECRETS: dict[str, str] = {
    # argv of a child process
    "argv --password": "Hunter2-argvPw-q81x",
    "argv --token=": "tokArgvEq-7Yh2kLmP0o",
    "argv --api-key": "apiKeyArgv-Zr55wq0P",
    "argv AWS_SECRET_ACCESS_KEY=": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYARGV0001key",
    "argv URL user:pass@": "UrlPassArgv-9kW3z",
    "argv sk- key": "sk-proj-ArgvOnly0123456789abcdefXYZ",
    "argv docker login -p": "DockerLoginPw-55aa",
    "argv Authorization: Bearer": "eyJhbGciArgvBearer.0123456789abcdef",
    "argv ghp_ token": "ghp_ArgvGithubToken0123456789abcdefAB",
    "argv AKIA key id": "AKIAARGVHARD0000001X",
    "shell --password": "ShellPw-Ut7r42mmQ",
    "shell URL user:pass@": "ShellUrlPw-b00b1es",
    "shell -H Authorization: Bearer": "ShellBearerTok.0123456789zz",
    # environment of a child process and of the traced program
    "env OPENAI_API_KEY": "sk-proj-EnvChild0123456789abcdefQRS",
    "env DATABASE_URL user:pass@": "DbUrlEnvPw-X4c9",
    "env GITHUB_TOKEN": "ghp_EnvGithubToken0123456789abcdefCD",
    "env MY_SERVICE_SECRET": "MySvcSecretEnv-88ff",
    # model clients against the local LLM server
    "openai api_key": "sk-proj-OpenaiClient0123456789abcdefTUV",
    "openai default header X-Api-Key": "HdrXApiKey-0123456789abc",
    "openai error body echoing the key": "sk-proj-ErrorEcho0123456789abcdefWXY",
    "anthropic api_key": "sk-ant-api03-AnthropicClient0123456789abcdef",
    "anthropic error body with password": "AnthErrBodyPw-31337",
    "anthropic header Authorization: Bearer": "AnthHdrBearer.0123456789qq",
    # boto3 credentials against the local S3 server
    "boto3 aws_access_key_id": "AKIABOTOHARD00000002",
    "boto3 aws_secret_access_key": "bOtO3SecretAccessKey/0123456789abcdefGHIJ",
    "boto3 aws_session_token": "FwoGZXIvYXdzEBoaDBotoSessionToken0123456789",
    # exceptions raised inside traced actions
    "error JSON request body password": "JsonBodyPw-Qq12",
    "error form body client_secret": "FormBodyClientSecret-77",
    "error URL ?access_token=": "QueryAccessToken-0099",
    "error __cause__ proxy user:pass@": "CauseProxyPw-4455",
    "error Authorization: Bearer": "ErrBearerTok.abcdef012345",
    "error dict repr 'api_key'": "DictReprApiKey-6622",
    "error sk-ant- key": "sk-ant-api03-ErrorMsgKey0123456789abcdef",
    # details and messages given to the action API
    "detail session_key=": "SessKeyDetail-1122",
    "detail xoxb- Slack token": "xoxb-1234567890-SlackDetailTok",
    "detail hf_ token": "hf_DetailHuggingFace0123456789abcd",
    "message password=": "MsgPassword-Zz90",
    "message postgres URL user:pass@": "MsgPgUrlPw-7788",
}


def windows(secret: str, width: int = 12) -> set[str]:
    """Every substring of ``secret`` of ``width`` characters: a partly masked secret leaks too."""
    if len(secret) <= width:
        return {secret}
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}
