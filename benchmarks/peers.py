"""Peer suites: other projects' tests, run plain and under `inspect-trace run`, compared.

    python benchmarks/peers.py                       # every suite (tens of minutes)
    python benchmarks/peers.py --suite cpython-subprocess --suite openai
    python benchmarks/peers.py --list

ddtrace's idea ("framework tests"): the test suites of the libraries we patch are the
strongest proof that a traced program behaves as an untraced one. Each suite runs twice
with the same command and flags, once plain and once as ``inspect-trace run -- CMD``;
per-test outcomes (passed, failed, error, skipped) come from a JUnit XML report and are
compared test by test, with the wall time of each run. Test suites come from PyPI sdists
(openai, anthropic, botocore and s3fs ship their tests), from the interpreter's own
``test`` package, or from a git checkout at a release tag (inspect_ai, whose sdist ships
no tests: ``--inspect-repo PATH``; without one that suite is skipped), each in a venv of
its own under ``--work`` (reused across runs) with this project installed, so nothing
here touches the development venv. Only PyPI is needed (the local index mirror works);
servers the suites need (s3fs's moto server) are started by the suites themselves on
127.0.0.1.

Exit code 0 when every suite gives the same outcome set both ways, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORK = Path(os.environ.get("TMPDIR", "/tmp")) / "autotrace-peers"
# Where the development machines keep a mirror of inspect_ai's repository (CI has none).
INSPECT_MIRROR = Path("/work/.mirror/UKGovernmentBEIS+inspect_ai/repo")


@dataclasses.dataclass
class Suite:
    """One peer suite: where its tests come from and how they run."""

    name: str
    dist: str | None  # the PyPI distribution whose sdist ships the tests (None: CPython's)
    version: str | None
    tests: list[str]  # paths inside the sdist (pytest) or regrtest test names
    deps: list[str] = dataclasses.field(default_factory=list)
    pytest_args: list[str] = dataclasses.field(default_factory=list)
    timeout: float = 3600.0
    dev_group: str | None = None  # also install this dependency group of the sdist's pyproject
    # The tests come from a git checkout at tag `version` (the sdist ships none) and the
    # library is installed from that source; main() sets `checkout` (--inspect-repo).
    from_checkout: bool = False
    checkout: Path | None = None
    leftovers: list[str] = dataclasses.field(default_factory=list)  # removed before each run
    locked: str | None = None  # a uv.lock in the sources whose versions constrain every install
    venv: str | None = None  # the name of another suite whose venv this one shares


# inspect_ai: the newest release tag in the mirror. Its sdist ships no tests, so they come
# from a checkout. The files and folders chosen touch subprocesses (inspect_ai.util's
# subprocess, background and limit tests), the local sandbox (Docker's tests are marked slow
# and skip without --runslow; no daemon runs here), tools and tool calls (MCP servers over stdio included), model calls (mockllm, and
# openai and anthropic clients against mocked transports), and evals with mockllm.
INSPECT_TAG = "0.3.260"
INSPECT_TESTS = [
    "tests/util/test_subprocess.py",
    "tests/util/test_background.py",
    "tests/util/test_run_in_background.py",
    "tests/util/test_concurrency.py",
    "tests/util/test_limit_time.py",
    "tests/util/test_limit_working.py",
    "tests/util/test_local_server.py",
    "tests/util/test_trace.py",
    "tests/util/sandbox",
    "tests/tools",
    "tests/model/providers/test_openai.py",
    "tests/model/providers/test_openai_responses.py",
    "tests/model/providers/test_openai_compatible.py",
    "tests/model/providers/test_openai_compatible_completions.py",
    "tests/model/providers/test_anthropic.py",
    "tests/model/test_mock_model_llm.py",
    "tests/model/test_generate_loop.py",
    "tests/model/test_generate_attempt_timeout.py",
    "tests/model/test_model_call.py",
    "tests/model/test_parallel_tools.py",
    "tests/model/test_chatapi_retry.py",
    "tests/model/test_model_event_timing.py",
    "tests/model/test_record_model_call.py",
    "tests/model/test_log_model_api.py",
    "tests/model/test_cache.py",
    "tests/model/test_model_fallbacks.py",
    "tests/model/test_num_choices.py",
    "tests/model/test_sync_models.py",
    "tests/test_eval.py",
    "tests/test_task_cancel.py",
    "tests/test_sample_limits.py",
    "tests/test_fail_on_error.py",
    "tests/test_retry_on_error.py",
    "tests/test_cancellation_logging.py",
    "tests/test_operator_interrupt.py",
]
# Left out both ways because they need the network: mockllm fills in the usage of an
# output that has none by counting tokens with tiktoken's o200k_base encoding, which
# tiktoken downloads on first use (machines here reach PyPI only), so these evals end in
# error on them. --deselect matches node ids by prefix ("name[": every backend's variant),
# so five tests whose names extend these go too (test_tool_def_does_not_duplicate_prompt_text,
# test_cache_skips_content_filter, test_working_limit_reporting, its Docker sibling
# test_working_limit_does_not_raise_during_sandbox_teardown, test_fail_on_error_retry_override).
_INSPECT_NEED_NETWORK = {
    "tests/util/test_limit_working.py": ["test_working_limit_interrupts_local_sandbox_exec"],
    "tests/tools/test_max_tool_output.py": ["test_max_tool_output"],
    "tests/tools/test_sandbox_tool_eval.py": [
        "test_sandbox_environment_read_file",
        "test_sandbox_environment_list_files",
        "test_sandbox_environment_read_file_error",
    ],
    "tests/tools/test_todo_write.py": ["test_todo_write_via_mockllm"],
    "tests/tools/test_tool_def.py": ["test_tool_def"],
    "tests/tools/test_tool_error.py": [
        "test_model_tool_error[",
        "test_task_tool_error",
        "test_subtask_tool_error",
    ],
    "tests/tools/test_tool_source.py": ["test_tool_source"],
    "tests/tools/test_tools.py": ["test_dynamic_tools", "test_tool_error", "test_tool_calls"],
    "tests/tools/test_update_plan.py": ["test_update_plan_via_mockllm"],
    "tests/model/test_mock_model_llm.py": [
        "test_mock_generate_default[",
        "test_mock_generate_custom_valid[",
        "test_mock_generate_not_enough[",
        "test_mock_model_eval",
    ],
    "tests/model/test_generate_loop.py": ["test_generate_loop["],
    "tests/model/test_model_event_timing.py": [
        "test_model_event_snapshot_has_completed_and_working_time[",
        "test_model_event_snapshot_timing_matches_live_event[",
    ],
    "tests/model/test_log_model_api.py": ["test_log_model_api_true_preserves_call"],
    "tests/model/test_cache.py": ["test_cache_examples", "test_cache"],
    "tests/model/test_model_fallbacks.py": [
        "test_fallback_recorded_on_sample",
        "test_no_fallback_recorded_when_absent",
    ],
    "tests/test_eval.py": [
        "test_eval_epochs_sample_count",
        "test_eval_sample_token_limit_fields_none_without_limit",
        "test_eval_sandbox_init_when_first_task_has_no_sandbox",
        "test_task_instance_with_task_args_warns",
        "test_task_instance_multiple_models_warns_once",
        "test_string_task_with_task_args_no_warning",
        "test_task_instance_without_task_args_no_warning",
        "test_eval_set_task_instance_warns_once",
        "test_task_source_with_task_args_no_warning",
        "test_failed_log_start_is_retried",
        "test_retry_presence_probe_retries_transient_failure",
        "test_retry_presence_probe_gives_up_after_max_failures",
        "test_retry_presence_probe_concurrent_failures_respect_cap",
        "test_retry_presence_probe_missing_log_cached_without_warning",
        "test_retry_presence_probe_not_used_for_json_logs",
    ],
    "tests/test_sample_limits.py": [
        "test_message_limit_generate",
        "test_message_limit_does_not_apply_to_scorer",
        "test_time_limit_scorer",
        "test_working_limit",
    ],
    "tests/test_fail_on_error.py": [
        "test_continue_on_fail",
        "test_fail_on_num_errors",
        "test_fail_on_num_errors_continue_on_fail",
        "test_fail_on_pct_errors",
        "test_fail_on_pct_errors_continue_on_fail",
        "test_fail_on_pct_errors_with_epochs",
        "test_fail_on_pct_errors_with_limit",
        "test_continue_on_fail_override",
        "test_fail_on_error_retry",
    ],
    "tests/test_retry_on_error.py": [
        "test_retry_on_error_events",
        "test_retry_on_error_events_persisted",
    ],
    "tests/test_cancellation_logging.py": [
        "test_fail_on_error_logs_cancelled_samples[with_sandbox]",
        "test_fail_on_error_logs_cancelled_samples[no_sandbox]",
    ],
}
INSPECT_DESELECT = [
    f"--deselect={path}::{name}" for path, names in _INSPECT_NEED_NETWORK.items() for name in names
]

INSPECT_SUITE = Suite(
    "inspect_ai",
    "inspect_ai",
    INSPECT_TAG,
    INSPECT_TESTS,
    # What these tests import beyond inspect_ai's own requirements (its conftest
    # needs boto3 and moto; the tools tests mcp and google-genai), at the versions
    # of the tag's uv.lock (`locked`), as inspect's CI runs them.
    deps=[
        "pytest-xdist",  # its pytest addopts carry --dist
        "pytest-timeout",
        "moto[server]",
        "openai",
        "anthropic",
        "google-genai",
        "mcp",
        "trio",
    ],
    # Not --runslow (its slow tests need Docker, API keys or minutes: all but
    # one) nor --runapi (its conftest skips API tests without it: kept so).
    pytest_args=["--timeout=300", *INSPECT_DESELECT],
    from_checkout=True,
    locked="uv.lock",
    leftovers=["logs"],  # the eval logs its tests write in the working directory
)

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in [
        Suite(
            "cpython-subprocess",
            None,
            None,
            ["test_subprocess", "test_asyncio.test_subprocess"],
        ),
        Suite(
            "openai",
            "openai",
            "3.57.0",
            ["tests"],
            deps=["respx", "dirty-equals", "time-machine", "nest-asyncio", "websockets"],
            dev_group="dev",
            # api_resources/ needs the Prism mock server (not on PyPI): left out both ways.
            pytest_args=["-n", "0", "--ignore=tests/api_resources", "-p", "no:randomly"],
        ),
        Suite(
            "anthropic",
            "anthropic",
            "2.14.0",
            ["tests"],
            deps=["http-snapshot[httpx]", "boto3", "websockets"],
            dev_group="dev",
            pytest_args=["-n", "0", "--ignore=tests/api_resources", "-p", "no:randomly"],
        ),
        Suite(
            "botocore",
            "botocore",
            "1.44.8",
            ["tests/unit/test_client.py", "tests/functional/test_s3.py"],
            deps=["pytest", "jsonschema"],
        ),
        Suite(
            "s3fs",
            "s3fs",
            "2026.9.0",
            ["s3fs/tests/test_s3fs.py"],
            deps=["pytest", "pytest-asyncio", "moto[server]", "flask", "flask-cors"],
        ),
        INSPECT_SUITE,
        # The same tests' trio variants: its conftest runs them only in a session of their own.
        dataclasses.replace(
            INSPECT_SUITE,
            name="inspect_ai-trio",
            pytest_args=[*INSPECT_SUITE.pytest_args, "--runtrio"],
            venv="inspect_ai",
        ),
    ]
}


@dataclasses.dataclass
class Run:
    outcomes: dict[str, str]
    seconds: float
    returncode: int


def _group(work: Path, suite: Suite) -> list[str]:
    """The requirements of the sdist's dependency group ``suite.dev_group`` (PEP 735)."""
    if suite.dev_group is None:
        return []
    import tomllib

    with open(_sources(work, suite) / "pyproject.toml", "rb") as f:
        groups = tomllib.load(f).get("dependency-groups", {})
    return [r for r in groups.get(suite.dev_group, []) if isinstance(r, str)]


def _locked(work: Path, suite: Suite, directory: Path) -> list[str]:
    """pip options holding every install to the versions in the sources' uv.lock, if any.

    Only this interpreter's entries: a package locked twice (per Python version) is
    chosen by its resolution markers.
    """
    if suite.locked is None:
        return []
    import tomllib

    try:
        from packaging.markers import Marker
    except ImportError:  # a bare interpreter: pip carries its own copy
        from pip._vendor.packaging.markers import Marker  # type: ignore[assignment]

    with open(_sources(work, suite) / suite.locked, "rb") as f:
        lock = tomllib.load(f)
    pins = []
    for package in lock.get("package", []):
        markers = package.get("resolution-markers")
        if "registry" not in package.get("source", {}):
            continue  # the project itself, editable or virtual members
        if markers and not any(Marker(m).evaluate() for m in markers):
            continue
        pins.append(f"{package['name']}=={package['version']}\n")
    constraints = directory / "constraints.txt"
    constraints.write_text("".join(pins))
    return ["-c", str(constraints)]


def _install_one(python: Path, requirement: str, options: list[str]) -> bool:
    """Install one test requirement; a pinned version the index lacks is retried unpinned."""
    pip = [str(python), "-m", "pip", "install", "-q", *options]
    if subprocess.run([*pip, requirement], capture_output=True).returncode == 0:
        return True
    name = requirement.split(";")[0]
    for cut in "=<>!~ ":
        name = name.split(cut)[0]
    return name != requirement and subprocess.run([*pip, name], capture_output=True).returncode == 0


def _venv(work: Path, suite: Suite) -> Path:
    """The suite's own venv (created once): the library, its test deps and this project."""
    directory = work / "venvs" / (suite.venv or suite.name)
    python = directory / "bin" / "python"
    marker = directory / "ready"
    if marker.exists():  # this tree's agent, as it is now
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--force-reinstall",
                str(REPO),
            ],
            check=True,
        )
        return python
    shutil.rmtree(directory, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    packages = [str(REPO), "pytest"]
    env = dict(os.environ)
    if suite.from_checkout:  # the library from the exported source (no git metadata there)
        packages.append(str(_sources(work, suite)))
        env["SETUPTOOLS_SCM_PRETEND_VERSION"] = str(suite.version)
    elif suite.dist is not None:
        packages.append(f"{suite.dist}=={suite.version}")
    options = _locked(work, suite, directory)
    pip = [str(python), "-m", "pip", "install", "-q", *options, *packages]
    subprocess.run(pip, check=True, env=env)
    # One by one: a test dependency the index lacks is reported and left out (both runs alike).
    for dep in [*_group(work, suite), *suite.deps]:
        if not _install_one(python, dep, options):
            print(f"  [{suite.name}] test dependency {dep} not installed", file=sys.stderr)
    # Our own package last: the suite's pins must not replace what the agent needs.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
        check=True,
    )
    marker.write_text("ok\n")
    return python


def _sources(work: Path, suite: Suite) -> Path:
    """The unpacked sdist of the suite's distribution (tests included), or its checkout."""
    assert suite.dist is not None and suite.version is not None
    if suite.from_checkout:
        assert suite.checkout is not None
        return _export(
            suite.checkout, suite.version, work / "checkouts" / f"{suite.dist}-{suite.version}"
        )
    root = work / "sdists" / f"{suite.dist}-{suite.version}"
    if root.exists():
        return root
    download = work / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{suite.dist}=={suite.version}",
            "-d",
            str(download),
        ],
        check=True,
    )
    archive = next(download.glob(f"{suite.dist.replace('-', '_')}-{suite.version}.tar.gz"), None)
    archive = archive or next(download.glob(f"{suite.dist}-{suite.version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(work / "sdists", filter="data")
    extracted = work / "sdists" / archive.name[: -len(".tar.gz")]
    if extracted != root:
        extracted.rename(root)
    return root


def _export(repo: Path, tag: str, root: Path) -> Path:
    """The tree of ``tag`` in the git repository ``repo``, written to ``root`` once.

    A partial mirror can lack some large blobs (inspect's prebuilt web bundle): those
    files are left out of the export and named, instead of failing the whole archive.
    """
    if root.exists():
        return root
    git = ["git", "-C", str(repo)]
    if (
        subprocess.run(
            [*git, "rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}"], capture_output=True
        ).returncode
        != 0
    ):
        raise SystemExit(f"peers: {repo} has no tag {tag}")
    listing = subprocess.run([*git, "ls-tree", "-r", "-z", tag], capture_output=True, check=True)
    paths: dict[bytes, list[bytes]] = {}
    for entry in listing.stdout.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        if meta.split()[1:2] == [b"blob"]:
            paths.setdefault(meta.split()[2], []).append(name)
    check = subprocess.run(
        [*git, "cat-file", "--batch-check"],
        input=b"".join(sha + b"\n" for sha in paths),
        capture_output=True,
        check=True,
    )
    missing = [
        name.decode()
        for line in check.stdout.splitlines()
        if line.endswith(b" missing")
        for name in paths[line.split()[0]]
    ]
    excludes = [f":(exclude,literal){path}" for path in missing]
    archive = subprocess.run(
        [*git, "archive", "--format=tar", tag, "--", ".", *excludes],
        capture_output=True,
        check=True,
    )
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(partial, filter="data")
    partial.rename(root)
    for path in missing:
        print(f"  [{root.name}] {path} is not in {repo}: left out", file=sys.stderr)
    return root


def outcomes_of(report: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from a JUnit XML report."""
    outcomes: dict[str, str] = {}
    if not report.exists():
        return outcomes
    for case in ElementTree.parse(report).iter("testcase"):
        test_id = "::".join(p for p in (case.get("classname"), case.get("name")) if p)
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed"}.get(child.tag, child.tag)
                break
        outcomes[test_id] = status
    return outcomes


def _command(python: Path, suite: Suite, report: Path) -> list[str]:
    if suite.dist is None:  # CPython's regrtest, its environment checks on
        return [
            str(python),
            "-m",
            "test",
            "--fail-env-changed",
            "--junit-xml",
            str(report),
            *suite.tests,
        ]
    return [
        str(python),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--continue-on-collection-errors",
        "--junitxml",
        str(report),
        *suite.pytest_args,
        *suite.tests,
    ]


def run_suite(suite: Suite, work: Path, traced: bool) -> Run:
    """Run the suite once, plain or under `inspect-trace run` (same command, same flags)."""
    python = _venv(work, suite)
    cwd = _sources(work, suite) if suite.dist is not None else work
    kind = "traced" if traced else "plain"
    report = work / "reports" / f"{suite.name}-{kind}.xml"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    command = _command(python, suite, report)
    for leftover in suite.leftovers:  # what an earlier run left behind must not change this one
        shutil.rmtree(cwd / leftover, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOTRACE_", "INSPECT_"))}
    env.pop("PYTHONPATH", None)
    trace_dir = work / "traces" / suite.name
    if traced:
        shutil.rmtree(trace_dir, ignore_errors=True)
        command = [
            str(python.parent / "inspect-trace"),
            "run",
            "--trace-dir",
            str(trace_dir),
            "--",
            *command,
        ]
    log = work / "logs" / f"{suite.name}-{kind}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "wb") as out:
        try:
            done = subprocess.run(
                command,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=suite.timeout,
            )
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = -1
    seconds = time.perf_counter() - started
    report.with_suffix(".run.json").write_text(json.dumps({"seconds": seconds, "code": code}))
    return Run(outcomes_of(report), seconds, code)


def reuse_suite(suite: Suite, work: Path, traced: bool) -> Run:
    """The result of the last run (its report and timing), without running again."""
    report = work / "reports" / f"{suite.name}-{'traced' if traced else 'plain'}.xml"
    facts = json.loads(report.with_suffix(".run.json").read_text())
    return Run(outcomes_of(report), facts["seconds"], facts["code"])


def compare(suite: Suite, plain: Run, traced: Run) -> dict[str, object]:
    """One row of the table: counts both ways, the tests whose outcome differs, time ratio.

    A test that ran one way only (a run that ended early: a crash, a timeout) is counted
    apart from the differences in outcome of the tests both runs ran.
    """
    both = set(plain.outcomes) & set(traced.outcomes)
    differ = sorted(t for t in both if plain.outcomes[t] != traced.outcomes[t])

    def counts(run: Run) -> str:
        values = list(run.outcomes.values())
        return "/".join(str(values.count(s)) for s in ("passed", "failed", "error", "skipped"))

    return {
        "suite": suite.name,
        "version": suite.version or sys.version.split()[0],
        "tests": len(both),
        "only_plain": len(set(plain.outcomes) - both),
        "only_traced": len(set(traced.outcomes) - both),
        "plain": counts(plain),
        "traced": counts(traced),
        "exit": f"{plain.returncode}/{traced.returncode}",
        "differences": differ,
        "plain_s": round(plain.seconds, 1),
        "traced_s": round(traced.seconds, 1),
        "ratio": round(traced.seconds / plain.seconds, 2) if plain.seconds else None,
    }


def print_table(rows: list[dict[str, object]]) -> None:
    print(
        "| suite | version | tests run both ways | plain p/f/e/s | traced p/f/e/s "
        "| exit plain/traced | ran one way only (plain/traced) | differences "
        "| wall traced / plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        differ = row["differences"]
        assert isinstance(differ, list)
        names = [test.rsplit(".", 1)[-1].rsplit("::", 1)[-1] for test in differ]
        shown = "none" if not differ else f"{len(differ)}: " + ", ".join(names[:3])
        shown += ", ..." if len(differ) > 3 else ""
        print(
            f"| {row['suite']} | {row['version']} | {row['tests']} | {row['plain']} "
            f"| {row['traced']} | {row['exit']} | {row['only_plain']}/{row['only_traced']} "
            f"| {shown} "
            f"| {row['traced_s']} s / {row['plain_s']} s = {row['ratio']} |"
        )


def _default_inspect_repo() -> Path | None:
    """$AUTOTRACE_INSPECT_REPO, else the mirror this project's development machines keep."""
    if os.environ.get("AUTOTRACE_INSPECT_REPO"):
        return Path(os.environ["AUTOTRACE_INSPECT_REPO"])
    return INSPECT_MIRROR if INSPECT_MIRROR.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="repeatable")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="venvs, sdists, reports")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument(
        "--reuse", action="store_true", help="compare the last runs' reports, run nothing"
    )
    parser.add_argument(
        "--inspect-repo",
        type=Path,
        default=_default_inspect_repo(),
        help="a git checkout (or bare mirror) of inspect_ai, for the inspect_ai suite "
        "(default: $AUTOTRACE_INSPECT_REPO)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for suite in SUITES.values():
            source = suite.dist or "CPython test package"
            if suite.from_checkout:
                source += " (git checkout, --inspect-repo)"
            print(f"{suite.name:20} {source} {suite.version or ''}  {' '.join(suite.tests)}")
        return 0
    rows = []
    for name in args.suite or list(SUITES):
        suite = SUITES[name]
        if suite.from_checkout and not args.reuse:
            if args.inspect_repo is None or not args.inspect_repo.exists():
                print(f"[{name}] skipped: needs a checkout of inspect_ai (--inspect-repo)")
                continue
            suite = dataclasses.replace(suite, checkout=args.inspect_repo)
        if args.reuse:
            plain = reuse_suite(suite, args.work, traced=False)
            traced = reuse_suite(suite, args.work, traced=True)
        else:
            print(f"[{name}] plain ...", file=sys.stderr, flush=True)
            plain = run_suite(suite, args.work, traced=False)
            print(f"[{name}] traced ...", file=sys.stderr, flush=True)
            traced = run_suite(suite, args.work, traced=True)
        rows.append(compare(suite, plain, traced))
    if rows:
        print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(not row["differences"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
