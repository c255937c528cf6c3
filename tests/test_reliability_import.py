"""Reliability of import: fuzzed input, SIGKILL mid-import, parallel imports (issue 10, part).

The fuzz budget is `SIFT_FUZZ_EXAMPLES` (default 60 per dialect) for longer local runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench
from curation.formats import FileReadError
from tests.conftest import ROOT, run_sift

FUZZ = int(os.environ.get("SIFT_FUZZ_EXAMPLES", "60"))
CASES: dict[str, int] = {}

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
role = (
    st.sampled_from(["user", "assistant", "system", "tool", "human", "gpt", "function_call", "observation", "bot", ""])
    | st.integers()
    | st.none()
)
text = (
    st.text(max_size=30) | st.just("x" * 5000) | st.just("\x00nul\x00") | st.just("ü\r\nline") | st.just("\ud800 lone")
)


def openai_row() -> st.SearchStrategy:
    msg = st.fixed_dictionaries({"role": role, "content": text | junk}, optional={"tool_calls": junk, "name": junk})
    return st.fixed_dictionaries({"messages": st.lists(msg | junk, max_size=4) | junk}, optional={"tools": junk})


def sharegpt_row() -> st.SearchStrategy:
    turn = st.fixed_dictionaries({"from": role, "value": text | junk})
    return st.fixed_dictionaries(
        {"conversations": st.lists(turn | junk, max_size=4) | junk}, optional={"tools": junk, "system": junk}
    )


def alpaca_row() -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"instruction": text | junk}, optional={"input": text | junk, "output": text | junk, "history": junk}
    )


def deep(n: int) -> str:
    return "[" * n + "]" * n


@st.composite
def jsonl_file(draw, row) -> bytes:
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            # A lone surrogate is an escape with ensure_ascii, invalid UTF-8 (CESU bytes) without.
            lines.append(json.dumps(draw(row), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"))
        elif kind == 6:
            lines.append(b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
        elif kind == 7:
            lines.append(deep(draw(st.integers(1, 3000))).encode())
        elif kind == 8:
            lines.append(b'{"role": "user", "role": 3, "messages": 1}')  # duplicate keys
        else:
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b" "))
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + sep.join(lines) + sep


def check_accounting(wb, path: Path) -> None:
    try:
        r = wb.import_files([path])
    except FileReadError as e:
        assert str(path) in str(e)
        return
    f = r.files[0]
    assert f.imported + f.already_present + f.quarantined == f.rows
    q = wb.quarantine(limit=10_000, source=path.name)
    assert all(row["message"] and row["field"] for row in q.rows)


@pytest.mark.parametrize("dialect", ["openai", "sharegpt", "alpaca"])
def test_fuzzed_jsonl_never_crashes(tmp_path: Path, dialect: str) -> None:
    wb = workbench.open(tmp_path / "fuzz.duckdb")
    row = {"openai": openai_row, "sharegpt": sharegpt_row, "alpaca": alpaca_row}[dialect]()
    counter = {"n": 0}

    @settings(max_examples=FUZZ, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(jsonl_file(row), st.sampled_from([".jsonl", ".json"]))
    def prop(data: bytes, suffix: str) -> None:
        counter["n"] += 1
        path = tmp_path / f"case{counter['n']}{suffix}"
        path.write_bytes(data)
        check_accounting(wb, path)

    prop()
    CASES[dialect] = counter["n"]
    assert counter["n"] >= min(FUZZ, 50)
    # The store is still consistent after all of it.
    s = wb.stats()
    assert s.conversations == wb.list(limit=1).total


IMPORTER = """
import sys, workbench
wb = workbench.open(sys.argv[1])
print("start", flush=True)
wb.import_files([sys.argv[2]])
print("done", flush=True)
"""


def test_sigkill_mid_import_leaves_store_as_before(tmp_path: Path) -> None:
    from tickets import generate_conversations

    store = tmp_path / "s.duckdb"
    seed = tmp_path / "seed.jsonl"
    seed.write_text("\n".join(json.dumps(r) for r in generate_conversations(50, seed=3)) + "\n")
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(json.dumps(r) for r in generate_conversations(20000, seed=4)) + "\n")
    workbench.open(store).import_files([seed])
    before = workbench.open(store).store.logical_dump()
    survived = 0
    for delay in (0.5, 1.5, 3.0, 5.0):
        p = subprocess.Popen(
            [sys.executable, "-c", IMPORTER, str(store), str(big)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert p.stdout is not None and p.stdout.readline().strip() == "start"
        time.sleep(delay)
        if p.poll() is not None:
            continue  # finished before the kill point: not a kill
        p.send_signal(signal.SIGKILL)
        p.wait()
        after = workbench.open(store).store.logical_dump()  # opens without error
        if after != before:
            # Only acceptable if the transaction had fully committed before the kill.
            assert after["conversations"] and len(after["conversations"]) == 50 + 20000, "partial import after SIGKILL"
            break
        survived += 1
    assert survived >= 1
    # The operation can be re-run to completion.
    r = workbench.open(store).import_files([big]).totals
    assert r.imported + r.already_present == 20000


def test_parallel_cli_imports_all_land(tmp_path: Path) -> None:
    store = tmp_path / "p.duckdb"
    files = []
    for i in range(4):
        f = tmp_path / f"f{i}.jsonl"
        f.write_text("\n".join(json.dumps({"instruction": f"file {i} row {j}", "output": "ok"}) for j in range(200)))
        files.append(f)
    cmd = [sys.executable, "-m", "workbench", "--store", str(store), "import", "--json"]
    procs = [
        subprocess.Popen([*cmd, str(f)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for f in files
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert sum(json.loads(o[0])["totals"]["imported"] for o in outs) == 800
    assert json.loads(run_sift("stats", "--json", store=store, check=True).stdout)["conversations"] == 800


def test_cli_import_of_odd_files_reports_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lone surrogates, UTF-16 and CR-only files: every good row lands, no traceback (issue 16)."""
    from workbench import cli

    good = '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a"}]}'
    lone = '{"messages": [{"role": "user", "content": "\\ud800 lone"}, {"role": "assistant", "content": "x"}]}'
    (tmp_path / "s.jsonl").write_text(f"{good % 1}\n{lone}\n{good % 2}\n")
    (tmp_path / "u.jsonl").write_bytes(("\ufeff" + f"{good % 3}\n{good % 4}\n").encode("utf-16"))
    (tmp_path / "c.jsonl").write_bytes(f"{good % 5}\r{good % 6}\r".encode())
    store = str(tmp_path / "odd.duckdb")
    files = [str(tmp_path / n) for n in ("s.jsonl", "u.jsonl", "c.jsonl")]
    assert cli.main(["--store", store, "import", "--json", *files]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [(f["imported"], f["quarantined"], f["encoding"]) for f in r["files"]] == [
        (2, 1, "utf-8"),
        (2, 0, "utf-16-le"),
        (2, 0, "utf-8"),
    ]
    assert cli.main(["--store", store, "quarantine", "--json"]) == 0
    [q] = json.loads(capsys.readouterr().out)["rows"]
    assert (q["line"], q["field"]) == (2, "messages[0].content") and "surrogate" in q["message"]
    assert cli.main(["--store", store, "import", str(tmp_path / "u.jsonl")]) == 0
    assert "(openai, read as UTF-16-LE): 2 rows: 0 imported, 2 already present" in capsys.readouterr().out
    # A file name that is not UTF-8 (Linux allows any bytes) is recorded with escapes.
    odd = os.fsdecode(bytes(tmp_path) + b"/odd\xff.jsonl")
    Path(odd).write_text(good % 7)
    assert cli.main(["--store", store, "import", odd]) == 0
    assert "odd\\xff.jsonl (openai): 1 rows: 1 imported" in capsys.readouterr().out


def test_multi_file_import_names_committed_files_when_a_later_one_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file is one transaction; a failure writing file 2 names file 1 as committed."""
    from workbench.services.core import ImportIncomplete

    wb = workbench.open(tmp_path / "m.duckdb")
    row = '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "a"}]}\n'
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(row % "one")
    b.write_text(row % "two")
    real = wb.store.import_stream

    def fail_second(st, **kw):  # a disk-full/IO fault on the second file cannot be caused portably
        if st.path.name == "b.jsonl":
            raise OSError("No space left on device")
        return real(st, **kw)

    monkeypatch.setattr(wb.store, "import_stream", fail_second)
    with pytest.raises(ImportIncomplete) as e:
        wb.import_files([a, b])
    msg = str(e.value)
    assert msg.startswith(f"{b}: not imported (No space left on device); nothing of it was written.")
    assert f"{a} (1 imported, 0 quarantined)" in msg
    assert [f.path for f in e.value.committed] == [str(a)]
    assert wb.stats().conversations == 1
