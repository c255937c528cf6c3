"""Column and role mapping (`sift import --map`, the Import page's form): LLaMA-Factory's own
dataset_info.json and demo files, custom columns and role tags, ranking columns, bad mappings,
one bad file among good ones, and the user's file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import workbench
from curation.column_map import ColumnMap, MappingError
from tests.conftest import run_sift, write


def test_llamafactory_dataset_info_imports_its_demo_files(tmp_path: Path, corpora: Path) -> None:
    lf = corpora / "LLaMA-Factory"
    info = lf / "dataset_info.json"
    wb = workbench.open(tmp_path / "s.duckdb")
    per_file = lambda name: ColumnMap.parse(str(info), file_name=name)  # noqa: E731
    r = wb.import_files([lf / "mllm_demo.json", lf / "identity.json"], column_map=per_file)
    assert [f.format for f in r.files] == ["sharegpt", "alpaca"]
    assert r.totals.quarantined == 0 and r.totals.rows == 6 + 91
    # mllm_demo: role/content tags user/assistant; its images column stays as metadata.
    mllm = wb.list(text="Kane and Gretzka").conversations[0]["id"]
    d = wb.show(mllm)
    assert [m["role"] for m in d.messages][:2] == ["user", "assistant"]
    assert d.metadata["images"] == ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"]
    # glaive (columns messages=conversations, tools): function calls and observations map to tool turns.
    glaive = wb.import_preview(
        lf / "glaive_toolcall_en_demo.json", column_map=per_file("glaive_toolcall_en_demo.json"), rows=10
    )
    assert not glaive.quarantined and len(glaive.conversations) == 10
    assert {"user", "assistant", "tool"} <= {m["role"] for c in glaive.conversations for m in c["messages"]}


def test_custom_columns_tags_and_ranking(tmp_path: Path) -> None:
    turns = [
        {"speaker": "customer", "says": "My parcel is late."},
        {"speaker": "agent", "says": "Sorry, it ships tomorrow."},
    ]
    rows = [
        {"dialog": turns, "persona": "You are a courier's assistant.", "ticket": 7},
        {"dialog": [{"speaker": "robot", "says": "?"}]},  # a role no tag names
        {"talk": turns},  # the mapped column is missing
    ]
    f = write(tmp_path / "chats.json", json.dumps(rows))
    cmap = ColumnMap.parse(
        "messages=dialog,system=persona,role_tag=speaker,content_tag=says,user_tag=customer,assistant_tag=agent"
    )
    wb = workbench.open(tmp_path / "s.duckdb")
    r = wb.import_files([f], column_map=cmap)
    assert (r.totals.imported, r.totals.quarantined) == (1, 2)
    d = wb.show(wb.list().conversations[0]["id"])
    assert [(m["role"], m["content"]) for m in d.messages] == [
        ("system", "You are a courier's assistant."),
        ("user", "My parcel is late."),
        ("assistant", "Sorry, it ships tomorrow."),
    ]
    assert d.metadata == {"ticket": 7}
    q = wb.quarantine().rows
    assert [x["field"] for x in q] == ["dialog[0].speaker", "dialog"]
    assert "'robot' is none of the mapped tags" in q[0]["message"]

    ranked = [{"question": "2+2?", "good": "4", "bad": "5"}]
    g = write(tmp_path / "pref.json", json.dumps(ranked))
    pref = ColumnMap.from_entry(
        {"ranking": True, "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"}}
    )
    wb.import_files([g], column_map=pref)
    conv = wb.show(wb.list(text="2+2").conversations[0]["id"])
    assert [m["content"] for m in conv.messages] == ["2+2?", "4"] and conv.metadata == {"bad": "5"}

    preview = wb.import_preview(f, column_map=cmap, rows=2)
    assert preview.format == "sharegpt" and len(preview.conversations) == 1
    assert preview.quarantined[0]["field"] == "dialog[0].speaker"
    assert wb.stats().conversations == 2  # the preview wrote nothing


def test_bad_mappings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="unknown alpaca column"):
        ColumnMap.parse("prompt=q,respons=a")
    with pytest.raises(MappingError, match="expected key=column"):
        ColumnMap.parse("prompt")
    with pytest.raises(MappingError, match="tags describe sharegpt turns"):
        ColumnMap.from_entry({"columns": {"prompt": "q"}, "tags": {"role_tag": "r"}})
    info = write(tmp_path / "dataset_info.json", json.dumps({"a": {"file_name": "a.json"}}))
    with pytest.raises(MappingError, match="no dataset 'b'"):
        ColumnMap.parse(f"{info}:b")
    with pytest.raises(MappingError, match=r"no dataset whose file_name is 'c\.json'"):
        ColumnMap.parse(str(info), file_name="c.json")


def test_cli_map_keep_going_and_user_file_names(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    good = write(tmp_path / "faq.jsonl", '{"q": "How do I reset it?", "a": "Settings, then Security."}\n')
    bad = write(tmp_path / "notes.json", "{not json")
    r = run_sift("import", str(bad), str(good), "--map", "prompt=q,response=a", "--keep-going", "--json", store=store)
    out = json.loads(r.stdout)
    assert r.returncode == 0
    assert "error" in out["files"][0] and "invalid JSON" in out["files"][0]["error"]
    assert out["files"][1]["imported"] == 1 and out["totals"]["failed_files"] == 1
    stopped = run_sift("import", str(bad), str(good), store=store)
    assert stopped.returncode == 1 and "notes.json" in stopped.stderr and stopped.stderr.count("\n") == 1

    # An upload: recorded under the user's own name, not the temporary path it was saved at.
    wb = workbench.open(store)
    r2 = wb.import_files([bad, good], names=["My notes.json", "FAQ export.jsonl"], each=True,
                         column_map=ColumnMap.parse("prompt=q,response=a"))  # fmt: skip
    assert r2.files[0].path == "My notes.json" and str(tmp_path) not in r2.files[0].error
    assert r2.files[1].path == "FAQ export.jsonl"
    assert "FAQ export.jsonl" in {s["name"] for s in wb.sources()}
