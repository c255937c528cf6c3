"""Ticket framing (greetings, context, sign-offs), reply pieces and slot values."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

_CONTEXTS = (
    "We run QuillDB {version} on a {nodes}-node cluster in {region}.",
    "Our cluster {cluster} is on the {plan} plan in {region}.",
    "We're a small team using QuillDB Cloud for our {app} backend.",
    "Setup: QuillDB {version}, {nodes} nodes, region {region}.",
    "We migrated our {app} app to QuillDB about {n} weeks ago.",
)
# Label-neutral paragraphs that make some tickets much longer than others.
_BACKGROUNDS = (
    "Some background: we moved our {app} workloads from a self-managed Postgres setup to QuillDB last "
    "quarter, and most of our traffic now goes through {cluster}. The team that runs it is small, so we "
    "lean on managed features wherever we can.",
    "For context, {cluster} serves several internal services plus a nightly batch job that loads data "
    "into {table}. We have alerting on the usual metrics, and nothing else looked unusual on our "
    "dashboards around that time.",
    "To give you the full picture: we run {nodes} nodes in {region}, we upgraded to {version} a few weeks "
    "ago following the documented procedure, and we have not changed any cluster settings since then. "
    "Our application uses connection pooling with fairly conservative limits.",
)
_GREETINGS = (
    "Hi,",
    "Hello,",
    "Hi team,",
    "Hello QuillDB support,",
    "Hey folks,",
    "Good morning,",
    "Hi there!",
    "Dear support team,",
    "hey,",
)
_SIGNOFFS = (
    "Thanks!",
    "Thanks,\nPlatform team",
    "Cheers",
    "Thanks in advance.",
    "Best regards,\nthe ops team",
    "thx",
    "Appreciate the help!",
    "Kind regards",
)

_AREA_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "replication": "replication",
        "backup_restore": "backup and restore",
        "query_engine": "the query engine",
        "storage": "the storage layer",
        "auth": "authentication",
        "connectors": "our connectors",
        "console": "the cloud console",
    }
)
_BILLING_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "replication": "cross-region replication",
        "backup_restore": "backup storage",
        "query_engine": "request unit",
        "storage": "storage",
        "auth": "SSO and MFA add-on",
        "connectors": "managed connector",
        "console": "console seat",
    }
)
_TIPS: Mapping[str, str] = MappingProxyType(
    {
        "replication": "Please include the output of `SHOW REPLICATION STATUS` so we "
        "can see the lag and last applied position of each follower.",
        "backup_restore": "Please include the job ID from `SHOW BACKUP JOBS` so we can trace the job on our side.",
        "query_engine": "Please attach the `EXPLAIN ANALYZE` output for the affected statement.",
        "storage": "Please share the output of `SHOW STORAGE STATUS` along with disk usage per node.",
        "auth": "Please tell us which identity provider you use and roughly when the failed logins happened.",
        "connectors": "Please send the connector or driver version along with its task logs.",
        "console": "Please include your browser version and, if possible, a screenshot of the affected page.",
    }
)
_HOWTO_ANSWERS: Mapping[str, str] = MappingProxyType(
    {
        "replication": "Replicas are managed under Cluster > Replication, and `SHOW "
        "REPLICATION STATUS` reports lag per follower; planned failovers use "
        "`ALTER CLUSTER ... PROMOTE`. The full guide is at "
        "docs.quilldb.example/replication.",
        "backup_restore": "`BACKUP` and `RESTORE` work from SQL, including single "
        "tables and `AS OF SYSTEM TIME` for point-in-time restores, and `CREATE "
        "SCHEDULE FOR BACKUP` sets up recurring backups to your own bucket. See "
        "docs.quilldb.example/backup.",
        "query_engine": "`EXPLAIN ANALYZE` shows the executed plan, `INSERT ... ON "
        "CONFLICT` handles upserts, and settings like `statement_timeout` can be set "
        "per role with `ALTER ROLE ... SET`. See docs.quilldb.example/sql.",
        "storage": "`SHOW TABLE SIZES` reports per-table disk usage, space from "
        "deleted rows is reclaimed by compaction once the GC window passes, and the "
        "storage class can be changed in the cluster's scaling settings. See "
        "docs.quilldb.example/storage.",
        "auth": "SSO, SCIM and MFA are configured under Organization > Security, and "
        "API keys can be rotated without downtime by creating a second key before "
        "revoking the first. See docs.quilldb.example/auth.",
        "connectors": "Connector and driver settings, including topics and TLS "
        "connection strings, are documented per connector and language at "
        "docs.quilldb.example/connectors.",
        "console": "Members, dashboards and query history live under the project's "
        "Settings and Monitoring tabs in the console. See "
        "docs.quilldb.example/console.",
    }
)
_ACCESS_TIPS: Mapping[str, str] = MappingProxyType(
    {
        "replication": "Managing replication streams needs the `REPLICATION` "
        "privilege, which an org admin can grant to your role.",
        "backup_restore": "Backups and restores need the `BACKUP` and `RESTORE` "
        "privileges, which an admin can grant to your role.",
        "query_engine": "Please check `SHOW GRANTS` for the affected role; tables "
        "created later also need `ALTER DEFAULT PRIVILEGES`.",
        "storage": "Storage settings and metrics need the Cluster Operator role, "
        "which a project admin can assign under Settings > Access.",
        "auth": "An organization admin can unlock accounts and resend invites under "
        "Organization > Members; if no admin is available, reply with your "
        "organization ID and we'll verify ownership.",
        "connectors": "Connectors need the Connector Admin role, and the connector's "
        "service account needs privileges on the target tables and topics.",
        "console": "Project membership and console roles are managed by a project admin under Settings > Access.",
    }
)
_ACKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "bug": (
            "Thanks for the detailed report, this looks like a defect in {area_name}.",
            "Sorry about this; it does sound like a bug in {area_name}.",
        ),
        "performance": (
            "Sorry about the slowdown in {area_name}.",
            "Thanks for flagging the performance regression in {area_name}.",
        ),
        "billing": (
            "Thanks for reaching out about your bill.",
            "Sorry for the confusion on your invoice.",
        ),
        "how_to": ("Good question!", "Happy to help with that."),
        "outage": (
            "We're sorry, we're treating this as an active incident in {area_name}.",
            "Thanks for reporting this; we've opened an incident for {area_name}.",
        ),
        "feature_request": (
            "Thanks for the suggestion!",
            "That's a great idea, thanks for sharing it.",
        ),
        "access": (
            "Sorry you're having trouble with access.",
            "Let's get your access sorted out.",
        ),
    }
)
_CLOSERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "urgent": (
            "We've marked this urgent and an engineer is engaging right now.",
            "This is now our top priority; an engineer will join you within minutes.",
        ),
        "high": (
            "We've marked this high priority and will update you within a few hours.",
            "We'll prioritize this and get back to you today.",
        ),
        "medium": (
            "We'll follow up within one business day.",
            "Expect an update from us within a day or two.",
        ),
        "low": (
            "No rush noted, we'll get back to you when we have an update.",
            "We'll reply when we have more details; thanks for your patience.",
        ),
    }
)

_REGIONS = (
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
)
_CLUSTER_WORDS = (
    "prod",
    "staging",
    "analytics",
    "orders",
    "billing",
    "events",
    "ledger",
    "search",
    "payments",
    "telemetry",
)
_TABLES = (
    "orders",
    "user_events",
    "invoices",
    "payments",
    "sessions",
    "inventory",
    "audit_log",
    "page_views",
    "shipments",
    "accounts",
    "sensor_readings",
    "carts",
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_CLUSTER_RE = re.compile(r"\b[a-z]+-(?:eu|us|ap)-\d\b")


def _ch(rng: random.Random, options: Sequence[Any]) -> Any:
    """``rng.choice`` without its per-call overhead (generation is the hot path)."""
    return options[int(rng.random() * len(options))]


def _ri(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint(low, high)`` without its per-call overhead."""
    return low + int(rng.random() * (high - low + 1))


def _pick(options: Sequence[str]) -> Any:
    return lambda rng, slots: _ch(rng, options)


def _other(key: str, options: Sequence[str]) -> Any:
    """Pick a value different from slot ``key`` (e.g. a second region)."""

    def make(rng: random.Random, slots: dict[str, str]) -> str:
        first = slots[key]
        return _ch(rng, [o for o in options if o != first])

    return make


_SLOT_MAKERS: Mapping[str, Any] = MappingProxyType(
    {
        "cluster": lambda rng, s: f"{_ch(rng, _CLUSTER_WORDS)}-{_ch(rng, ('eu', 'us', 'ap'))}-{_ri(rng, 1, 9)}",
        "region": _pick(_REGIONS),
        "region2": _other("region", _REGIONS),
        "version": lambda rng, s: f"{_ch(rng, (22, 23, 24))}.{_ri(rng, 1, 4)}.{_ri(rng, 0, 12)}",
        "drv_version": lambda rng, s: f"{_ri(rng, 2, 4)}.{_ri(rng, 0, 9)}.{_ri(rng, 0, 20)}",
        "table": _pick(_TABLES),
        "table2": _other("table", _TABLES),
        "col": _pick(("created_at", "user_id", "status", "tenant_id", "sku")),
        "schema": _pick(("analytics", "public", "finance", "reporting")),
        "topic": lambda rng, s: (
            f"{_ch(rng, ('orders', 'clicks', 'audit', 'inventory'))}.{_ch(rng, ('v1', 'v2', 'events', 'cdc'))}"
        ),
        "code": lambda rng, s: f"QDB-{_ri(rng, 1000, 9999)}",
        "n": lambda rng, s: str(_ri(rng, 3, 90)),
        "lag": lambda rng, s: str(_ri(rng, 12, 900)),
        "ms": lambda rng, s: str(_ri(rng, 4, 90)),
        "ms2": lambda rng, s: str(_ri(rng, 300, 9000)),
        "pct": lambda rng, s: str(_ri(rng, 20, 80)),
        "pct2": lambda rng, s: str(_ri(rng, 70, 95)),
        "amount": lambda rng, s: f"{_ri(rng, 300, 48000):,}.{_ri(rng, 0, 99):02d}",
        "amount2": lambda rng, s: f"{_ri(rng, 20, 290)}.{_ri(rng, 0, 99):02d}",
        "gb": lambda rng, s: str(_ri(rng, 40, 9000)),
        "hours": lambda rng, s: str(_ri(rng, 2, 14)),
        "snap": lambda rng, s: f"snap-{rng.getrandbits(32):08x}",
        "idp": _pick(("Okta", "Azure AD", "Google Workspace", "OneLogin", "Auth0", "Keycloak")),
        "user": lambda rng, s: (
            f"{_ch(rng, ('svc', 'app', 'etl', 'bi', 'ci'))}_"
            f"{_ch(rng, ('reporting', 'ingest', 'sync', 'loader', 'api'))}"
        ),
        "role": _pick(("analyst", "developer", "read_only", "ops", "project_viewer")),
        "lang": _pick(("Python", "Go", "Java", "Node.js", "Rust", ".NET", "Ruby")),
        "browser": lambda rng, s: f"{_ch(rng, ('Chrome', 'Firefox', 'Safari', 'Edge'))} {_ri(rng, 110, 130)}",
        "month": _pick(_MONTHS),
        "date": lambda rng, s: f"{_ch(rng, _MONTHS)} {_ri(rng, 1, 28)}",
        "weekday": _pick(_WEEKDAYS),
        "time": lambda rng, s: f"{_ri(rng, 0, 23):02d}:{_ri(rng, 0, 59):02d}",
        "node": lambda rng, s: f"n{_ri(rng, 1, 24)}",
        "nodes": lambda rng, s: str(_ri(rng, 3, 15)),
        "plan": _pick(("Dedicated", "Serverless", "Standard", "Enterprise")),
        "app": _pick(("checkout", "analytics", "IoT", "gaming", "CRM", "logistics")),
    }
)


class _Slots(dict):
    """Slot values drawn lazily, so a ticket and its reply share them."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        value = _SLOT_MAKERS[key](self.rng, self)
        self[key] = value
        return value
