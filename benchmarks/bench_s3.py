"""What the botocore patch adds to a call it does not trace (reads, other services).

(a) The wrapper alone: ``_make_api_call`` of a stub class, wrapped by the botocore
    patch's own ``Wrap`` row, called on a real S3 client's ``meta`` (a read:
    ``GetObject``) and a real DynamoDB client's (``PutItem``: a write name of
    another service, so the service check runs too), against the bare stub.
(b) A whole real call: ``client.get_object`` of a boto3 client whose HTTP send is
    answered by a ``before-call`` handler (no network), with the patch and without,
    measured alternately in the same run.

``main(quick=...)`` returns rows {name, ours, baseline, ratio, target, ok}.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import types
from collections.abc import Callable
from typing import Any

TARGET_US = 2.0


def _best_per_call_us(fn: Callable[[], Any], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.disable()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        gc.enable()
        best = min(best, elapsed / n)
    return best * 1e6


def _clients() -> tuple[Any, Any]:
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    session = boto3.session.Session(region_name="us-east-1")
    return session.client("s3"), session.client("dynamodb")


def wrapper_overhead(n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """operation -> (patched stub us, bare stub us)."""
    from autotrace.patches import _s3
    from autotrace.startup.patching import Patch, Wrap

    s3, dynamodb = _clients()
    module = types.ModuleType("autotrace_bench_stub")

    class Stub:
        def __init__(self, meta: Any) -> None:
            self.meta = meta

        def _make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> None:
            return None

    module.Stub = Stub  # type: ignore[attr-defined]
    bare = {"GetObject": Stub(s3.meta), "PutItem": Stub(dynamodb.meta)}
    bare_times = {
        op: _best_per_call_us(lambda o=op, c=c: c._make_api_call(o, {}), n, repeats)
        for op, c in bare.items()
    }
    patch = Patch(name="bench-botocore", description="")
    wrapper = _s3.api_call_wrapper(patch, False)  # the botocore patch's own
    patch.wraps.append(Wrap(module.__name__, "Stub._make_api_call", wrapper=wrapper))
    patch.install_module(module)
    try:
        patched_times = {
            op: _best_per_call_us(lambda o=op, c=c: c._make_api_call(o, {}), n, repeats)
            for op, c in bare.items()
        }
    finally:
        patch.uninstall()
    return {op: (patched_times[op], bare_times[op]) for op in bare}


def real_call(n: int, repeats: int) -> tuple[float, float]:
    """(patched us, unpatched us) per ``get_object`` with the HTTP send answered locally."""
    from botocore.awsrequest import AWSResponse

    from autotrace.startup import agent

    s3, _ = _clients()

    class _Raw:
        def stream(self, **kwargs: Any) -> Any:
            return iter([b""])

    def answer(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
        return AWSResponse("http://bench", 200, {}, _Raw()), {"Body": b""}

    s3.meta.events.register("before-call.s3.GetObject", answer)
    call = lambda: s3.get_object(Bucket="bench", Key="k")  # noqa: E731
    patch = agent.load_patch("botocore")
    unpatched, patched = float("inf"), float("inf")
    for _ in range(repeats):  # alternate, so drift hits both sides alike
        unpatched = min(unpatched, _best_per_call_us(call, n, 1))
        agent.install_patch(patch)
        try:
            patched = min(patched, _best_per_call_us(call, n, 1))
        finally:
            agent.uninstall_patch(patch)
    return patched, unpatched


def main(quick: bool = False, log: Callable[[str], None] = print) -> list[dict[str, object]]:
    """Measure and print; return the result rows."""
    rows: list[dict[str, object]] = []
    n, repeats = (50_000, 5) if quick else (200_000, 7)
    for op, (patched, bare) in wrapper_overhead(n, repeats).items():
        added = patched - bare
        log(f"pass-through {op}: {patched:.3f} us wrapped, {bare:.3f} us bare, +{added:.3f} us")
        rows.append(
            {
                "name": f"botocore pass-through ({op}): added per call",
                "ours": f"{added:.2f} us",
                "baseline": f"{bare:.2f} us (bare call)",
                "ratio": f"{patched / bare:.1f}x",
                "target": f"<= {TARGET_US:.0f} us",
                "ok": added <= TARGET_US,
            }
        )
    patched, unpatched = real_call(2_000 if quick else 5_000, 5 if quick else 9)
    log(
        f"real get_object (no network): {patched:.1f} us patched, {unpatched:.1f} us unpatched, "
        f"+{patched - unpatched:.2f} us"
    )
    rows.append(
        {
            "name": "boto3 get_object (no network): added per call",
            "ours": f"{patched - unpatched:.2f} us",
            "baseline": f"{unpatched:.1f} us",
            "ratio": f"{patched / unpatched:.3f}x",
            "target": f"<= {TARGET_US:.0f} us (noisy: within run-to-run spread)",
            "ok": patched - unpatched <= max(TARGET_US, 0.05 * unpatched),
        }
    )
    return rows


if __name__ == "__main__":
    sys.exit(0 if all(r["ok"] for r in main(quick="--quick" in sys.argv)) else 1)
