"""The timeline page: one self-contained HTML file that draws a run on a canvas.

``page_data`` lays the run out (a lane per process, children under the process that
started them; within a lane a block of rows per thread / asyncio task, nested actions
one row below their parent) and encodes it compactly; ``render_page`` puts that JSON
into the template with the page's CSS and JS (``autotrace/assets``). No network: the
file opens from disk. Record text reaches the page only as JSON in a
``<script type="application/json">`` (``<``, ``>``, ``&``, U+2028/2029 escaped) and is
drawn with ``fillText`` / ``textContent``, never parsed as HTML.

A very large run keeps at most ``max_bars`` actions as bars (every running, failed,
stuck action and the culprit first, then the longest, with their parents); every
action still counts in each lane's activity band (average number of open actions per
time bucket), and the page says how many were left out.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from autotrace.read.spans import EXIT, RUNNING, RunSpans

MAX_BARS = 200_000
BUCKETS = 1024
MAX_ROWS_PER_TRACK = 48  # deeper / wider overlap shares the last row
_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


@dataclass
class PageStats:
    """What a written page holds."""

    actions: int
    bars: int
    processes: int
    size: int


def embed_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, ``<!--`` or line
    separators can end or change it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in _ESCAPES.items():
        text = text.replace(char, escape)
    return text


def _kept(spans: RunSpans, max_bars: int) -> list[int]:
    """The actions drawn as bars: all of them, or the most telling ``max_bars``."""
    n = len(spans)
    if n <= max_bars:
        return list(range(n))
    must = {i for i in range(n) if spans.outcome[i] != EXIT}
    must.update(spans.stacks)
    if spans.culprit is not None:
        must.add(spans.culprit)
    rest = max(0, max_bars - len(must))
    longest = heapq.nlargest(
        rest,
        (i for i in range(n) if i not in must),
        key=lambda i: spans.end_of(i) - spans.start[i],
    )
    keep = must | set(longest)
    for i in list(keep):  # a kept action's parents are kept too
        parent = spans.parent[i]
        while parent >= 0 and parent not in keep:
            keep.add(parent)
            parent = spans.parent[parent]
    return sorted(keep)


def _density(spans: RunSpans, t0: float, t1: float, buckets: int) -> list[list[float]]:
    """Per process, the average number of open actions in each time bucket (all actions)."""
    width = (t1 - t0) / buckets or 1.0
    out = [[0.0] * buckets for _ in spans.processes]
    for i in range(len(spans)):
        row = out[spans.process[i]]
        a = (spans.start[i] - t0) / width
        b = (spans.end_of(i) - t0) / width
        first, last = min(int(a), buckets - 1), min(int(b), buckets - 1)
        if first == last:
            row[first] += b - a
            continue
        row[first] += first + 1 - a
        for k in range(first + 1, last):
            row[k] += 1.0
        row[last] += b - last
    return [[round(v, 2) for v in row] for row in out]


def page_data(
    spans: RunSpans, *, max_bars: int = MAX_BARS, buckets: int = BUCKETS
) -> dict[str, Any]:
    """The run as the page's JSON: strings, processes, rows and bars (in columns)."""
    t0, t1 = spans.bounds()
    if RUNNING in spans.outcome:  # its bar reaches the time of reading
        t1 = max(t1, spans.as_of)
    kept = _kept(spans, max_bars)
    strings: dict[str, int] = {}

    def sid(text: str) -> int:
        index = strings.get(text)
        if index is None:
            index = strings[text] = len(strings)
        return index

    sid("")
    # Rows: per process (in tree order) a header row, then per track (thread / task,
    # by first start) its rows, actions packed greedily below their parent's row.
    by_process: dict[int, list[int]] = {}
    for i in kept:
        by_process.setdefault(spans.process[i], []).append(i)
    rows: list[list[int]] = []  # [process, label string id, kind: 0 header / 1 track]
    row_of: dict[int, int] = {}
    processes: list[dict[str, Any]] = []
    tree = spans.process_tree()
    for proc, depth in tree:
        p = spans.processes[proc]
        header_row = len(rows)
        rows.append([proc, sid(" ".join(p.argv)), 0])
        tracks: dict[tuple[int, int], list[int]] = {}
        for i in sorted(by_process.get(proc, []), key=lambda i: spans.start[i]):
            tracks.setdefault((spans.thread[i], spans.task[i]), []).append(i)
        main_first = sorted(  # the main thread on top, then by first start
            tracks.items(), key=lambda item: spans.strings[item[0][0]] != "MainThread"
        )
        for (thread, task), members in main_first:
            base = len(rows)
            ends: list[float] = []
            thread_name = spans.strings[thread] or "(thread)"
            task_name = spans.strings[task]
            label = f"{thread_name} · {task_name}" if task_name else thread_name
            local: dict[int, int] = {}
            for i in members:
                parent = spans.parent[i]
                lowest = local[parent] + 1 if parent in local else 0
                start = spans.start[i]
                r = lowest
                while r < len(ends) and ends[r] > start:
                    r += 1
                if r >= MAX_ROWS_PER_TRACK:
                    r = MAX_ROWS_PER_TRACK - 1
                while len(ends) <= r:
                    ends.append(-math.inf)
                ends[r] = max(ends[r], spans.end_of(i))
                local[i] = r
                row_of[i] = base + r
            for r in range(len(ends)):
                rows.append([proc, sid(label) if r == 0 else -1, 1])
        processes.append(
            {
                "pid": p.pid,
                "parent_pid": p.parent_pid,
                "argv": p.argv,
                "state": p.state,
                "trace_file": p.trace_file,
                "depth": depth,
                "row": header_row,
                "spawned_by": p.spawned_by,  # a run index until the bars are ordered
                "actions": 0,
            }
        )
    proc_index = {proc: k for k, (proc, _) in enumerate(tree)}  # run -> page process index
    for row in rows:
        row[0] = proc_index[row[0]]
    counts = [0] * len(processes)
    for i in range(len(spans)):
        counts[proc_index[spans.process[i]]] += 1
    # Bars ordered by (row, start): the page finds a row's bars by its count.
    order = sorted(kept, key=lambda i: (row_of[i], spans.start[i]))
    new = {i: k for k, i in enumerate(order)}
    for info, count in zip(processes, counts, strict=True):
        info["spawned_by"] = new.get(info["spawned_by"], -1)
        info["actions"] = count
    per_row = [0] * len(rows)
    starts: list[int] = []
    durations: list[int] = []
    outcomes: list[int] = []
    actions: list[int] = []
    details: list[int] = []
    parents: list[int] = []
    ids: list[str] = []
    previous_row, previous_start = -1, 0
    for i in order:
        bar_row = row_of[i]
        per_row[bar_row] += 1
        start = round((spans.start[i] - t0) * 1e6)
        # Start times as deltas within a row (sorted: small, non-negative numbers).
        starts.append(start - previous_start if bar_row == previous_row else start)
        previous_row, previous_start = bar_row, start
        durations.append(round((spans.end_of(i) - spans.start[i]) * 1e6))
        outcomes.append(spans.outcome[i])
        actions.append(sid(spans.strings[spans.action[i]]))
        details.append(sid(spans.strings[spans.detail[i]]))
        parent = spans.parent[i]
        parents.append(new[parent] if parent >= 0 and parent in new else -1)
        ids.append(spans.trace_id[i])
    errors = {str(new[i]): text for i, text in spans.errors.items() if i in new}
    stacks = {
        str(new[i]): {
            "where": where,
            "frames": [[f.file, f.line, f.function, f.code] for f in frames],
        }
        for i, (where, frames) in spans.stacks.items()
        if i in new
    }
    stuck = [
        [new[r.span], round((r.time - t0) * 1e6), r.where] for r in spans.stuck if r.span in new
    ]
    threads = [
        [sid(spans.strings[spans.thread[i]]), sid(spans.strings[spans.task[i]])] for i in order
    ]
    # Thread / task pairs repeat: store each bar's pair as an index into a small table.
    pairs: dict[tuple[int, int], int] = {}
    thread_column = [pairs.setdefault((a, b), len(pairs)) for a, b in threads]
    density = _density(spans, t0, t1, buckets)
    return {
        "version": 1,
        "run_id": spans.run_id,
        "as_of": spans.as_of,
        "t0": t0,
        "span_us": round((t1 - t0) * 1e6),
        "total": len(spans),
        "shown": len(order),
        "culprit": new.get(spans.culprit, -1) if spans.culprit is not None else -1,
        "strings": list(strings),
        "processes": processes,
        "rows": rows,
        "row_counts": per_row,
        "bars": {
            "start": starts,
            "dur": durations,
            "outcome": outcomes,
            "action": actions,
            "detail": details,
            "parent": parents,
            "thread": thread_column,
            "trace_id": ids,
        },
        "thread_pairs": [list(pair) for pair in pairs],
        "errors": errors,
        "stacks": stacks,
        "stuck": stuck,
        "density": [density[proc] for proc, _ in tree],
    }


def _asset(name: str) -> str:
    return (resources.files("autotrace") / "assets" / name).read_text(encoding="utf-8")


def render_page(spans: RunSpans, *, max_bars: int = MAX_BARS) -> str:
    """The whole HTML page for ``spans``."""
    return _render(page_data(spans, max_bars=max_bars), spans)


def _render(data: dict[str, Any], spans: RunSpans) -> str:
    title = f"Timeline of run {spans.run_id}" if spans.run_id else "Timeline"
    page = _asset("timeline.html")
    # The template's slots are replaced once each, the data last: nothing in the
    # record text can reach a slot.
    page = page.replace("/*STYLE*/", _asset("timeline.css"), 1)
    page = page.replace("/*SCRIPT*/", _asset("timeline.js"), 1)
    page = page.replace("{{TITLE}}", _html_text(title), 1)
    return page.replace("/*DATA*/", embed_json(data), 1)


def _html_text(text: str) -> str:
    from html import escape

    return escape(text, quote=True)


def write_page(spans: RunSpans, out: Path, *, max_bars: int = MAX_BARS) -> PageStats:
    """Write the page to ``out``; returns what it holds."""
    data = page_data(spans, max_bars=max_bars)
    # errors="replace": a lone surrogate (a "\ud800" escape in a record) becomes "?".
    out.write_text(_render(data, spans), encoding="utf-8", errors="replace")
    return PageStats(
        actions=len(spans),
        bars=data["shown"],
        processes=len(spans.processes),
        size=out.stat().st_size,
    )
