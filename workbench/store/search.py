"""The text filter from a token index: a literal, case-insensitive substring search
(`contains(lower(search_text), lower(text))`, so `_ % \\` are themselves) that reads a few
thousand rows instead of every conversation's text.

The index (built in SQL, in the same transaction as the revisions it covers):
- `search_tokens`: every distinct token of every indexed revision's lower-cased search text, where a
  token is a maximal run of characters other than space, newline, tab and carriage return;
  `hits` counts its occurrences while it is rare; `frequent` once that passes FREQUENT and
  FREQUENT_SHARE of the conversations.
- `search_postings` (token_id, conversation_id, revision, created_at): which revisions hold each
  token that is not frequent (a token's postings are deleted when it becomes frequent, so a
  token's postings are either complete or absent). An import stores its postings sorted by token,
  so DuckDB reads only the row groups of the tokens a query names.
- `search_stale` (conversation_id, revision): revisions superseded by a newer one (revisions are
  append-only and keep their postings; a candidate counts only for its current revision).
- Pairs: the vocabulary also holds every pair of adjacent frequent tokens ("a b", one separator
  between them), with postings by the same rule; and a rare token's posting carries `prev` and
  `next`, masks of the tokens right before and after it in that revision (`bit_sql`).

A query is cut at the same characters into pieces; a revision can match only if, for each piece, one
of its tokens equals the piece (a piece between two separators), starts with it (a separator
before it), ends with it (a separator after it) or contains it (a query without separators).
So: a piece that no token matches means no conversation matches. Pieces whose tokens are all
rare, and two adjacent pieces (the pairs they match, or a rare token for one next to a token
for the other, by the masks), give the candidates (their postings, the cheapest intersected);
each candidate is then checked with the literal `contains` (a query without separators needs
no check: a token containing it is exactly a match). Where nothing narrows (every piece
frequent, their pair too), matches are common: conversations are walked in page order and
checked a few hundred at a time, and counted by a scan that stops at the bound. When those find
too few, the plain scan answers. Results are always exactly the scan's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import duckdb
import pyarrow as pa

from workbench.store._db import Migration

# A token is "frequent" (no postings) once it was seen more than this many times and in more than
# FREQUENT_SHARE of the conversations' texts (counting occurrences): its pieces match so many
# conversations that walking them in page order finds a page at once.
FREQUENT = 1000
FREQUENT_SHARE = 0.1
# Ids per point read (by the conversations / revisions_conv index) at least and at most: ~2 ms for
# 48 ids, ~10 ms for 512 at 1M, where a scan of the table takes ~40 ms.
GROUP = 48
GROUP_MAX = 512
# Pieces of a query looked up in the vocabulary (the longest ones).
MAX_PIECES = 12
# Vocabulary reads remembered (per query text and vocabulary state; ~15 ms each at 1M).
VOCAB_CACHE = 256
_VOCAB: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
_VOCAB_LOCK = threading.Lock()
# Narrowings (pieces, pairs of pieces) whose postings are intersected: the cheapest, and the next
# ones while they cost at most NARROW_RATIO times as much (at 1M, intersecting a narrowing 3.5x
# the size of the first cost more than checking the first's extra candidates: bench_ui).
MAX_NARROWING = 3
NARROW_RATIO = 3.0
# Rows a walk over conversations checks before giving up and running the plain scan.
WALK_LIMIT = 4096


def tokens_sql(expr: str) -> str:
    """The tokens of lower(`expr`), as a DuckDB list (empty strings included)."""
    return f"string_split(replace(replace(replace(lower({expr}), chr(10), ' '), chr(9), ' '), chr(13), ' '), ' ')"


def bit_sql(expr: str) -> str:
    """A token's bit in a neighbour mask (a UINTEGER; none for an empty or missing token): a fixed
    function of its characters, so the index and a query compute the same bit. (Part of the
    stored index: changing it needs a migration that rebuilds the index. Not DuckDB's `hash`,
    which may change between versions; first character and length are cheap and spread well.)"""
    return (
        f"CASE WHEN coalesce({expr}, '') = '' THEN 0::UINTEGER ELSE (1::UINTEGER << "
        f"((unicode({expr}) * 7 + strlen({expr})) % 32)::INTEGER) END"
    )


PAIR_SAMPLE = 8
_K = 1 << 32  # a pair's key: (number of its first token) * _K + (number of its second)

# A vocabulary row is a single token (no space) or a pair of adjacent frequent tokens ("a b").
SINGLE = "strpos(token, ' ') = 0"


def index_sql(source: str, into: str = "search_postings", *, count: bool = True) -> list[str]:
    """Statements that add the revisions in `source` (a relation with conversation_id, revision,
    created_at of the conversation, search_text) to the index. Used at import, for each new
    revision, by the migration that builds the index of an existing store, and by bench_import's
    SQL anchor. `into`: where the postings go (an import gathers them in a temporary table and
    stores them sorted by token at its end, see `postings_table` and `store_postings`). `count`:
    add to the tokens' `hits` (and turn them frequent); a single new revision does not, so two
    reviewers saving at once never write the same vocabulary row (DuckDB would refuse the second).

    Besides single tokens, the vocabulary holds the pairs of adjacent tokens (one separator
    between them) that are both frequent, "a b", counted (by revisions) and turned frequent by the
    same rule, with postings while they are not; and each rare token's posting carries two masks,
    the bits (`bit_sql`) of the tokens right before and right after it in that revision. A token that turns
    frequent gets its pairs from the revisions that held it (its postings, read before they are
    deleted), so a pair's postings are complete or absent like a token's."""
    tok = tokens_sql("search_text")
    hot = f"greatest({FREQUENT}, {FREQUENT_SHARE} * (SELECT count(*) FROM conversations))"

    def new_vocab(counts: str = "_search_n") -> str:
        return (
            "INSERT INTO search_tokens SELECT nextval('search_token_ids'), token, 0, false "
            f"FROM {counts} ANTI JOIN search_tokens USING (token)"
        )

    def pairs(docs: str, where: str = "") -> str:
        """(conversation_id, revision, created_at, k): adjacent tokens a, b of `docs`, both frequent,
        as k = (a's number, b's number) in `_search_f` (integers join faster than text)."""
        return (
            f"(SELECT conversation_id, revision, created_at, fa.n * {_K} + fb.n AS k FROM (SELECT conversation_id, "
            f"revision, created_at, unnest(t) AS a, unnest(t[2:]) AS b FROM (SELECT conversation_id, revision, "
            f"created_at, {tok} AS t FROM {docs})) x JOIN _search_f fa ON fa.token = x.a "
            f"JOIN _search_f fb ON fb.token = x.b{where})"
        )

    keyed = (  # the vocabulary's pairs (id, frequent, k)
        f"(SELECT v.id, v.frequent, fa.n * {_K} + fb.n AS k FROM search_tokens v "
        "JOIN _search_f fa ON fa.token = split_part(v.token, ' ', 1) "
        "JOIN _search_f fb ON fb.token = split_part(v.token, ' ', 2) WHERE strpos(v.token, ' ') > 0)"
    )

    def pair_postings(docs: str, where: str = "") -> str:
        return (
            f"INSERT INTO {into} SELECT DISTINCT p.id, d.conversation_id, d.revision, d.created_at, 0, 0 "
            f"FROM {pairs(docs, where)} d JOIN (SELECT id, k FROM {keyed} WHERE NOT frequent) p USING (k)"
        )

    sampled = f"(SELECT * FROM {source} WHERE ascii(conversation_id) % {PAIR_SAMPLE} = 0)"
    guess = (
        # Pairs in more than the frequent share of one conversation in PAIR_SAMPLE (ids are sha256
        # hex) of a batch that large: frequent at once, their postings never gathered. (A guess
        # only decides whether a pair keeps postings, never what a query finds.)
        f"CREATE OR REPLACE TEMP TABLE _search_sd AS SELECT k, count(*) * {PAIR_SAMPLE} AS n FROM "
        f"{pairs(sampled)} GROUP BY k HAVING count(*) * {PAIR_SAMPLE} > {hot} "
        f"AND (SELECT count(*) FROM {source}) >= {PAIR_SAMPLE * FREQUENT}"
        if count
        else "CREATE OR REPLACE TEMP TABLE _search_sd AS SELECT 0::BIGINT AS k, 0::BIGINT AS n WHERE false"
    )

    def pair_counts(docs: str, n: str) -> str:
        """(token "a b", n) of the pairs in `docs`; `n`: the count expression."""
        return (
            f"SELECT fa.token || ' ' || fb.token AS token, c.n FROM (SELECT k, {n} AS n FROM {pairs(docs)} "
            f"GROUP BY k) c JOIN _search_f fa ON fa.n = c.k // {_K} JOIN _search_f fb ON fb.n = c.k % {_K}"
        )

    numbered = "CREATE OR REPLACE TEMP TABLE _search_f AS SELECT token, (row_number() OVER ())::BIGINT AS n FROM "
    frequent_after = (
        # the tokens frequent once this batch is counted (as the UPDATE below decides)
        f"{numbered}search_tokens v LEFT JOIN _search_n s USING (token) WHERE {SINGLE} "
        f"AND (v.frequent OR v.hits + coalesce(s.n, 0) > {hot})"
        if count
        else f"{numbered}search_tokens WHERE frequent AND {SINGLE}"
    )
    held = "SELECT DISTINCT conversation_id, revision, created_at FROM {} WHERE token_id IN (SELECT id FROM _search_hot WHERE single)"
    counting = [
        "CREATE OR REPLACE TEMP TABLE _search_hot AS SELECT v.id, v.token, strpos(v.token, ' ') = 0 AS single "
        f"FROM search_tokens v JOIN _search_n s USING (token) WHERE NOT v.frequent AND v.hits + s.n > {hot}",
        f"UPDATE search_tokens v SET hits = v.hits + s.n, frequent = v.hits + s.n > {hot} "
        "FROM _search_n s WHERE v.token = s.token AND NOT v.frequent",
        # Tokens turning frequent: the pairs they form in the revisions indexed before (these
        # revisions are in `revisions`, the batch's own are added below).
        "CREATE OR REPLACE TEMP TABLE _search_back AS SELECT r.conversation_id, r.revision, h.created_at, "
        f"r.search_text FROM ({held.format('search_postings')}"
        + (f" UNION {held.format(into)}" if into != "search_postings" else "")
        + ") h JOIN revisions r USING (conversation_id, revision)",
        f"CREATE OR REPLACE TEMP TABLE _search_bn AS {pair_counts('_search_back', '0::BIGINT')}",
        new_vocab("_search_bn"),
        "DROP TABLE _search_bn",
        pair_postings(
            "_search_back", " WHERE x.a IN (SELECT token FROM _search_hot) OR x.b IN (SELECT token FROM _search_hot)"
        ),
        "DROP TABLE _search_back",
        "DELETE FROM search_postings WHERE token_id IN (SELECT id FROM _search_hot)",
        *([f"DELETE FROM {into} WHERE token_id IN (SELECT id FROM _search_hot)"] if into != "search_postings" else []),
        "DROP TABLE _search_hot",
    ]
    return [
        f"CREATE OR REPLACE TEMP TABLE _search_n AS SELECT token, count(*)::BIGINT AS n "
        f"FROM (SELECT unnest({tok}) AS token FROM {source}) WHERE token <> '' GROUP BY token",
        new_vocab(),
        frequent_after,
        guess,
        # The batch's pairs (one row per revision) but those frequent or guessed so.
        f"CREATE OR REPLACE TEMP TABLE _search_t AS SELECT DISTINCT conversation_id, revision, created_at, k "
        f"FROM {pairs(source)} ANTI JOIN (SELECT k FROM {keyed} WHERE frequent UNION ALL SELECT k FROM _search_sd) "
        "USING (k)",
        "INSERT INTO _search_n SELECT fa.token || ' ' || fb.token, c.n FROM (SELECT k, count(*) AS n FROM _search_t "
        f"GROUP BY k UNION ALL SELECT k, n FROM _search_sd) c JOIN _search_f fa ON fa.n = c.k // {_K} "
        f"JOIN _search_f fb ON fb.n = c.k % {_K}",
        new_vocab(),
        *(counting if count else []),
        f"INSERT INTO {into} SELECT v.id, d.conversation_id, d.revision, d.created_at, "
        f"bit_or({bit_sql('d.prev')}), bit_or({bit_sql('d.nxt')}) "
        "FROM (SELECT conversation_id, revision, created_at, unnest(t) AS token, unnest(list_prepend('', t)) AS prev, "
        f"unnest(t[2:]) AS nxt FROM (SELECT conversation_id, revision, created_at, {tok} AS t FROM {source})) d "
        f"JOIN (SELECT id, token FROM search_tokens SEMI JOIN _search_n USING (token) WHERE NOT frequent "
        f"AND {SINGLE}) v USING (token) GROUP BY ALL",
        f"INSERT INTO {into} SELECT p.id, t.conversation_id, t.revision, t.created_at, 0, 0 FROM _search_t t "
        f"JOIN (SELECT id, k FROM {keyed} WHERE NOT frequent) p USING (k)",
        "DROP TABLE _search_t",
        "DROP TABLE _search_sd",
        "DROP TABLE _search_n",
        "DROP TABLE _search_f",
    ]


def postings_table() -> str:
    """A temporary table gathering an import's postings (see `store_postings`)."""
    return (
        "CREATE OR REPLACE TEMP TABLE _search_new (token_id INTEGER, conversation_id TEXT, revision INTEGER, "
        "created_at TIMESTAMP, prev UINTEGER, next UINTEGER)"
    )


def store_postings() -> list[str]:
    """Move the gathered postings into the index sorted by token: DuckDB then skips every row
    group but a token's own (a query reads ~20 ms instead of scanning ~40M postings)."""
    return [
        "INSERT INTO search_postings SELECT * FROM _search_new ORDER BY token_id",
        "DROP TABLE _search_new",
    ]


_CURRENT = (
    "(SELECT r.conversation_id, r.revision, c.created_at, r.search_text FROM revisions r "
    "JOIN conversations c ON c.id = r.conversation_id AND c.revision = r.revision)"
)

_TABLES = """
    CREATE SEQUENCE search_token_ids START 1;
    CREATE TABLE search_tokens (
        id INTEGER NOT NULL, token TEXT NOT NULL, hits BIGINT NOT NULL, frequent BOOLEAN NOT NULL);
    CREATE TABLE search_postings (
        token_id INTEGER NOT NULL, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
        created_at TIMESTAMP NOT NULL, prev UINTEGER NOT NULL, next UINTEGER NOT NULL);
"""

MIGRATIONS = [
    # 1: the tables of the first index (single tokens); 2 replaces them with this module's (pairs of
    # frequent tokens, neighbour masks) and builds the index from the current revisions.
    Migration(
        "search",
        1,
        """
        CREATE SEQUENCE search_token_ids START 1;
        CREATE TABLE search_tokens (
            id INTEGER NOT NULL, token TEXT NOT NULL, hits BIGINT NOT NULL, frequent BOOLEAN NOT NULL);
        CREATE TABLE search_postings (
            token_id INTEGER NOT NULL, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
            created_at TIMESTAMP NOT NULL);
        CREATE TABLE search_stale (conversation_id TEXT NOT NULL, revision INTEGER NOT NULL);
        INSERT INTO search_stale SELECT r.conversation_id, r.revision FROM revisions r
            JOIN conversations c ON c.id = r.conversation_id WHERE r.revision < c.revision;
        """,
    ),
    Migration(
        "search",
        2,
        "DROP TABLE search_postings; DROP TABLE search_tokens; DROP SEQUENCE search_token_ids;\n"
        + _TABLES
        + ";\n".join(
            # The build spills past 1 GB (a million conversations: ~30 s, instead of 4 GB of RAM).
            [
                "SET memory_limit = '1GB'",
                postings_table(),
                *index_sql(_CURRENT, "_search_new"),
                *store_postings(),
                "RESET memory_limit",
            ]
        ),
    ),
]


def index_revisions(con: duckdb.DuckDBPyConnection, docs: pa.Table, *, into: str = "search_postings") -> None:
    """Add revisions (an Arrow table: conversation_id, revision, created_at, search_text) to the
    index, inside the caller's transaction (an import's chunks)."""
    _search_docs = docs  # read by name in the SQL (DuckDB's replacement scan of this frame's locals)
    for stmt in index_sql("_search_docs", into):
        con.execute(stmt)
    del _search_docs


def index_revision(
    con: duckdb.DuckDBPyConnection,
    cid: str,
    revision: int,
    created_at: datetime,
    text: str,
    *,
    replaces: int | None = None,
) -> None:
    """Add one new revision to the index inside the caller's transaction; `replaces`: the
    revision it supersedes (no longer current)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _search_one AS SELECT ?::VARCHAR AS conversation_id, "
        "?::INTEGER AS revision, ?::TIMESTAMP AS created_at, ?::VARCHAR AS search_text",
        [cid, revision, created_at, text],
    )
    for stmt in index_sql("_search_one", count=False):
        con.execute(stmt)
    con.execute("DROP TABLE _search_one")
    if replaces is not None:
        con.execute("INSERT INTO search_stale VALUES (?, ?)", [cid, replaces])


# ------------------------------------------------------------ queries


@dataclass(frozen=True)
class Piece:
    text: str
    kind: str  # exact | prefix | suffix | infix
    at: int  # its place among the query's parts


_PRED = {
    "exact": "token = ?",
    "prefix": "starts_with(token, ?)",
    "suffix": "suffix(token, ?)",
    "infix": "contains(token, ?)",
}


def _kind(left_open: bool, right_open: bool) -> str:
    return {(False, False): "exact", (True, False): "suffix", (False, True): "prefix", (True, True): "infix"}[
        (left_open, right_open)
    ]


@dataclass(frozen=True)
class Narrowing:
    """A set of revisions that holds every match: `sql` selects their (conversation_id, revision,
    created_at) from the postings; `cost`: about how many postings it reads."""

    sql: str
    args: list[Any]
    cost: float


Key = tuple[datetime, str]  # (created_at, id): the page order


def _literals(ids: Iterable[str]) -> str:
    """SQL string literals (DuckDB reads a literal IN list through an index; a list parameter it scans)."""
    return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)


class TextSearch:
    """One text filter over the conversations that `base` (a `FROM conversations c ... WHERE ...`
    without the text condition; `filtered`: it has conditions) selects. `scan_base` is the same
    with the plain text condition, for the rare query the index cannot narrow."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        text: str,
        base: str,
        args: list[Any],
        scan_base: str,
        scan_args: list[Any],
        *,
        filtered: bool,
    ) -> None:
        self.con, self.text, self.filtered = con, text, filtered
        # Let DuckDB read a few hundred ids through an index (its default scans past ~0.1% of a table).
        con.execute("SET SESSION index_scan_percentage = 0.5")
        con.execute("SET SESSION index_scan_max_count = 100000")
        self.base, self.args = base, args
        self.scan_base, self.scan_args = scan_base, scan_args
        parts: list[str] = con.execute(f"SELECT {tokens_sql('?')}", [text]).fetchall()[0][0]
        last = len(parts) - 1
        pieces = [
            Piece(p, "exact" if 0 < i < last else "prefix" if i > 0 else "suffix" if i < last else "infix", i)
            for i, p in enumerate(parts)
            if p
        ]
        # A long pasted text: its longest pieces narrow enough (the check reads the whole query).
        self.pieces = sorted(pieces, key=lambda p: -len(p.text))[:MAX_PIECES]
        # A query without separators is matched by exactly the revisions holding a token that contains it.
        self.exact = len(parts) == 1
        self.empty = False
        self.usable: list[Narrowing] = []
        if self.pieces:
            self._narrow(parts)
        self._checked: dict[str, bool] = {}
        self._passed: dict[str, bool] = {}

    # -------------------------------------------------------- pieces of the answer

    def _narrow(self, parts: list[str]) -> None:
        """Decide from the vocabulary whether nothing matches (`empty`) and which postings narrow
        the matches (`usable`, cheapest first): a piece whose tokens are all rare (their postings);
        two pieces with one separator between them (`a b`), where the text's two tokens there are
        either a pair of frequent tokens (the pair's postings), or one is rare: its postings whose
        neighbour mask holds the bit of a token the other piece matches."""
        last = len(parts) - 1
        ats = {p.at for p in self.pieces}
        adjacent = [k for k in range(last) if k in ats and k + 1 in ats]
        pairs = {k: (f"{parts[k]} {parts[k + 1]}", _kind(k == 0, k + 1 == last)) for k in adjacent}
        # One read of the vocabulary: per piece (0) its tokens, per adjacent two (1) their pairs.
        # (A scan each, filtered in the scan: one scan with FILTER aggregates took longer.)
        # Cached per vocabulary state (a query repeats as pages turn): the key changes with every
        # write to the vocabulary (a new row takes a new id; a count adds to hits and comes
        # before a row turns frequent).
        version = self.con.execute(
            "SELECT (SELECT path FROM duckdb_databases() WHERE database_name = current_database()), "
            "max(id), count(*), sum(hits), count(*) FILTER (frequent) FROM search_tokens"
        ).fetchall()[0]
        key = (*version, self.text)
        rows = _VOCAB.get(key)
        if rows is None:
            rows = self.con.execute(
                " UNION ALL ".join(
                    [
                        f"SELECT 0, {p.at}, count(*), count(*) FILTER (frequent), coalesce(sum(hits) FILTER "
                        f"(NOT frequent), 0), coalesce(bit_or({bit_sql('token')}), 0) FROM search_tokens "
                        f"WHERE {_PRED[p.kind]} AND {SINGLE}"
                        for p in self.pieces
                    ]
                    + [
                        f"SELECT 1, {k}, count(*), count(*) FILTER (frequent), coalesce(sum(hits), 0), 0 "
                        f"FROM search_tokens WHERE {_PRED[kind]}"
                        for k, (_, kind) in pairs.items()
                    ]
                ),
                [p.text for p in self.pieces] + [text for text, _ in pairs.values()],
            ).fetchall()
            with _VOCAB_LOCK:
                while len(_VOCAB) >= VOCAB_CACHE:
                    del _VOCAB[next(iter(_VOCAB))]
                _VOCAB[key] = rows
        stats = {at: (n, f, h, m) for tag, at, n, f, h, m in rows if tag == 0}
        pstats = [(k, n, f, h) for tag, k, n, f, h, _ in rows if tag == 1]
        self.empty = any(n == 0 for n, _, _, _ in stats.values())
        if self.empty:
            return
        postings = "SELECT conversation_id, revision, created_at FROM search_postings WHERE token_id IN "
        rare = f"(SELECT id FROM search_tokens WHERE {{}} AND {SINGLE} AND NOT frequent)"
        out = [
            Narrowing(postings + rare.format(_PRED[p.kind]), [p.text], float(stats[p.at][2]))
            for p in self.pieces
            if not stats[p.at][1]
        ]
        for k, n_pairs, dense, hits in pstats:
            if dense:  # a pair of frequent tokens in too many conversations: no postings
                continue
            na, fa, ha, ma = stats[k]
            nb, fb, hb, mb = stats[k + 1]
            sql: list[str] = []
            args: list[Any] = []
            cost = float(hits) if fa and fb else 0.0
            # The text's two tokens there: both frequent (a pair's postings), or b's rare (its
            # `prev` holds a's bit), or a's rare (its `next` holds b's). Where one piece has only
            # rare tokens, its masks alone cover every case (the cheaper one where both have).
            if fa == 0 and fb == 0:
                a_side = ha * mb.bit_count() < hb * ma.bit_count()
                b_side = not a_side
            else:
                a_side, b_side = na > fa and fb > 0, nb > fb and fa > 0
            if n_pairs and fa and fb:
                sql.append(postings + f"(SELECT id FROM search_tokens WHERE {_PRED[pairs[k][1]]})")
                args.append(pairs[k][0])
            if b_side:
                sql.append(postings + rare.format(_PRED["prefix" if k + 1 == last else "exact"]) + " AND prev & ? <> 0")
                args += [parts[k + 1], ma]
                cost += hb * ma.bit_count() / 32
            if a_side:
                sql.append(postings + rare.format(_PRED["suffix" if k == 0 else "exact"]) + " AND next & ? <> 0")
                args += [parts[k], mb]
                cost += ha * mb.bit_count() / 32
            if not sql:  # no token pair in any text can hold them: nothing matches
                sql.append(postings + "(SELECT NULL)")
            out.append(Narrowing(" UNION ALL ".join(sql), args, cost))
        out.sort(key=lambda n: n.cost)
        self.usable = [n for n in out[:MAX_NARROWING] if n.cost <= NARROW_RATIO * max(out[0].cost, 1.0)]

    def _candidates_sql(self, *, distinct: bool = True) -> tuple[str, list[Any]]:
        """(id, revision, created_at) of the current revisions in every narrowing's postings (the
        other filters are not applied here)."""
        first, *more = self.usable
        joins = " ".join(f"SEMI JOIN ({n.sql}) p{i} USING (conversation_id, revision)" for i, n in enumerate(more))
        return (
            f"SELECT {'DISTINCT ' if distinct else ''}p.conversation_id AS id, p.revision, p.created_at "
            f"FROM ({first.sql}) p {joins} "
            "ANTI JOIN search_stale USING (conversation_id, revision)",
            [*first.args, *(a for n in more for a in n.args)],
        )

    def _candidates(self, after: Key | None) -> Iterator[tuple[str, int, datetime]]:
        """The candidates after `after` in page order, read in growing batches. (Without DISTINCT,
        which would group every candidate before the first is sorted: a conversation's repeats
        come next to each other and are skipped here.)"""
        sql, args = self._candidates_sql(distinct=False)
        cursor, n, last = after, 2 * GROUP, None
        while True:
            cond, cargs = "", []
            if cursor is not None:
                cond, cargs = " WHERE x.created_at > ? OR (x.created_at = ? AND x.id > ?)", [cursor[0], *cursor]
            rows = self.con.execute(
                f"SELECT x.id, x.revision, x.created_at FROM ({sql}) x{cond} ORDER BY x.created_at, x.id LIMIT ?",
                [*args, *cargs, n],
            ).fetchall()
            for r in rows:
                if r[0] != last:
                    yield r[0], int(r[1]), r[2]
                last = r[0]
            if len(rows) < n:
                return
            cursor, n = (rows[-1][2], rows[-1][0]), n * 8

    def _passing(self, rows: Sequence[tuple[str, int]]) -> None:
        """Note which (id, revision) are current and pass the other filters (read by index)."""
        grp = {cid: rev for cid, rev in rows if cid not in self._passed}
        if not grp:
            return
        for cid in grp:
            self._passed[cid] = False
        # A literal list read through the id index; the LIMIT keeps DuckDB from pushing the other
        # filters into a scan of the whole table.
        scoped = self.base.replace(
            "FROM conversations c",
            f"FROM (SELECT * FROM conversations WHERE id IN ({_literals(grp)}) LIMIT 1000000000) c",
            1,
        )
        for cid, rev in self.con.execute(f"SELECT c.id, c.revision {scoped}", self.args).fetchall():
            self._passed[cid] = grp[cid] == rev

    def _checking(self, rows: Sequence[tuple[str, int]]) -> None:
        """Note whether each (id, revision)'s text contains the query (read by index)."""
        grp = {cid: rev for cid, rev in rows if cid not in self._checked}
        if not grp:
            return
        for cid in grp:
            self._checked[cid] = False
        for cid, rev, hit in self.con.execute(
            "SELECT conversation_id, revision, contains(lower(search_text), lower(?)) FROM revisions "
            f"WHERE conversation_id IN ({_literals(grp)})",
            [self.text],
        ).fetchall():
            if grp.get(cid) == rev:
                self._checked[cid] = bool(hit)

    def _matching(
        self,
        rows: Iterable[tuple[str, int, datetime]],
        want: int,
        *,
        filters: bool,
        text: bool,
        budget: int,
        min_rate: float = 0.0,
    ) -> tuple[list[tuple[str, datetime]], bool]:
        """The first `want` of `rows` that pass the other filters (`filters`) and contain the text
        (`text`), checked GROUP to GROUP_MAX at a time; and whether the answer is complete (False when
        `budget` rows were checked first, or when past GROUP_MAX rows fewer than `min_rate` of
        them matched: the budget would not be enough)."""
        out: list[tuple[str, datetime]] = []
        batch: list[tuple[str, int, datetime]] = []

        def flush() -> None:
            pairs = [(b[0], b[1]) for b in batch]
            if filters:
                self._passing(pairs)
                pairs = [p for p in pairs if self._passed[p[0]]]
            if text:
                self._checking(pairs)
            ok = {p[0] for p in pairs if not text or self._checked[p[0]]}
            out.extend((cid, at) for cid, _, at in batch if cid in ok)
            batch.clear()

        checked = 0
        for seen, row in enumerate(rows, 1):
            batch.append(row)
            # As many as should hold the rest at the rate seen so far (all of them at first).
            rate = max(len(out) / checked, 1 / 16) if checked else 1.0
            if len(batch) >= min(GROUP_MAX, max(GROUP, int((want - len(out)) / rate) + GROUP // 2)):
                checked += len(batch)
                flush()
                if len(out) >= want:
                    return out[:want], True
                if seen >= budget or (seen >= GROUP_MAX and len(out) < min_rate * seen):
                    return out, False
        flush()
        return out[:want], True

    def _scan_page(self, after: Key | None, limit: int) -> list[tuple[str, datetime]]:
        cond, cargs = "", []
        if after is not None:
            cond, cargs = " AND (c.created_at > ? OR (c.created_at = ? AND c.id > ?))", [after[0], *after]
        return [
            (r[0], r[1])
            for r in self.con.execute(
                f"SELECT c.id, c.created_at {self.scan_base}{cond} ORDER BY c.created_at, c.id LIMIT ?",
                [*self.scan_args, *cargs, limit],
            ).fetchall()
        ]

    def _scan_count(self, cap: int) -> int:
        return int(
            self.con.execute(
                f"SELECT count(*) FROM (SELECT 1 {self.scan_base} LIMIT {int(cap) + 1})", self.scan_args
            ).fetchall()[0][0]
        )

    # -------------------------------------------------------- the answers

    def page(self, after: Key | None, limit: int) -> list[tuple[str, datetime]]:
        """(id, created_at) of the first `limit` matches after `after`, in page order."""
        if self.empty or limit <= 0:
            return []
        if self.usable and self.exact and not self.filtered:  # the candidates are the matches
            return [(r[0], r[2]) for r in islice(self._candidates(after), limit)]
        if self.usable:
            out, done = self._matching(
                self._candidates(after), limit, filters=self.filtered, text=not self.exact, budget=WALK_LIMIT
            )
            if done:
                return out
        # Every piece is frequent (or the query is only separators), or few candidates match:
        # walk conversations in page order; past WALK_LIMIT rows, the plain scan.
        walked = self._walk_page(after, limit)
        return walked if walked is not None else self._scan_page(after, limit)

    def _walk_page(self, after: Key | None, limit: int) -> list[tuple[str, datetime]] | None:
        out: list[tuple[str, datetime]] = []
        cursor, block, walked = after, max(2 * GROUP, int(2 * limit / max(FREQUENT_SHARE, 0.01))), 0
        while walked < WALK_LIMIT:
            cond, cargs = "", []
            if cursor is not None:
                cond, cargs = " AND (c.created_at > ? OR (c.created_at = ? AND c.id > ?))", [cursor[0], *cursor]
            rows = [
                (r[0], int(r[1]), r[2])
                for r in self.con.execute(
                    f"SELECT c.id, c.revision, c.created_at {self.base}{cond} ORDER BY c.created_at, c.id LIMIT ?",
                    [*self.args, *cargs, block],
                ).fetchall()
            ]
            more, _ = self._matching(rows, limit - len(out), filters=False, text=True, budget=len(rows) + 1)
            out += more
            if len(out) >= limit or len(rows) < block:
                return out
            walked += len(rows)
            cursor, block = (rows[-1][2], rows[-1][0]), block * 4
        return None

    def count(self, cap: int) -> int:
        """How many conversations match, counting no further than `cap + 1`."""
        if self.empty:
            return 0
        budget = 4 * (cap + 1)
        if self.usable and self.exact and not self.filtered:
            sql, args = self._candidates_sql()
            return int(
                self.con.execute(f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) LIMIT ?)", [*args, cap + 1]).fetchall()[
                    0
                ][0]
            )
        if self.usable:  # in any order: the first `budget` candidates (repeats dropped here)
            sql, args = self._candidates_sql(distinct=False)
            raw = self.con.execute(f"SELECT * FROM ({sql}) LIMIT ?", [*args, budget + 1]).fetchall()
            rows = list(dict.fromkeys(raw))
            out, done = self._matching(
                rows, cap + 1, filters=self.filtered, text=not self.exact, budget=budget, min_rate=(cap + 1) / budget
            )
            if done and (len(out) > cap or len(raw) <= budget):  # enough, or every candidate read
                return len(out)
        # Frequent pieces, or few candidates match: the first revisions in stored order that
        # contain the text (a scan that stops there) hold enough current ones under the filters;
        # where old revisions or the filters take too many, look further once, then scan.
        for n in (cap + 1 + cap // 4, budget):
            rows = self.con.execute(
                "SELECT conversation_id, revision, NULL FROM revisions "
                "WHERE contains(lower(search_text), lower(?)) LIMIT ?",
                [self.text, n],
            ).fetchall()
            if self.filtered:
                out, _ = self._matching(rows, cap + 1, filters=True, text=False, budget=n + 1)
                found = len(out)
            else:
                stale = set(
                    self.con.execute(
                        "SELECT conversation_id, revision FROM search_stale "
                        "WHERE conversation_id IN (SELECT unnest(?))",
                        [[r[0] for r in rows]],
                    ).fetchall()
                )
                found = sum((r[0], r[1]) not in stale for r in rows)
            if found > cap or len(rows) < n:
                return min(found, cap + 1)
        return self._scan_count(cap)
