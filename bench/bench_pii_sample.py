"""PII: the default redaction on the bundled sample (datasets/sample, written by
`tickets.write_sample_set`, whose ground_truth.json lists every planted PII string).

Imports every sample file into a fresh store, scans, and runs `redact` with its defaults. Counts the
spans it rewrote that are not planted (false redactions, target 0), the planted e-mails and phone
numbers (and cards / IBANs, if the generator planted any) still in the current revisions (target 0),
and what stays pending for review by entity.

    .venv/bin/python bench/bench_pii_sample.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "datasets" / "sample"
# the generator's types whose strings the default must remove without review
MUST_GO = ("email", "phone", "card", "iban", "credit_card")


def audit(wb: Any, planted: list[dict[str, Any]]) -> dict[str, Any]:
    """What the redactions in `wb` rewrote, against the planted strings (`[{"type", "string"}]`)."""
    from curation import pii
    from curation.records import Conversation

    strings = [p["string"] for p in planted]
    false, true, by_entity = [], 0, {}
    with wb.store.db.connect() as con:
        rows = con.execute(
            "SELECT f.conversation_id, f.revision, f.message_index, f.field, f.span_start, f.span_end, f.entity "
            "FROM pii_findings f WHERE f.redacted_in IS NOT NULL ORDER BY 1, 2, 3, 5"
        ).fetchall()
    convs: dict[tuple[str, int], Any] = {}
    for cid, rev, mi, field, s, e, ent in rows:
        if (cid, rev) not in convs:
            convs[(cid, rev)] = Conversation.from_dict(wb.store.get_conversation(cid, rev))
        text = pii.field_text(convs[(cid, rev)].messages[mi], field)[s:e]
        by_entity[ent] = by_entity.get(ent, 0) + 1
        if any(text in p for p in strings):
            true += 1
        else:
            false.append({"conversation_id": cid, "entity": ent, "text": text})
    current = "\n".join(
        json.dumps(wb.show(c["id"]).messages, ensure_ascii=False) for c in wb.list(limit=100000).conversations
    )
    must = [p for p in planted if p["type"] in MUST_GO]
    left = [p for p in must if p["string"] in current]
    return {
        "spans_rewritten": len(rows),
        "by_entity": dict(sorted(by_entity.items())),
        "planted_rewritten": true,
        "false_redactions": false,
        "must_go": len(must),
        "must_go_left": left,
    }


def planted_strings(truth: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in truth["problems"]:
        for t, s in zip(p.get("types", ()), p.get("strings", ()), strict=True):
            out.append({"type": t, "string": s})
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import workbench

    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    planted = planted_strings(truth)
    files = sorted(
        p for p in SAMPLE.iterdir() if p.suffix in (".json", ".jsonl", ".parquet") and p.name != "ground_truth.json"
    )
    with tempfile.TemporaryDirectory() as tmp:
        wb = workbench.open(Path(tmp) / "s.duckdb")
        wb.import_files(files, actor="bench")
        t = time.perf_counter()
        scan = wb.pii_scan_report(actor="bench")
        t_scan = time.perf_counter() - t
        preview = wb.redact(actor="bench", dry_run=True)
        r = wb.redact(actor="bench")
        out = {
            "conversations": wb.pii_overview().conversations,
            "scan_findings": scan.findings,
            "scan_seconds": round(t_scan, 1),
            "preview": {k: preview.to_dict()[k] for k in ("conversations_redacted", "spans_redacted", "pending_left")},
            "redact": {
                k: r.to_dict()[k] for k in ("conversations_redacted", "spans_redacted", "pending_left", "reused_scan")
            },
            "planted_types": sorted({p["type"] for p in planted}),
            **audit(wb, planted),
        }
    print(json.dumps(out, indent=1, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
