"""End to end in a real browser: `streamlit run` on a free port over a temporary store, driven by
Playwright through Debian's headless Chromium. A reviewer imports the sample, accepts, rejects,
edits and comments, bulk-accepts, runs a stage and freezes a version when those pages exist, and
every page is screenshotted under artifacts/e2e/.

Skipped, saying why, when /usr/bin/chromium is absent (`scripts/setup_system.sh` installs it)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SAMPLE
from workbench.app_server import wait_until_up

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "artifacts" / "e2e"
STAGE_PAGES = ("Validate", "Dedup", "PII")  # the first one present is run
TIMEOUT_MS = 45_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup_system.sh (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("e2e")
    store = tmp / "e2e.duckdb"
    port = free_port()
    env = {
        **os.environ,
        "SIFT_STORE": str(store),
        "SIFT_REVIEWERS": str(tmp / "no-reviewer-list.toml"),
        "SIFT_APP_KEEP_OPEN_S": "0.3",
        "SIFT_IMPORT_ROOTS": str(SAMPLE),  # the server-path tab is off unless folders are allowed
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]  # fmt: skip
    log = open(tmp / "streamlit.log", "w+b")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if not wait_until_up(url, proc, timeout=60):
        log.seek(0)
        proc.kill()
        pytest.fail(f"streamlit did not start: {log.read().decode(errors='replace')[-2000:]}")
    try:
        yield url, store
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_reviewer_session_in_chromium(app: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, store = app
    SHOTS.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        main = page.locator('[data-testid="stMain"]')

        def settle() -> None:
            # Streamlit shows a running indicator while a script run is in flight.
            page.wait_for_timeout(200)
            page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=TIMEOUT_MS)

        def click_one(locator: Any) -> None:
            # During a rerun Streamlit can briefly show the previous run's elements beside the new
            # ones (two "Reject" buttons): wait until the button is there once, then click it.
            expect(locator).to_have_count(1, timeout=TIMEOUT_MS)
            locator.click()

        def go(title: str) -> None:
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
            expect(main.get_by_role("heading", name=title, exact=True).first).to_be_visible()
            settle()

        def shot(name: str) -> None:
            settle()
            # The app scrolls inside its main container, not the page: show it from the top.
            page.evaluate("document.querySelectorAll('[data-testid=stMain], section').forEach(e => e.scrollTo(0, 0))")
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

        def no_exception() -> None:
            assert main.locator('[data-testid="stException"]').count() == 0, main.locator(
                '[data-testid="stException"]'
            ).first.inner_text()

        page.goto(url + "/import")
        expect(main.get_by_role("heading", name="Import", exact=True)).to_be_visible()
        name_box = page.locator('[data-testid="stSidebar"]').get_by_label("Reviewer name", exact=True)
        name_box.fill("ana")
        name_box.press("Enter")
        settle()

        # Import the bundled sample through the server-path tab.
        main.get_by_role("tab", name="Path on the server").click()
        paths = main.get_by_label("File paths (one per line)", exact=True)
        paths.fill(str(SAMPLE / "tickets_openai.jsonl"))
        paths.press("Control+Enter")
        settle()
        main.get_by_role("button", name="Import from paths").click()
        expect(main.get_by_text(re.compile(r"150 rows: 145 imported"))).to_be_visible()
        no_exception()
        shot("import")

        go("Browse")
        expect(main.get_by_text(re.compile(r"145 conversations · page 1 of"))).to_be_visible()
        no_exception()
        shot("browse")

        # Review: accept, reject with a reason, edit a turn, comment.
        go("Review")
        heading = main.get_by_role("heading", name=re.compile(r"^Conversation [0-9a-f]{16}$"))
        settle()
        first = heading.inner_text().split()[-1]
        expect(main.get_by_role("heading", name="How to review")).to_be_visible()  # the guide beside the queue
        click_one(main.get_by_role("button", name="✅ Accept"))
        expect(main.get_by_text(f"Accepted {first}.")).to_be_visible()
        expect(heading).not_to_have_text(f"Conversation {first}")  # the next one in the queue
        settle()
        second = heading.inner_text().split()[-1]
        reason = main.get_by_placeholder("reason for rejecting (type, or pick one below)")
        reason.fill("answer does not match the ticket")
        reason.press("Enter")
        settle()
        click_one(main.get_by_role("button", name="❌ Reject"))
        expect(main.get_by_text(f"Rejected {second}: answer does not match the ticket")).to_be_visible()
        expect(heading).not_to_have_text(f"Conversation {second}")
        settle()
        third = heading.inner_text().split()[-1]
        main.get_by_text("✏️ Edit messages").click()
        settle()
        turn = main.get_by_label("Text of turn 2", exact=True)
        turn.fill("Edited in the browser: the user's question, made clearer.")
        click_one(main.get_by_role("button", name="Save as revision 2"))
        expect(main.get_by_text("Saved revision 2.")).to_be_visible()
        expect(main.get_by_text("+Edited in the browser: the user's question, made clearer.")).to_be_visible()
        comment = main.get_by_label("Add a comment", exact=True)
        comment.fill("Fixed the wording; please double-check the priority.")
        click_one(main.get_by_role("button", name="Add comment"))
        expect(main.get_by_text("Comment added.")).to_be_visible()
        expect(main.get_by_text("Fixed the wording; please double-check the priority.")).to_be_visible()
        # Nothing from the data reaches the page as an image or markup.
        assert page.locator("main img[src^='http']").count() == 0
        no_exception()
        shot("review")

        # Bulk-accept the rest of the pending queue, after the confirmation that states the count.
        main.get_by_text("Bulk actions on every conversation this filter matches").click()
        click_one(main.get_by_role("button", name="Count and ask me to confirm"))
        expect(main.get_by_text("This will mark accepted 143 conversations")).to_be_visible()
        settle()  # the counting run must end first: a click during it was once lost with the rerun
        click_one(main.get_by_role("button", name="Confirm: mark accepted 143 conversations"))
        expect(main.get_by_text("Done: mark accepted 143 conversations.")).to_be_visible()
        shot("review-bulk")

        go("Progress")
        expect(main.get_by_text("145 of 145 reviewed")).to_be_visible()
        chart = main.locator('[data-testid="stVegaLiteChart"]')
        chart.locator("canvas, svg").first.wait_for()  # the throughput chart has drawn
        no_exception()
        shot("progress")

        nav = page.locator('[data-testid="stSidebarNav"]')
        titles = [t.strip().split("\n")[-1].strip() for t in nav.get_by_role("link").all_inner_texts()]
        stage = next((s for s in STAGE_PAGES if s in titles), None)
        if stage is None:
            notes.append("no stage page (Validate, Dedup, PII) yet: stage step skipped")
        else:
            go(stage)
            run_button = main.get_by_role("button", name=re.compile(r"^Run")).first
            run_button.click()
            settle()
            no_exception()
            shot(f"stage-{stage.lower()}")

        if "Versions" in titles:
            go("Versions")
            main.get_by_label("Version name", exact=True).fill("e2e-v1")
            main.get_by_label("Version name", exact=True).press("Enter")
            settle()
            main.get_by_role("button", name="Preview").click()
            expect(main.get_by_text(re.compile("Leakage check"))).to_be_visible()
            main.get_by_role("button", name="Freeze").click()
            expect(main.get_by_text(re.compile(r"Froze e2e-v1"))).to_be_visible()
            no_exception()
            shot("versions")
        else:
            notes.append("no Versions page yet: freeze step skipped")

        # Every other page renders; then the lineage of the edited conversation.
        done = {"Import", "Browse", "Review", "Progress", "Versions", stage}
        for title in titles:
            if title in done or title == "Lineage":
                continue
            go(title)
            no_exception()
            shot(title.lower().replace(" ", "-"))
        go("Lineage")
        box = main.get_by_label("Conversation id", exact=True)
        box.fill(third)
        box.press("Enter")
        expect(main.get_by_role("heading", name=f"Conversation {third}")).to_be_visible()
        expect(main.get_by_text(re.compile(r"^accepted · revision 2 · family"))).to_be_visible()
        expect(main.locator('[data-testid="stDataFrame"]').nth(1)).to_be_visible()  # source rows, revisions
        expect(main.get_by_text("+Edited in the browser: the user's question, made clearer.")).to_be_visible()
        no_exception()
        shot("lineage")
        browser.close()

    # Every action is in the conversation's history, with who did it.
    import workbench

    wb = workbench.open(store)
    h1 = wb.show(first).history
    assert [(e["actor"], e["status"]) for e in h1 if e["kind"] == "status"] == [("ana", "accepted")]
    h2 = wb.show(second).history
    assert [(e["actor"], e["reason"]) for e in h2 if e["kind"] == "status"] == [
        ("ana", "answer does not match the ticket")
    ]
    h3 = wb.show(third)
    assert h3.current_revision == 2 and h3.messages[1]["content"].startswith("Edited in the browser")
    assert [(e["actor"], e["text"]) for e in h3.history if e["kind"] == "comment"] == [
        ("ana", "Fixed the wording; please double-check the priority.")
    ]
    assert wb.stats().by_status == {"pending": 0, "accepted": 144, "rejected": 1}
    for n in notes:
        print(n)


EVIL = "evil.example"
PAYLOAD = (
    f'<img src="http://{EVIL}/h.png"> ![i](http://{EVIL}/i.png) [l](http://{EVIL}/l) <http://{EVIL}/a> '
    f'http://{EVIL}/bare <iframe src="http://{EVIL}/f"></iframe> <script src="http://{EVIL}/s.js"></script>'
)
ONE_LINE = f"x![n](http://{EVIL}/n.png)<img src=http://{EVIL}/m.png>"


def test_hostile_store_loads_nothing_off_the_apps_origin(app: tuple[str, Path], tmp_path: Path) -> None:
    """Every field of the data carries markdown images, links and HTML (issue 16): visiting every
    page in Chromium, the browser requests nothing from any host but the app's."""
    from urllib.parse import urlsplit

    from playwright.sync_api import expect, sync_playwright

    import workbench

    url, store = app
    wb = workbench.open(store)
    row = {
        "messages": [
            {"role": "system", "content": f"sys {PAYLOAD}"},
            {"role": "user", "content": f"user {PAYLOAD}", "name": ONE_LINE},
            {"role": "assistant", "content": None, "reasoning_content": PAYLOAD, "tool_calls": [
                {"id": f"c{ONE_LINE}", "type": "function", "function": {"name": f"f{ONE_LINE}", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"c{ONE_LINE}", "content": f"tool {PAYLOAD}"},
            {"role": "assistant", "content": f"answer {PAYLOAD}"},
        ],
        "tools": [{"type": "function", "function": {"name": f"f{ONE_LINE}", "description": PAYLOAD}}],
        "meta": PAYLOAD,
    }  # fmt: skip
    name = f"h![a](http:__{EVIL}_x.png).jsonl"
    (tmp_path / name).write_text(json.dumps(row) + f"\n{{broken {PAYLOAD}\n")
    wb.import_files([tmp_path / name], licence=ONE_LINE, actor=f"loader{ONE_LINE}")
    cid = next(c["id"] for c in wb.list(text="answer <img", limit=1).conversations)
    who = f"ana{ONE_LINE}"
    wb.tag([cid], [f"t{ONE_LINE}"], actor=who)
    wb.comment(cid, f"comment {PAYLOAD}", actor=who)

    origin = urlsplit(url).netloc
    off: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(TIMEOUT_MS)

        def record(u: str) -> None:
            parts = urlsplit(u)
            if parts.scheme not in ("data", "blob", "about") and parts.netloc != origin:
                off.append(u)

        seen: list[str] = []
        page.on("request", lambda r: (seen.append(r.url), record(r.url)))
        main = page.locator('[data-testid="stMain"]')

        def settle() -> None:
            page.wait_for_timeout(200)
            page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=TIMEOUT_MS)

        page.goto(url + "/review")
        box = page.locator('[data-testid="stSidebar"]').get_by_label("Reviewer name", exact=True)
        box.fill(who)
        box.press("Enter")
        settle()
        expect(main.get_by_text(re.compile(r"comment <img src="))).to_be_visible()  # the data, as text
        nav = page.locator('[data-testid="stSidebarNav"]')
        titles = [t.strip().split("\n")[-1].strip() for t in nav.get_by_role("link").all_inner_texts()]
        for title in titles:
            nav.get_by_role("link", name=title).click()
            expect(main.get_by_role("heading", name=title, exact=True).first).to_be_visible()
            settle()
            if title in ("Browse", "Lineage"):
                ids = main.get_by_label("Conversation id", exact=True)
                ids.fill(cid)
                ids.press("Enter")
                settle()
                if title == "Lineage":
                    main.get_by_text("Turns of revision 1").click()
                    settle()
                expect(main.get_by_text(re.compile(r"answer <img src=")).first).to_be_visible()
        assert page.locator(f"img[src*='{EVIL}'], iframe, script[src*='{EVIL}']").count() == 0
        browser.close()
    assert off == [], off
    from tests.reliability_figures import record as figure

    figure(
        "Hostile store in Chromium: no request off the app's origin",
        pages=len(titles),
        requests=len(seen),
        off_origin=0,
    )
