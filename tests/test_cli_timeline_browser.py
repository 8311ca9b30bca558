"""The timeline page in a real headless Chromium (Debian's, driven by Playwright), made
from a real hung multi-process run: what a person sees, hovers and clicks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import components
import pytest
from conftest import untraced_env, wait_for
from test_cli_timeline_data import check_trace_event_json
from timeline_support.hung_run import HOSTILE

from autotrace.read.spans import read_spans

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).parent / "timeline_support" / "hung_run.py"


def _line_of(text: str) -> int:
    return PROGRAM.read_text().splitlines().index(text) + 1


@pytest.fixture(scope="module")
def hung_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """hung_run.py under `inspect-trace run`, its child stuck in `sleep 600` (reported by
    the watchdog); killed with its process group afterwards."""
    tmp = tmp_path_factory.mktemp("hung")
    trace_dir = tmp / "traces"
    run = subprocess.Popen(
        ["inspect-trace", "run", "--stuck-after", "0.3", "--trace-dir", str(trace_dir), "--"]
        + [sys.executable, str(PROGRAM)],
        cwd=tmp,
        env=untraced_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )

    def stuck_culprit() -> bool:
        try:
            spans = read_spans(trace_dir)
        except Exception:
            return False
        if spans.culprit is None or len(spans.processes) < 2:
            return False
        culprit = spans.span(spans.culprit)
        return culprit.detail == "sleep 600" and bool(culprit.frames)

    try:
        wait_for(stuck_culprit, timeout=60.0, what="the child's sleep 600 reported stuck")
        yield trace_dir
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.wait(timeout=30)


@pytest.fixture(scope="module")
def page_file(hung_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "run.html"
    result = subprocess.run(
        ["inspect-trace", "timeline", "--trace-dir", str(hung_run), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=untraced_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (") and "2 process(es)" in result.stdout
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=components.chromium(), args=components.CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Opened:
    """A page opened from a file, with what it logged and asked the network for."""

    def __init__(self, browser: Any, path: Path, scheme: str = "light") -> None:
        self.context = browser.new_context(
            viewport={"width": 1400, "height": 800}, color_scheme=scheme
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.as_uri()
        self.page.goto(self.url)
        self.page.wait_for_function("window.timeline && window.timeline.ready")

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def view(self) -> tuple[float, float]:
        view = self.js("window.timeline.view")
        return view["start"], view["end"]

    def center(self, k: int) -> dict[str, float]:
        center = self.js("(k) => window.timeline.barCenter(k)", k)
        assert center is not None, f"bar {k} is not on screen"
        return center  # type: ignore[no-any-return]

    def zoom_to(self, k: int, width: float = 40.0) -> dict[str, float]:
        """Wheel-zoom at bar k until it is ``width`` pixels wide; returns its centre."""
        self.page.locator("#chart").focus()
        self.page.keyboard.press("0")  # the whole run first
        for _ in range(60):
            box = self.js("(k) => window.timeline.barCenter(k)", k)
            assert box is not None
            before = self.draws()
            self.page.mouse.move(box["x"], box["y"])
            self.page.mouse.wheel(0, -400)
            self.page.wait_for_function("(n) => window.timeline.drawCount > n", arg=before)
            if self.js("(k) => window.timeline.barWidth(k)", k) >= width:
                break
        return self.center(k)

    def draws(self) -> int:
        return int(self.js("window.timeline.drawCount"))

    def close(self) -> None:
        self.context.close()
        assert self.errors == []
        assert set(self.requests) == {self.url}  # nothing but the file itself


@pytest.fixture
def opened(browser: Any, page_file: Path) -> Iterator[Opened]:
    page = Opened(browser, page_file)
    yield page
    page.close()


def test_lanes_are_labelled_and_the_running_culprit_is_selected_with_its_stack(
    opened: Opened, hung_run: Path
) -> None:
    page = opened.page
    parent, child = opened.js("window.timeline.laneLabels()")
    assert parent.endswith("hung_run.py")
    assert child.endswith("hung_run.py --child " + HOSTILE)  # the child's lane under its parent
    processes = page.locator("#processes li").all_inner_texts()
    assert len(processes) == 2 and all("running" in p for p in processes)
    # Selected on open: the culprit, what `anomalies` names first, with where it waits.
    assert opened.js("window.timeline.selected") == opened.js("window.timeline.culprit") >= 0
    details = page.locator("#details")
    assert details.locator(".detail").inner_text() == "sleep 600"
    assert details.locator(".badge").inner_text() == "running"
    assert details.locator(".culprit-tag").is_visible()
    sleep_line = _line_of('        subprocess.run(["sleep", "600"])')
    where = f"hung_run.py:{sleep_line} in child"
    assert where in details.locator(".where").inner_text()

    # Click another bar, then the culprit again: its parents (across the process
    # boundary) and its stack, frame by frame.
    subtask = opened.js("window.timeline.find('solve sample 5')")
    center = opened.center(subtask)
    page.mouse.click(center["x"], center["y"])
    assert details.locator(".detail").inner_text() == "solve sample 5"
    assert details.locator(".stack").count() == 1  # it waits on the child too
    culprit = opened.js("window.timeline.culprit")
    center = opened.center(culprit)
    page.mouse.click(center["x"], center["y"])
    assert opened.js("window.timeline.selected") == culprit
    parents = details.locator(".parents li").all_inner_texts()
    assert parents[0] == "Tool Call: bash(cmd='sleep 600') [running]"
    assert "hung_run.py --child" in parents[1] and parents[1].startswith("Subprocess: ")
    assert parents[2] == "Subtask: solve sample 5 [running]"
    frames = details.locator(".stack .frame").all_inner_texts()
    assert any(f.endswith(where) for f in frames)
    assert frames[-1].endswith("in Popen._try_wait")  # innermost last
    assert 'subprocess.run(["sleep", "600"])' in details.locator(".stack").inner_text()


def test_hover_shows_action_detail_duration_outcome_pid_and_thread(
    opened: Opened, hung_run: Path
) -> None:
    spans = read_spans(hung_run)
    child_pid = spans.span(spans.culprit).pid  # type: ignore[arg-type]
    center = opened.center(opened.js("window.timeline.culprit"))
    opened.page.mouse.move(center["x"], center["y"])
    tip = opened.page.locator("#tooltip")
    tip.wait_for(state="visible")
    lines = tip.inner_text().splitlines()
    assert lines[0] == "Subprocess  (culprit)"
    assert lines[1] == "sleep 600"
    assert lines[2].startswith("duration: ") and lines[2].endswith(" so far")
    assert lines[3] == "outcome: \u25b6 running"
    assert lines[4] == f"pid: {child_pid}   thread: MainThread"
    opened.page.mouse.move(5, 5)  # off the chart: gone
    tip.wait_for(state="hidden")


def test_wheel_drag_and_keys_change_the_visible_range_and_filter_counts(opened: Opened) -> None:
    page = opened.page
    start, end = opened.view()
    range_text = page.locator("#range").inner_text()
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.6, box["y"] + 200
    page.mouse.move(x, y)
    page.mouse.wheel(0, -600)  # zoom in at the pointer
    page.wait_for_function(
        "(w) => window.timeline.view.end - window.timeline.view.start < w / 2", arg=end - start
    )
    zoomed = opened.view()
    assert page.locator("#range").inner_text() != range_text
    page.mouse.down()
    page.mouse.move(x + 200, y, steps=5)  # drag right: earlier times come into view
    page.mouse.up()
    dragged = opened.view()
    assert dragged[0] < zoomed[0]
    assert dragged[1] - dragged[0] == pytest.approx(zoomed[1] - zoomed[0])
    page.locator("#chart").focus()
    page.keyboard.press("ArrowRight")
    assert opened.view()[0] > dragged[0]
    page.keyboard.press("-")
    assert opened.view()[1] - opened.view()[0] > dragged[1] - dragged[0]
    page.keyboard.press("0")
    assert opened.view() == (start, end)
    page.locator("#filter").fill("sleep 600")
    total = opened.js("window.timeline.shown")
    # The tool call and the command it runs match; the rest is drawn faded.
    assert page.locator("#filter-count").inner_text() == f"2 of {total} match"
    # Enter goes to the next match: selected, zoomed in enough to see, its details shown.
    page.locator("#filter").fill("sample 4")
    page.keyboard.press("Enter")
    details = page.locator("#details")
    assert details.locator(".detail").inner_text() == "generate (openai/gpt-4o) sample 4"
    assert details.locator(".badge").inner_text() == "error"
    selected = opened.js("window.timeline.selected")
    page.wait_for_function("(k) => window.timeline.barWidth(k) >= 3", arg=selected)
    assert opened.js("(k) => window.timeline.barCenter(k)", selected) is not None
    page.keyboard.press("Escape")
    assert page.locator("#filter-count").inner_text() == ""


def test_hostile_record_text_is_shown_as_text_and_stays_inert(
    opened: Opened, page_file: Path
) -> None:
    html = page_file.read_text()
    assert "</script><script>document.title" not in html
    assert "\u2028" not in html
    page = opened.page
    assert page.title().startswith("Timeline of run ")
    assert opened.js("document.querySelectorAll('img, b').length") == 0
    assert opened.js("document.scripts.length") == 2
    hostile = opened.js("(t) => window.timeline.find(t)", HOSTILE)
    assert hostile >= 0
    center = opened.zoom_to(hostile)
    page.mouse.click(center["x"], center["y"])
    details = page.locator("#details")
    assert opened.js("document.querySelector('#details .detail').textContent") == HOSTILE
    assert details.locator("img, b, script").count() == 0
    # The failing model call's error carries it too, and the child's command line.
    failing = opened.js("(t) => window.timeline.find(t)", "sample 4")
    center = opened.zoom_to(failing)
    page.mouse.click(center["x"], center["y"])
    assert opened.js("document.querySelector('#details .error').textContent") == (
        "connection reset by peer " + HOSTILE
    )
    page.locator("#processes button").nth(1).click()
    assert opened.js("document.querySelector('#details .argv').textContent").endswith(HOSTILE)
    assert page.title().startswith("Timeline of run ")
    assert opened.js("document.querySelectorAll('img, b').length") == 0


def test_dark_and_light_schemes_draw_on_their_own_background(browser: Any, page_file: Path) -> None:
    pixels = {}
    for scheme in ("light", "dark"):
        opened = Opened(browser, page_file, scheme)
        # an empty spot of the gutter, bottom left
        pixels[scheme] = opened.js(
            "() => { const c = document.getElementById('canvas');"
            " return Array.from(c.getContext('2d').getImageData(4, c.height - 4, 1, 1).data); }"
        )
        opened.close()
    assert sum(pixels["light"][:3]) > 600 and sum(pixels["dark"][:3]) < 150


def test_perfetto_export_of_the_hung_run(hung_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = subprocess.run(
        ["inspect-trace", "export", "--format", "perfetto", "--trace-dir", str(hung_run)]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=untraced_env(),
    )
    assert result.returncode == 0, result.stderr
    events = check_trace_event_json(json.loads(out.read_text()))
    names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert len(names) == 2 and all("hung_run.py" in n for n in names)
    slices = [e for e in events if e["ph"] == "X"]
    [culprit] = [e for e in slices if e["args"].get("culprit")]
    assert culprit["args"]["detail"] == "sleep 600" and culprit["args"]["running"] is True
    assert {e["args"]["outcome"] for e in slices} >= {
        "exit",
        "error",
        "timeout",
        "cancel",
        "running",
    }
    stuck = [
        e for e in events if e["ph"] == "i" and e["args"]["trace_id"] == culprit["args"]["trace_id"]
    ]
    # The arrow from the parent's Subprocess to the child's first action.
    [source] = [e for e in slices if e.get("flow_out")]
    [target] = [e for e in slices if e.get("flow_in")]
    assert source["bind_id"] == target["bind_id"] and source["pid"] != target["pid"]
    assert "--child" in source["args"]["detail"]
    assert target["args"]["detail"] == "bash(cmd='sleep 600')"
    assert stuck and all(e["tid"] == culprit["tid"] for e in stuck)


def test_a_capped_page_says_how_many_actions_it_draws(browser: Any, tmp_path: Path) -> None:
    from test_cli_timeline_data import _many

    _many(tmp_path, 3000)
    out = tmp_path / "capped.html"
    result = subprocess.run(
        ["inspect-trace", "timeline", "--trace-dir", str(tmp_path), "--max-bars", "200"]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=untraced_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "200 of 3,001 actions" in result.stdout
    opened = Opened(browser, out)
    note = opened.page.locator("#note")
    assert note.is_visible() and note.inner_text().startswith("Showing 200 of 3,001 actions")
    opened.close()
