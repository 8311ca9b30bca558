"""Peer suites: other projects' tests, run plain and under `inspect-trace run`, compared.

    python benchmarks/peers.py                       # every suite (tens of minutes)
    python benchmarks/peers.py --suite cpython-subprocess --suite openai
    python benchmarks/peers.py --list

ddtrace's idea ("framework tests"): the test suites of the libraries we patch are the
strongest proof that a traced program behaves as an untraced one. Each suite runs twice
with the same command and flags, once plain and once as ``inspect-trace run -- CMD``;
per-test outcomes (passed, failed, error, skipped) come from a JUnit XML report and are
compared test by test, with the wall time of each run. Test suites come from PyPI sdists
(openai, anthropic, botocore and s3fs ship their tests; inspect_ai's sdist does not) or
from the interpreter's own ``test`` package, each in a venv of its own under
``--work`` (reused across runs) with this project installed, so nothing here touches the
development venv. Only PyPI is needed (the local index mirror works); servers the
suites need (s3fs's moto server) are started by the suites themselves on 127.0.0.1.

Exit code 0 when every suite gives the same outcome set both ways, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def _install_one(python: Path, requirement: str) -> bool:
    """Install one test requirement; a pinned version the index lacks is retried unpinned."""
    pip = [str(python), "-m", "pip", "install", "-q"]
    if subprocess.run([*pip, requirement], capture_output=True).returncode == 0:
        return True
    name = requirement.split(";")[0]
    for cut in "=<>!~ ":
        name = name.split(cut)[0]
    return name != requirement and subprocess.run([*pip, name], capture_output=True).returncode == 0


def _venv(work: Path, suite: Suite) -> Path:
    """The suite's own venv (created once): the library, its test deps and this project."""
    directory = work / "venvs" / suite.name
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
    if suite.dist is not None:
        packages.append(f"{suite.dist}=={suite.version}")
    pip = [str(python), "-m", "pip", "install", "-q", *packages]
    subprocess.run(pip, check=True)
    # One by one: a test dependency the index lacks is reported and left out (both runs alike).
    for dep in [*_group(work, suite), *suite.deps]:
        if not _install_one(python, dep):
            print(f"  [{suite.name}] test dependency {dep} not installed", file=sys.stderr)
    # Our own package last: the suite's pins must not replace what the agent needs.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
        check=True,
    )
    marker.write_text("ok\n")
    return python


def _sources(work: Path, suite: Suite) -> Path:
    """The unpacked sdist of the suite's distribution (tests included)."""
    assert suite.dist is not None and suite.version is not None
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="repeatable")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="venvs, sdists, reports")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument(
        "--reuse", action="store_true", help="compare the last runs' reports, run nothing"
    )
    args = parser.parse_args(argv)
    if args.list:
        for suite in SUITES.values():
            print(
                f"{suite.name:20} {suite.dist or 'CPython test package'} {suite.version or ''}"
                f"  {' '.join(suite.tests)}"
            )
        return 0
    rows = []
    for name in args.suite or list(SUITES):
        suite = SUITES[name]
        if args.reuse:
            plain = reuse_suite(suite, args.work, traced=False)
            traced = reuse_suite(suite, args.work, traced=True)
        else:
            print(f"[{name}] plain ...", file=sys.stderr, flush=True)
            plain = run_suite(suite, args.work, traced=False)
            print(f"[{name}] traced ...", file=sys.stderr, flush=True)
            traced = run_suite(suite, args.work, traced=True)
        rows.append(compare(suite, plain, traced))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(not row["differences"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
