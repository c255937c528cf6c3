"""Versions: freeze (with exclusions, families and the leakage check), verify, export, diff.

Other stages are used when they are there: Dedup's `Store.dedup_clusters()` (families) and
`curation.dedup.contamination` (near-duplicate leakage), PII's `Store.pii_unresolved_conversations()`,
and Validation's blocking flags (stage "validate", severity "error") and `Store.token_counts()`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import io
import json
import os
import re
import statistics
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation import manifest as mf
from curation.records import Conversation
from curation.split import (
    EXCLUSION_REASONS,
    SPLITS,
    FreezeConfig,
    Leak,
    LeakageError,
    Member,
    SplitError,
    assign,
    exact_overlap,
    families,
    family_strata,
    near_overlap,
)
from curation.validate import percentile
from workbench._version import __version__
from workbench.services.core import default_actor
from workbench.services.results import Result, optional
from workbench.store import Store
from workbench.store._db import now
from workbench.store.versions import FrozenVersionError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TOKENIZER_KEYS = ("model", "identity", "tokenizer_sha256", "template_sha256", "max_seq_len", "system_prompt")


def token_stats(counts: list[int]) -> dict[str, Any]:
    v = sorted(counts)
    return {
        "counted": len(v),
        "total": sum(v),
        "mean": round(statistics.fmean(v), 2),
        "p50": percentile(v, 0.5),
        "p90": percentile(v, 0.9),
        "p99": percentile(v, 0.99),
        "max": v[-1],
    }


@dataclass(frozen=True)
class FreezeResult(Result):
    """`sift freeze --json`: counts per split, `excluded` {reason: n} and the manifest hash. A dry
    run (nothing frozen) adds `dry_run`, `families` per split, `leakage` (eval rows that near-copy
    train ones) and its `leakage_method`, `warnings`, and `unchecked` {stage: conversations changed
    since its last run}."""

    version: str
    train: int
    eval: int
    excluded: dict[str, int]
    manifest_sha256: str
    dry_run: bool | None = optional()
    families: dict[str, int] | None = optional()
    leakage: list[dict[str, Any]] | None = optional()
    leakage_method: str | None = optional()
    warnings: list[str] | None = optional()
    unchecked: dict[str, int] | None = optional()


@dataclass(frozen=True)
class VersionList(Result):
    """Every version, in freeze order: `{"name", "parent", "manifest_sha256", "actor", ...}` each."""

    versions: list[dict[str, Any]]


@dataclass(frozen=True)
class VersionManifest(Result):
    """A frozen version's manifest as stored (`to_dict()` is the JSON document, keys as stored);
    `version` holds its splits, config, stages and counts."""

    document: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.document.get("name"))

    @property
    def manifest_sha256(self) -> str:
        return str(self.document.get("manifest_sha256"))

    @property
    def version(self) -> dict[str, Any]:
        return dict(self.document.get("version") or {})

    def to_dict(self) -> dict[str, Any]:
        return self.document


@dataclass(frozen=True)
class Verification(Result):
    """`sift verify --json`: ok when nothing in the store (and the export folder, when given)
    differs from what was frozen; each problem names the file or row."""

    version: str
    ok: bool
    problems: list[str]


@dataclass(frozen=True)
class ExportReport(Result):
    """`sift export --json`: rows written per split, `skipped` {split: rows the format cannot
    hold}, `files` {name: sha256}."""

    version: str
    format: str
    out: str
    train: int
    eval: int
    skipped: dict[str, int]
    files: dict[str, str]
    manifest_sha256: str


@dataclass(frozen=True)
class VersionDiff(Result):
    """`sift diff --json`: per split `{"added", "removed", "changed": [{"id", "from", "to"}],
    "unchanged"}`; `moved`: conversations in both versions but in another split."""

    a: str
    b: str
    splits: dict[str, dict[str, Any]]
    moved: list[dict[str, Any]]


class VersionsService:
    store: Store

    # ------------------------------------------------------------ freeze

    @staticmethod
    def _manifest(
        name: str, *, parent: str | None, version: dict[str, Any], files: Any, actor: str
    ) -> tuple[Any, dict[str, Any]]:
        """The manifest of a version about to be frozen (freeze, ablate), stamped now; returns the
        time it was stamped with (the store records the same) and the manifest."""
        ts = now()
        built = mf.build_manifest(
            name=name,
            created_at=ts.isoformat(timespec="seconds") + "Z",
            actor=actor,
            parent=parent,
            version=version,
            files=files,
        )
        return ts, built

    def freeze(
        self,
        name: str,
        *,
        eval_fraction: float = 0.1,
        seed: int = 42,
        include: str = "accepted",
        stratify_by: str | None = None,
        exclude_unresolved_pii: bool = True,
        parent: str | None = None,
        dry_run: bool = False,
        allow_leakage: bool = False,
        allow_unchecked: bool = False,
        actor: str | None = None,
    ) -> FreezeResult:
        """Freeze the current revisions into version `name` (or, with `dry_run`, only say what it would be).

        Refuses while conversations it would include changed after the last validate or dedup run
        (an edit, a redaction or an import makes a revision those checks never saw, and their flags
        belong to the old revision); `allow_unchecked` freezes anyway. A dry run lists them under
        "unchecked".

        Refuses while eval conversations duplicate train ones (`LeakageError` lists them); a dry run
        returns them under "leakage" instead. `allow_leakage` freezes anyway (e.g. an uncurated
        baseline) and records the leaking pairs in the manifest's `leakage_check`.
        """
        if not _NAME.fullmatch(name or ""):
            raise SplitError(
                f"version name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
                "(at most 100, starting with a letter or digit)"
            )
        config = FreezeConfig(eval_fraction, seed, include, stratify_by or None, exclude_unresolved_pii)
        config.check()
        actor = actor or default_actor()
        plan = self._plan(config, name, parent)
        unchecked = plan["unchecked"]
        if unchecked and not dry_run and not allow_unchecked:
            stage, ids = next(iter(unchecked.items()))
            more = f" and {len(unchecked) - 1} other stage(s)" if len(unchecked) > 1 else ""
            raise SplitError(
                f"{len(ids)} conversation(s) to freeze changed after the last `sift {stage}` run{more} "
                f"(e.g. {', '.join(ids[:3])}): their current revisions were never checked. Run "
                f"{' and '.join(f'`sift {s}`' for s in unchecked)} again, or freeze with --allow-unchecked"
            )
        if allow_leakage:
            plan["version"]["leakage_check"].update(allowed=True, leaks=[x.to_dict() for x in plan["leaks"]])
        ts, manifest = self._manifest(name, parent=parent, version=plan["version"], files=plan["files"], actor=actor)
        result = FreezeResult(
            version=name,
            train=plan["version"]["counts"]["train"],
            eval=plan["version"]["counts"]["eval"],
            excluded=plan["version"]["counts"]["excluded"],
            manifest_sha256=manifest["manifest_sha256"],
        )
        if dry_run:
            return dataclasses.replace(
                result,
                dry_run=True,
                families=plan["version"]["counts"]["families"],
                leakage=[x.to_dict() for x in plan["leaks"]],
                leakage_method=plan["version"]["leakage_check"]["method"],
                warnings=plan["warnings"],
                unchecked={stage: len(ids) for stage, ids in unchecked.items()},
            )
        if plan["leaks"] and not allow_leakage:
            raise LeakageError(plan["leaks"])
        self.store.create_version(
            name,
            manifest_text=mf.manifest_text(manifest),
            manifest_sha256=manifest["manifest_sha256"],
            parent=parent,
            rows=plan["rows"],
            actor=actor,
            ts=ts,
        )
        return result

    def preview_freeze(self, name: str, **options: Any) -> FreezeResult:
        return self.freeze(name, dry_run=True, **options)

    def _plan(self, config: FreezeConfig, name: str, parent: str | None) -> dict[str, Any]:
        inputs = self.store.freeze_inputs(name, parent)
        convs = inputs["conversations"]
        if not convs:
            raise SplitError("nothing to freeze: the store has no conversations")
        warnings: list[str] = []
        runs = {r["stage"]: r for r in inputs["stage_runs"]}
        clusters: dict[str, Any] = {}
        dedup_clusters = getattr(self.store, "dedup_clusters", None)
        if dedup_clusters is not None:
            clusters = dict(dedup_clusters())
        if "dedup" not in runs:
            warnings.append("dedup has not run: near-duplicates are not grouped into families")
        if "validate" not in runs:
            warnings.append("validation has not run: rows were not checked for blocking errors")
        pii: set[str] = set()
        if config.exclude_unresolved_pii:
            unresolved = getattr(self.store, "pii_unresolved_conversations", None)
            if unresolved is None:
                warnings.append("PII review is not available: unresolved PII was not checked")
            else:
                pii = set(unresolved())

        parents: dict[str, list[str]] = {}
        for child, parent in inputs["parents"]:
            parents.setdefault(child, []).append(parent)
        family_of = families(Member(c[0], c[3], tuple(parents.get(c[0], ())), clusters.get(c[0])) for c in convs)

        # Why each conversation stays out: the first reason that applies, in EXCLUSION_REASONS order.
        blocked = {
            "validation_error": set(inputs["validation_errors"]),
            "near_duplicate": set(inputs["near_duplicates"]),
            "pii_unresolved": pii,
        }
        excluded: Counter[str] = Counter()
        included: list[tuple[Any, ...]] = []
        for c in convs:
            status = c[1]
            reason = None
            if status == "rejected":
                reason = "rejected"
            elif status != "accepted" and config.include == "accepted":
                reason = "not_accepted"
            else:
                reason = next(
                    (r for r in ("validation_error", "near_duplicate", "pii_unresolved") if c[0] in blocked[r]), None
                )
            if reason:
                excluded[reason] += 1
            else:
                included.append(c)
        excluded_counts = {r: excluded[r] for r in EXCLUSION_REASONS if excluded[r]}
        if not included:
            why = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in excluded_counts.items())
            raise SplitError(f"nothing to freeze: every conversation is left out ({why})")

        # Stages whose flags exclude rows: a revision newer than their last run was never checked.
        ids_in = {c[0] for c in included}
        unchecked: dict[str, list[str]] = {}
        changed_since = getattr(self.store, "changed_since_stage", None)
        for stage in ("validate", "dedup"):
            changed = changed_since(stage) if changed_since is not None and stage in runs else None
            stale = [cid for cid in changed or () if cid in ids_in]
            if stale:
                unchecked[stage] = stale
                warnings.append(f"{len(stale)} conversation(s) changed after the last {stage} run: not checked")

        groups: dict[str, list[str]] = {}
        for c in included:
            groups.setdefault(family_of[c[0]], []).append(c[0])
        strata = None
        if config.stratify_by:
            strata = family_strata(
                {c[0]: family_of[c[0]] for c in included}, {c[0]: list(c[4]) for c in included}, config.stratify_by
            )
        side = assign(groups, eval_fraction=config.eval_fraction, seed=config.seed, strata=strata)

        conversations = {c[0]: Conversation.from_json(c[5]) for c in included}
        by_split: dict[str, dict[str, Conversation]] = {s: {} for s in SPLITS}
        for cid, conv in conversations.items():
            by_split[side[cid]][cid] = conv
        # The leakage check reads redacted revisions by the text they were redacted from: placeholders
        # (<PERSON> in one copy, <EMAIL_ADDRESS> in the other) must not hide a near-copy.
        unredacted = getattr(self.store, "iter_unredacted", None)
        check = by_split
        if unredacted is not None:
            originals = {
                cid: Conversation.from_json(src)
                for batch in unredacted(list(conversations))
                for cid, _, src in batch
                if cid in conversations
            }
            check = {s: {cid: originals.get(cid, conv) for cid, conv in by_split[s].items()} for s in SPLITS}
        leaks, method = self._leaks(check["train"], check["eval"], runs.get("dedup"))
        if method == "exact":
            warnings.append("dedup's contamination check is not available: eval was checked for exact copies only")
        if not by_split["eval"]:
            warnings.append("the eval split is empty")

        rows = sorted(((c[0], c[2], side[c[0]], family_of[c[0]], c[6]) for c in included), key=lambda r: (r[2], r[0]))
        splits = {
            s: [{"id": r[0], "revision": r[1], "sha256": r[4], "family": r[3]} for r in rows if r[2] == s]
            for s in SPLITS
        }
        files = {}
        for s, fname in mf.split_file_names("openai").items():
            data, _ = mf.render_split([(r["id"], by_split[s][r["id"]]) for r in splits[s]], "openai")
            files[fname] = mf.bytes_sha256(data)

        version = {
            "config": config.to_dict(),
            "counts": {
                "train": len(splits["train"]),
                "eval": len(splits["eval"]),
                "families": {s: len({r["family"] for r in splits[s]}) for s in SPLITS},
                "excluded": excluded_counts,
            },
            "splits": splits,
            "token_stats": self._token_stats(rows),
            "tokenizer": self._tokenizer(runs.get("validate")),
            "stages": [
                {"stage": r["stage"], "run_id": r["run_id"], "config": r["config"]} for r in inputs["stage_runs"]
            ],
            "provenance": self._provenance(included, inputs["sources"]),
            "leakage_check": {"method": method, "pairs": len(leaks)},
            "sift_version": __version__,
        }
        return {
            "version": version,
            "rows": rows,
            "files": files,
            "leaks": leaks,
            "warnings": warnings,
            "unchecked": unchecked,
        }

    def _leaks(
        self, train: dict[str, Conversation], eval: dict[str, Conversation], dedup_run: dict[str, Any] | None
    ) -> tuple[list[Leak], str]:
        contamination, config = _dedup_contamination(dedup_run)
        if contamination is None:
            return exact_overlap(train, eval), "exact"
        return near_overlap(contamination, train, eval, config), "near_duplicate"

    def _token_stats(self, rows: list[tuple[str, int, str, str, str]]) -> dict[str, Any] | None:
        counts_of = getattr(self.store, "token_counts", None)
        if counts_of is None:
            return None
        counts = counts_of([(r[0], r[1]) for r in rows]) or {}
        out = {}
        for s in SPLITS:
            values = [counts[(r[0], r[1])] for r in rows if r[2] == s and (r[0], r[1]) in counts]
            if values:
                out[s] = token_stats(values)
        return out or None

    @staticmethod
    def _tokenizer(validate_run: dict[str, Any] | None) -> dict[str, Any] | None:
        if validate_run is None:
            return None
        cfg = validate_run["config"]
        ident = {k: cfg[k] for k in _TOKENIZER_KEYS if cfg.get(k) is not None}
        return ident or None

    @staticmethod
    def _provenance(included: list[tuple[Any, ...]], sources: list[tuple[Any, ...]]) -> dict[str, Any]:
        ids = {c[0] for c in included}
        origin = Counter(c[8] for c in included)
        revised = Counter(c[7] for c in included if c[2] > 1)
        per_source: dict[int, dict[str, Any]] = {}
        for cid, sid, name, fmt, sha, licence in sources:
            if cid not in ids:
                continue
            s = per_source.setdefault(
                sid, {"name": name, "format": fmt, "sha256": sha, "licence": licence, "conversations": 0}
            )
            s["conversations"] += 1
        return {
            "origin": dict(sorted(origin.items())),
            "revised": dict(sorted(revised.items())),
            "sources": [per_source[k] for k in sorted(per_source)],
        }

    # ------------------------------------------------------------ reads

    def versions(self) -> VersionList:
        return VersionList(self.store.list_versions())

    def version_manifest(self, name: str) -> VersionManifest:
        return VersionManifest(json.loads(self.store.get_version(name)["manifest_text"]))

    def _load(self, name: str, *, contents: bool = False) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        """The stored manifest, what no longer matches it, and the store's read of the version."""
        loaded = self.store.load_version(name, contents=contents)
        v = loaded["version"]
        try:
            manifest = json.loads(v["manifest_text"])
        except json.JSONDecodeError:
            return None, ["store: the stored manifest is not valid JSON"], loaded
        problems: list[str] = []
        sha = v["manifest_sha256"]
        if manifest.get("manifest_sha256") != sha or mf.manifest_hash(manifest.get("version", {})) != sha:
            problems.append("store: the manifest no longer hashes to the version's manifest_sha256")
        listed = {
            (s, r["id"], r["revision"], r["family"], r["sha256"])
            for s, rs in manifest.get("version", {}).get("splits", {}).items()
            for r in rs
        }
        stored = set(loaded["rows"])
        if listed != stored:
            changed = sorted({x[1] for x in listed ^ stored})
            problems.append(
                f"store: {len(changed)} row(s) of the version differ from its manifest ({', '.join(changed[:5])})"
            )
        return manifest, problems + loaded["problems"], loaded

    def _checked_rows(self, name: str) -> tuple[dict[str, Any], dict[str, list[tuple[str, Conversation]]]]:
        """The manifest and the pinned conversations per split; refuses a version that changed."""
        manifest, problems, loaded = self._load(name, contents=True)
        if problems or manifest is None:
            raise FrozenVersionError(
                f"version {name!r} changed after it was frozen ({problems[0]}); see `sift verify {name}`"
            )
        rows: dict[str, list[tuple[str, Conversation]]] = {s: [] for s in SPLITS}
        for split, cid, _rev, content in loaded["contents"]:
            rows[split].append((cid, Conversation.from_json(content)))
        return manifest, rows

    # ------------------------------------------------------------ verify

    def verify_version(self, name: str, export_dir: str | Path | None = None) -> Verification:
        """Recompute the version's hashes from the store and, when given, from an export folder."""
        manifest, problems, _ = self._load(name)
        if export_dir is not None:
            if manifest is None or problems:
                problems.append("export: not checked, the store's copy of the version is damaged")
            else:
                problems += self._export_problems(name, manifest, Path(export_dir))
        return Verification(version=name, ok=not problems, problems=problems)

    def _export_problems(self, name: str, manifest: dict[str, Any], folder: Path) -> list[str]:
        path = folder / "manifest.json"
        if not path.is_file():
            return [f"manifest.json: missing from {folder}"]
        try:
            em = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ["manifest.json: not valid JSON (modified)"]
        problems: list[str] = []
        if not isinstance(em, dict) or not isinstance(em.get("files"), dict):
            return ["manifest.json: modified (no files listed)"]
        if em.get("manifest_sha256") != manifest["manifest_sha256"]:
            problems.append(
                f"manifest.json: manifest_sha256 {em.get('manifest_sha256')} is not version {name}'s "
                f"({manifest['manifest_sha256']})"
            )
        elif mf.manifest_hash(em.get("version", {})) != em["manifest_sha256"]:
            problems.append("manifest.json: modified (its content no longer hashes to its manifest_sha256)")
        fmt = (em.get("export") or {}).get("format", "openai")
        if fmt not in mf.EXPORT_FORMATS:
            return [*problems, f"manifest.json: unknown export format {fmt!r}"]
        _, rows = self._checked_rows(name)
        expected, _ = mf.export_files(manifest, rows, fmt)
        for fname in sorted(set(em["files"]) | (set(expected) - {"manifest.json"})):
            f = folder / fname
            if not f.is_file():
                problems.append(f"{fname}: missing")
                continue
            sha = mf.bytes_sha256(f.read_bytes())
            if fname not in em["files"]:
                problems.append(f"{fname}: not listed in manifest.json")
            elif sha != em["files"][fname]:
                problems.append(f"{fname}: modified (its sha256 differs from manifest.json)")
            elif fname not in expected or sha != mf.bytes_sha256(expected[fname]):
                problems.append(f"{fname}: does not match version {name} in the store")
        known = set(em["files"]) | set(expected) | {"manifest.json"}
        for extra in sorted(p.name for p in folder.iterdir() if p.name not in known):
            kind = "folder" if (folder / extra).is_dir() else "file"
            problems.append(f"{extra}: extra {kind}, not part of the export")
        return problems

    # ------------------------------------------------------------ export

    def export_files(self, name: str, fmt: str) -> tuple[dict[str, bytes], dict[str, Any]]:
        """The files of an export folder (name → bytes) and its manifest."""
        if fmt not in mf.EXPORT_FORMATS:
            raise SplitError(f"unknown export format {fmt!r} (use {', '.join(mf.EXPORT_FORMATS)})")
        manifest, rows = self._checked_rows(name)
        return mf.export_files(manifest, rows, fmt)

    def export_version(self, name: str, fmt: str, out_dir: str | Path) -> ExportReport:
        """Write train/eval files, manifest.json and README.md into `out_dir` (each file atomically)."""
        files, m = self.export_files(name, fmt)
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise SplitError(f"{out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            tmp = out / f".{fname}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, out / fname)
        skipped = {s: len(x) for s, x in m["export"]["skipped"].items()}
        counts = m["version"]["counts"]
        return ExportReport(
            version=name,
            format=fmt,
            out=str(out),
            train=counts["train"] - skipped.get("train", 0),
            eval=counts["eval"] - skipped.get("eval", 0),
            skipped=skipped,
            files=m["files"],
            manifest_sha256=m["manifest_sha256"],
        )

    def export_zip(self, name: str, fmt: str) -> bytes:
        """The export folder as a zip (for downloads), under a folder named after the version."""
        files, _ = self.export_files(name, fmt)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for fname, data in files.items():
                z.writestr(f"{name}/{fname}", data)
        return buf.getvalue()

    # ------------------------------------------------------------ diff

    def diff_versions(self, a: str, b: str) -> VersionDiff:
        """Per split: conversations added, removed, and changed (another revision) from `a` to `b`."""
        ra = {cid: (split, rev) for split, cid, rev, _, _ in self.store.version_rows(a)}
        rb = {cid: (split, rev) for split, cid, rev, _, _ in self.store.version_rows(b)}
        splits = {}
        for s in SPLITS:
            sa = {c: r for c, (sp, r) in ra.items() if sp == s}
            sb = {c: r for c, (sp, r) in rb.items() if sp == s}
            both = sorted(sa.keys() & sb.keys())
            splits[s] = {
                "added": sorted(sb.keys() - sa.keys()),
                "removed": sorted(sa.keys() - sb.keys()),
                "changed": [{"id": c, "from": sa[c], "to": sb[c]} for c in both if sa[c] != sb[c]],
                "unchanged": sum(1 for c in both if sa[c] == sb[c]),
            }
        moved = [
            {"id": c, "from": ra[c][0], "to": rb[c][0]} for c in sorted(ra.keys() & rb.keys()) if ra[c][0] != rb[c][0]
        ]
        return VersionDiff(a=a, b=b, splits=splits, moved=moved)


def _dedup_contamination(dedup_run: dict[str, Any] | None) -> tuple[Callable[..., Any] | None, Any]:
    """Dedup's contamination function and a config for it (the last dedup run's), when Dedup exists."""
    if importlib.util.find_spec("curation.dedup") is None:
        return None, None
    dedup = importlib.import_module("curation.dedup")
    fn = getattr(dedup, "contamination", None)
    if fn is None:
        return None, None
    cls: Any = getattr(dedup, "DedupConfig", None)
    config = None
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        known = {f.name for f in dataclasses.fields(cls)}
        stored = (dedup_run or {}).get("config") or {}
        config = cls(**{k: v for k, v in stored.items() if k in known})
    return fn, config


__all__ = ["VersionsService", "token_stats"]
