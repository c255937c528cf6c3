"""The PII page's bulk review in a real browser (issue 22): `streamlit run` over a store with
stored findings, driven by Playwright through headless Chromium. The reviewer dismisses every
finding of one exact text after the page states the count, and remembers it in the allow-list.

The findings are stored through the store's own scan API (real offsets and hashes of real text):
the bulk action needs no detector, and building the analyzer would cost the server ~20 s."""

from __future__ import annotations

import json

import pytest

import workbench
from curation.records import sha256_hex
from tests.conftest import write
from tests.test_e2e_browser import ARGS, CHROMIUM, TIMEOUT_MS, app  # noqa: F401 - app is a fixture

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup_system.sh")

TEXTS = [
    "Thanks Java team, the upgrade to Java 21 worked. Ask Priya Raman if it breaks.",
    "Java keeps crashing on start; Priya Raman saw it too.",
    "Is Java 17 still supported?",
]


def seed(store, tmp_path) -> dict[str, int]:
    wb = workbench.open(store)
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]} for t in TEXTS]
    wb.import_files([write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows))], actor="loader")
    findings, scanned = [], []
    for c in wb.list(limit=10).conversations:
        d = wb.show(c["id"])
        text = d.messages[0]["content"]
        scanned.append((c["id"], d.revision, 2))
        for needle, entity in (("Java", "PERSON"), ("Priya Raman", "PERSON")):
            start = text.find(needle)
            while start >= 0:
                findings.append(
                    {
                        "conversation_id": c["id"], "revision": d.revision, "message_index": 0,
                        "field": "content", "role": "user", "start": start, "end": start + len(needle),
                        "entity": entity, "score": 0.85, "recognizer": "SpacyRecognizer",
                        "text_sha256": sha256_hex(needle),
                    }
                )  # fmt: skip
                start = text.find(needle, start + 1)
    wb.store.pii_save_scan("pii-e2e", scanned, findings, actor="loader")
    return {"java": sum(1 for t in TEXTS for _ in range(t.count("Java"))), "all": len(findings)}


def test_bulk_dismiss_by_text_in_chromium(app, tmp_path) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    url, store = app
    n = seed(store, tmp_path)
    assert n == {"java": 4, "all": 6}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        main = page.locator('[data-testid="stMain"]')
        # sign in where the reviewer session test does, then open the PII page from the sidebar
        page.goto(url + "/import")
        expect(main.get_by_role("heading", name="Import", exact=True)).to_be_visible(timeout=3 * TIMEOUT_MS)
        name_box = page.locator('[data-testid="stSidebar"]').get_by_label("Reviewer name", exact=True)
        name_box.fill("ana")
        name_box.press("Enter")
        page.wait_for_timeout(500)
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="PII").click()
        expect(main.get_by_role("heading", name="PII", exact=True)).to_be_visible()
        main.get_by_text("Bulk review (by entity, exact text, recognizer, score range)").click()
        box = main.get_by_label("Exact text (e.g. Java)", exact=True)
        box.fill("Java")
        box.press("Enter")
        expect(main.get_by_text("4 pending finding(s) match: 4 PERSON.")).to_be_visible()
        main.get_by_text("Remember the text: add it to this store's allow-list").click()
        main.get_by_role("button", name="Confirm: dismiss 4 finding(s)").click()
        expect(main.get_by_text("4 finding(s) dismissed; remembered in the allow-list.")).to_be_visible()
        assert main.locator('[data-testid="stException"]').count() == 0
        # The two "Priya Raman" findings left in the queue, by keyboard: A accepts the first, D dismisses the next.
        status = page.locator('[data-testid="stStatusWidget"]')
        for key, left in (("a", "1 finding(s) match."), ("d", "0 finding(s) match.")):
            expect(main.get_by_text("Keys: A accepts, D dismisses the first finding below.")).to_be_visible()
            page.wait_for_timeout(150)
            status.wait_for(state="detached")
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press(key)
            expect(main.get_by_text(left, exact=True)).to_be_visible()
        assert main.locator('[data-testid="stException"]').count() == 0
        browser.close()
    wb = workbench.open(store)
    assert wb.pii_findings(status="dismissed").total == 5
    assert wb.pii_findings(status="accepted").total == 1
    assert wb.pii_findings(status="pending").total == n["all"] - 6
    assert [t["term"] for t in wb.pii_allow_list().terms] == ["Java"]
