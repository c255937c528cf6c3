"""Seeded synthetic data for one narrow, measurable task: QuillDB ticket triage.

QuillDB is a fictional distributed SQL database with a cloud console. A user
writes a support ticket; the assistant answers with a short helpful reply and
then a final line of compact JSON with exactly the keys ``category``,
``priority`` and ``product_area``.

Labels are a deterministic function of the ticket text: the problem sentence
(one template per category and product area) fixes ``category`` and
``product_area``, and a severity cue ("Production is down", "No rush at all",
...) fixes ``priority``. A fine-tuned model can therefore be scored by exact
match and per-field accuracy.

Besides clean data, the module produces a noisy training pool with known,
configurable problems (duplicates, near duplicates, wrong labels, planted fake
PII, broken turn structure, over-long rows, eval leakage) and the small bundled
sample set under ``datasets/sample``. Every planted problem is recorded in a
ground-truth dict so curation tools can be scored for precision and recall.

All randomness comes from ``random.Random`` instances seeded by the caller;
there is no module-level mutable state.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any

CATEGORIES = (
    "bug",
    "performance",
    "billing",
    "how_to",
    "outage",
    "feature_request",
    "access",
)
PRIORITIES = ("low", "medium", "high", "urgent")
PRODUCT_AREAS = (
    "replication",
    "backup_restore",
    "query_engine",
    "storage",
    "auth",
    "connectors",
    "console",
)
LABEL_KEYS = ("category", "priority", "product_area")
DIALECTS = ("openai", "sharegpt", "alpaca")

SYSTEM_PROMPT = (
    "You are the QuillDB support triage assistant. Reply to the ticket in two to "
    "four helpful sentences, then end with one line of JSON with exactly the keys "
    '"category" (bug, performance, billing, how_to, outage, feature_request, '
    'access), "priority" (low, medium, high, urgent) and "product_area" '
    "(replication, backup_restore, query_engine, storage, auth, connectors, "
    "console)."
)
ALPACA_INSTRUCTION = (
    "Triage this QuillDB support ticket: write a short helpful reply, then a final "
    'line of JSON with the keys "category" (bug, performance, billing, how_to, '
    'outage, feature_request, access), "priority" (low, medium, high, urgent) and '
    '"product_area" (replication, backup_restore, query_engine, storage, auth, '
    "connectors, console)."
)

NOISE_KINDS = (
    "exact_duplicate",
    "near_duplicate",
    "wrong_label",
    "pii",
    "broken_structure",
    "overlong",
    "eval_leakage",
)
DEFAULT_RATES: Mapping[str, float] = MappingProxyType(
    {
        "exact_duplicate": 0.05,
        "near_duplicate": 0.05,
        "wrong_label": 0.08,
        "pii": 0.05,
        "broken_structure": 0.02,
        "overlong": 0.01,
        "eval_leakage": 0.03,
    }
)
BROKEN_SUBKINDS = ("assistant_first", "double_user", "empty_answer")
NEAR_DUP_MIN_JACCARD = 0.8
OVERLONG_MIN_CHARS = 12_000

# --------------------------------------------------------------------------
# Vocabulary. Each core sentence belongs to exactly one (area, category) pair,
# which is what makes those two labels recoverable from the text.
# --------------------------------------------------------------------------

_CORES: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "replication": {
            "bug": (
                "Follower replicas on {cluster} stop applying changes after a "
                "leader election and stay stuck at the same log position.",
                "Replication from {region} to {region2} silently drops rows from "
                "{table}; the replica has {n} fewer rows than the primary.",
                "After upgrading to {version}, the replication stream crashes with "
                "`{code}: changefeed cursor out of range`.",
            ),
            "performance": (
                "Replication lag between {region} and {region2} grew from under a "
                "second to {lag} seconds since last {weekday}.",
                "Our read replicas on {cluster} fall {lag}s behind during peak "
                "hours, so replica reads are stale and slow.",
                "Cross-region replication throughput dropped to about {n}k rows/s, far slower than before.",
            ),
            "billing": (
                "Our invoice shows ${amount} for cross-region replication egress, which is much more than we expected.",
                "We were charged for {n} replica node-hours on {cluster} even though "
                "we removed those replicas last month.",
                "Why does replication traffic between {region} and {region2} appear twice on the {month} bill?",
            ),
            "how_to": (
                "How do I add a read replica in {region2} for cluster {cluster}?",
                "What's the recommended way to promote a follower replica to primary during a planned failover?",
                "How can I check the current replication lag for {cluster} from SQL?",
            ),
            "outage": (
                "Replication between {region} and {region2} has completely stopped "
                "and the replica cluster {cluster} is unreachable.",
                "All follower replicas on {cluster} are down and every replica read times out with `{code}`.",
                "The primary in {region} lost contact with every replica and replication is halted.",
            ),
            "feature_request": (
                "Could you add delayed replicas, for example a follower that stays {hours} hours behind the primary?",
                "It would be great if replication supported filtering so we only "
                "replicate selected tables like {table}.",
                "Please add built-in alerting when replication lag exceeds {lag} seconds.",
            ),
            "access": (
                "Our service account {user} gets `permission denied` when creating a replication stream on {cluster}.",
                "I can't open the replication settings for {cluster}; it says my "
                "role {role} is not allowed to manage replicas.",
                "We lost the rights to manage replicas after the person who set up replication left the company.",
            ),
        },
        "backup_restore": {
            "bug": (
                "Restoring snapshot {snap} into {cluster} fails halfway with `{code}: manifest checksum mismatch`.",
                "Scheduled backups for {cluster} report success but the backup files for {table} are empty.",
                "A point-in-time restore to {date} brings back {table} with the wrong schema.",
            ),
            "performance": (
                "Nightly backups of {cluster} now take {hours} hours instead of about 40 minutes.",
                "Restoring a {gb} GB backup is extremely slow, roughly {n} MB/s.",
                "While the backup job runs, everything on {cluster} gets much slower until the backup finishes.",
            ),
            "billing": (
                "We're billed ${amount} for backup storage but we only keep 7 days of backups.",
                "The {month} invoice charges us for {gb} GB of snapshots from a cluster we deleted.",
                "Can you explain the backup retention charges on our latest bill?",
            ),
            "how_to": (
                "How do I restore a single table ({table}) from last night's backup "
                "without touching the rest of the database?",
                "What's the best way to schedule backups every {hours} hours to our own S3 bucket?",
                "How can I do a point-in-time restore of {cluster} to a specific timestamp?",
            ),
            "outage": (
                "All backup jobs have failed since {time} UTC and no restore points exist for {cluster}.",
                "The backup service is down: manual and scheduled backups for {cluster} both error out with `{code}`.",
                "We can't restore anything, the restore service in {region} is completely unavailable.",
            ),
            "feature_request": (
                "Please support incremental backups to Google Cloud Storage.",
                "It would be nice to restore backups into a cluster in a different region like {region2}.",
                "Could you add backup encryption with our own KMS key?",
            ),
            "access": (
                "I get `access denied` when trying to download backup {snap} of {cluster}.",
                "My role {role} can't view or restore backups for {cluster}.",
                "We lost permission to run restores after being moved to a new team.",
            ),
        },
        "query_engine": {
            "bug": (
                "A LEFT JOIN between {table} and {table2} returns duplicate rows on {version}.",
                "`SELECT count(*) FROM {table}` returns a different number each time even with no writes.",
                "The query planner crashes with `{code}: unexpected null in sort key` on a simple GROUP BY.",
            ),
            "performance": (
                "A query on {table} that used to take {ms} ms now takes {ms2} ms after upgrading to {version}.",
                "The planner stopped using our index on {table}.{col} and does a full scan instead.",
                "p99 latency for our SELECT queries went from {ms} ms to {ms2} ms this week.",
            ),
            "billing": (
                "Our analytical queries on {table} used ${amount} in request units this month, which seems wrong.",
                "We were charged for {n} million request units but our query volume didn't change.",
                "Are failed or cancelled queries billed? Our query usage line jumped to ${amount}.",
            ),
            "how_to": (
                "How do I see the execution plan for a slow query against {table}?",
                "What's the syntax for an upsert into {table} on a composite primary key?",
                "How can I set a statement timeout for queries from one application user?",
            ),
            "outage": (
                "Every query against {cluster} fails with `{code}: no available executors`.",
                "The SQL endpoint for {cluster} stopped accepting queries entirely.",
                "All queries, even `SELECT 1`, time out on {cluster}.",
            ),
            "feature_request": (
                "Please add support for window functions with RANGE frames.",
                "It would be great to have materialized views that refresh incrementally.",
                "Could the query engine support recursive CTEs?",
            ),
            "access": (
                "User {user} gets `permission denied for table {table}` even though we granted SELECT.",
                "After the upgrade, our reporting role can't run queries on schema {schema} anymore.",
                "I can't query {table2}; it says I lack the required privilege.",
            ),
        },
        "storage": {
            "bug": (
                "Node {node} on {cluster} reports `{code}: corrupted SSTable block` during compaction.",
                "Disk usage for {table} keeps growing after we deleted most rows; the space is never reclaimed.",
                "A storage node on {cluster} restarts in a loop with a checksum error.",
            ),
            "performance": (
                "Compaction on {cluster} eats all the disk I/O and write latency jumped to {ms2} ms.",
                "Write throughput on {table} dropped by {pct}% since the storage nodes filled past {pct2}%.",
                "Storage nodes show constantly high IOPS and our inserts are slow.",
            ),
            "billing": (
                "Our storage bill went from ${amount2} to ${amount} but our data size barely changed.",
                "We're charged for {gb} GB of storage but `SHOW DATABASE SIZE` reports much less.",
                "Why are we still billed for storage on nodes we scaled down?",
            ),
            "how_to": (
                "How do I check how much disk space each table uses on {cluster}?",
                "What's the recommended way to reclaim space after deleting old rows from {table}?",
                "How can I move {cluster} to the faster SSD storage class?",
            ),
            "outage": (
                "Storage nodes on {cluster} ran out of disk and the whole cluster went read-only.",
                "Three of our storage nodes in {region} are offline and the data is unavailable.",
                "The storage layer on {cluster} is down; every write fails with `{code}`.",
            ),
            "feature_request": (
                "Please add tiered storage so older partitions of {table} move to object storage.",
                "It would help to have per-table compression settings.",
                "Could you add automatic disk autoscaling for storage nodes?",
            ),
            "access": (
                "We get `access denied` when trying to view storage metrics for {cluster}.",
                "My role can't change storage settings on {cluster} even though I manage the project.",
                "I can't open the storage usage report for our organization.",
            ),
        },
        "auth": {
            "bug": (
                "SSO login through {idp} redirects back to the login page in an endless loop.",
                "API keys created after {date} are rejected with `{code}: invalid signature`.",
                "Password reset emails for our users never arrive.",
            ),
            "performance": (
                "Logging in through {idp} takes {n} seconds before the session is created.",
                "Token validation adds {ms} ms to every new connection since the upgrade to {version}.",
                "Authentication is slow: new connections wait seconds on the LDAP lookup.",
            ),
            "billing": (
                "We're charged ${amount} for the SSO add-on but we never enabled it.",
                "The invoice lists {n} MFA seats; we only have half that many users.",
                "Is the {idp} SSO integration included in our plan or billed separately?",
            ),
            "how_to": (
                "How do I set up SAML SSO with {idp}?",
                "How can I rotate the API key used by our {lang} service without downtime?",
                "How do I enforce MFA for everyone in our organization?",
            ),
            "outage": (
                "Nobody in our org can log in, the authentication service returns `{code}` for every user.",
                "SSO via {idp} is completely down and no one can sign in.",
                "API key authentication is failing for all of our services at once.",
            ),
            "feature_request": (
                "Please support SCIM provisioning with {idp}.",
                "It would be great to have API keys scoped to a single cluster.",
                "Could you add support for hardware security keys for MFA?",
            ),
            "access": (
                "My account {user} was locked after too many attempts and I can't unlock it.",
                "I was removed from our organization by mistake and need my access restored.",
                "A new team member never received an invite and can't join our organization.",
            ),
        },
        "connectors": {
            "bug": (
                "The Kafka sink connector drops messages with null keys when writing to {table}.",
                "The JDBC driver {drv_version} throws `{code}: unexpected EOF` on large result sets.",
                "The {lang} client library fails to reconnect after a failover.",
            ),
            "performance": (
                "The Kafka connector only ingests about {n}k messages/s into {table}, far below what we need.",
                "Our Spark connector job that reads {table} now takes {hours} hours.",
                "The {lang} driver is slow: each batch insert takes {ms2} ms.",
            ),
            "billing": (
                "We're billed ${amount} for managed connector hours on a connector we paused.",
                "The {month} invoice has a line for a Debezium CDC connector we never created.",
                "How are managed Kafka connector tasks priced? We got charged ${amount} for {n} tasks.",
            ),
            "how_to": (
                "How do I configure the Kafka source connector to read from topic {topic}?",
                "What's the connection string format for the {lang} driver with TLS?",
                "How can I stream changes from {table} into Snowflake with a connector?",
            ),
            "outage": (
                "All our managed connectors stopped at {time} UTC and nothing is being ingested.",
                "The Kafka connector cluster is down and every task is in FAILED state.",
                "Every {lang} driver connection is refused with `{code}` since this morning.",
            ),
            "feature_request": (
                "Please add a native connector for BigQuery.",
                "It would be great if the {lang} driver supported async I/O.",
                "Could the Kafka sink connector support exactly-once delivery?",
            ),
            "access": (
                "The connector service account {user} can't read topic {topic}, we get `not authorized`.",
                "I don't have permission to create connectors in our project.",
                "Our connector lost access to {table} after we changed roles.",
            ),
        },
        "console": {
            "bug": (
                "The metrics page in the cloud console shows no data for {cluster} even though it's running.",
                "Clicking Save on the cluster settings page in the console does nothing in {browser}.",
                "The console shows {cluster} as Degraded but every node is healthy.",
            ),
            "performance": (
                "The cloud console takes {n} seconds to load the clusters page.",
                "The SQL editor in the console freezes on results over {n}k rows.",
                "Console dashboards are very slow to render in {browser}.",
            ),
            "billing": (
                "The billing page in the console shows ${amount2} but our invoice says ${amount}.",
                "We were charged for {n} console seats but only a few people ever log into the console.",
                "The usage page in the console doesn't match our bill; can we get an itemized invoice?",
            ),
            "how_to": (
                "How do I add a teammate to our project in the cloud console?",
                "How do I export the query history from the console?",
                "How can I build a custom dashboard for {cluster} in the console?",
            ),
            "outage": (
                "The cloud console is down, it shows a blank page with error {code}.",
                "console.quilldb.example returns 502 for everyone on our team.",
                "We can't open the console at all; the cluster list never loads.",
            ),
            "feature_request": (
                "Please add a dark mode to the cloud console.",
                "It would be useful if the console let us pin favorite queries.",
                "Could the console show per-table size charts?",
            ),
            "access": (
                "I can't see {cluster} in the console even though I'm in the project.",
                "The console says I don't have access to this organization after I accepted the invite.",
                "My teammate can view clusters in the console but can't open the SQL editor.",
            ),
        },
    }
)

_LEADS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "bug": (
            "I think we found a bug.",
            "Looks like a bug on your side.",
            "Something is broken.",
            "Reporting a defect.",
            "Bug report:",
        ),
        "performance": (
            "We have a performance problem.",
            "Things have gotten really slow.",
            "Performance regression:",
            "Latency issue.",
        ),
        "billing": (
            "Billing question.",
            "I have a question about our invoice.",
            "We think we were overcharged.",
            "Billing issue:",
        ),
        "how_to": (
            "Quick question.",
            "How-to question:",
            "Hoping you can point me in the right direction.",
            "Question about usage.",
        ),
        "outage": (
            "We have an outage!",
            "Everything is down.",
            "Service disruption:",
            "Incident on our side.",
        ),
        "feature_request": (
            "Feature request:",
            "A suggestion for the roadmap.",
            "Idea for an improvement.",
            "We'd love to see this added.",
        ),
        "access": (
            "Access problem.",
            "We're locked out.",
            "Permission issue:",
            "I can't get access.",
        ),
    }
)

_DETAILS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "bug": (
            "It happens every time we run it.",
            "We can reproduce it on a fresh cluster.",
            "The logs show `{code}` right before it fails.",
            "It started right after the upgrade to {version}.",
            "Restarting the nodes didn't help.",
            "We first noticed it on {date}.",
        ),
        "performance": (
            "CPU on the nodes sits around {pct}%.",
            "Nothing changed in our workload or schema.",
            "It's worst during our daily peak around {time} UTC.",
            "We already ran ANALYZE on the tables involved.",
            "Scaling up the cluster did not help much.",
        ),
        "billing": (
            "Our account is on the {plan} plan.",
            "This is about the {month} invoice.",
            "Our finance team flagged it during month-end close.",
            "We'd like a corrected invoice if this is a mistake.",
        ),
        "how_to": (
            "I searched the docs but couldn't find a clear answer.",
            "We're on QuillDB {version}.",
            "An example would be really helpful.",
            "We'd prefer a solution that doesn't require downtime.",
        ),
        "outage": (
            "It started at {time} UTC.",
            "The status page still shows everything green.",
            "We've already restarted our application servers.",
            "Nothing was deployed on our side today.",
        ),
        "feature_request": (
            "Several of our teams have asked for this.",
            "Other databases we use already offer this.",
            "Right now we work around it with a cron job.",
            "Happy to test a beta version.",
        ),
        "access": (
            "Nothing changed on our side as far as I know.",
            "I've tried logging out and back in.",
            "Our org admin is on vacation this week.",
            "I double-checked the role assignments.",
        ),
    }
)

# Priority is read off these cues alone, so each cue maps to one priority.
_CUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "urgent": (
            "Production is down and our customers are affected.",
            "URGENT: this is taking down production right now.",
            "This is a P0 for us, all production traffic is failing.",
            "We are losing revenue every minute, please escalate immediately.",
            "Sev1: our live app is broken, please page whoever is on call.",
            "Production emergency, we need help right now.",
        ),
        "high": (
            "This is blocking our release on {weekday}.",
            "It's blocking several teams, so we need a fix this week.",
            "We have a customer launch on {date} and this is a blocker.",
            "High priority for us: production users are affected, though we have a partial workaround.",
            "Please treat this as high priority, our release is on hold until it's resolved.",
        ),
        "medium": (
            "We have a workaround for now, but would like a proper fix.",
            "Would appreciate a response in the next few days.",
            "It's only affecting our staging environment at the moment.",
            "Not critical, but it is slowing our team down.",
            "Moderate impact, a handful of internal users noticed.",
        ),
        "low": (
            "Whenever you get a chance.",
            "No rush at all.",
            "Just curious, no urgency.",
            "Low priority, just wanted to flag it.",
            "Nice to have, not time sensitive.",
            "Not urgent, answer whenever convenient.",
        ),
    }
)

# Keeps priorities plausible: a feature request is never "urgent", an outage
# never "low".
_ALLOWED_PRIORITIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "bug": PRIORITIES,
        "performance": PRIORITIES,
        "billing": ("low", "medium", "high"),
        "how_to": ("low", "medium", "high"),
        "outage": ("high", "urgent"),
        "feature_request": ("low", "medium"),
        "access": ("medium", "high", "urgent"),
    }
)

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


# --------------------------------------------------------------------------
# Clean generation
# --------------------------------------------------------------------------


def labels_json(labels: Mapping[str, str]) -> str:
    """Compact JSON of the three labels in the canonical key order."""
    values = [labels[k] for k in LABEL_KEYS]
    if all(v.isidentifier() for v in values):  # fast path: needs no escaping
        return '{{"category":"{}","priority":"{}","product_area":"{}"}}'.format(*values)
    return json.dumps(dict(zip(LABEL_KEYS, values, strict=True)), separators=(",", ":"))


def assistant_text(item: Mapping[str, Any]) -> str:
    """The assistant turn for ``item``: its reply, a newline, the label JSON."""
    return f"{item['reply']}\n{labels_json(item['labels'])}"


def parse_labels(text: str) -> dict[str, str] | None:
    """Parse the label JSON from the last non-empty line of an assistant turn.

    Returns ``None`` when that line is not a JSON object with exactly the three
    label keys.
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        obj = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or set(obj) != set(LABEL_KEYS):
        return None
    return {k: obj[k] for k in LABEL_KEYS}


def _typos(text: str, rng: random.Random, count: int) -> str:
    """Swap, drop or double one letter in up to ``count`` random plain words."""
    words = text.split(" ")
    for _ in range(count):
        i = _ri(rng, 0, len(words) - 1)
        w = words[i]
        if len(w) < 5 or not w.isalpha():
            continue
        j = _ri(rng, 1, len(w) - 2)
        op = _ri(rng, 0, 2)
        if op == 0:
            w = w[: j - 1] + w[j] + w[j - 1] + w[j + 1 :]
        elif op == 1:
            w = w[:j] + w[j + 1 :]
        else:
            w = w[:j] + w[j] + w[j:]
        words[i] = w
    return " ".join(words)


def _make_reply(rng: random.Random, category: str, area: str, priority: str, slots: _Slots) -> str:
    fmt = {"area_name": _AREA_NAMES[area]}
    parts = [_ch(rng, _ACKS[category]).format_map(fmt)]
    if category == "bug":
        parts.append(
            "Could you send us a debug bundle (`quill debug zip`) from the affected cluster so we can reproduce it?"
        )
        parts.append(_TIPS[area])
    elif category == "performance":
        parts.append(_TIPS[area])
        if rng.random() < 0.5:
            parts.append("A time window when it was slow would help us line it up.")
    elif category == "billing":
        parts.append(
            f"I've asked our billing team to review the {_BILLING_NAMES[area]} "
            "charges on your account and correct anything that's wrong."
        )
    elif category == "how_to":
        parts.append(_HOWTO_ANSWERS[area])
    elif category == "outage":
        parts.append("Our on-call engineers have been paged, and updates will be posted at status.quilldb.example.")
        if rng.random() < 0.5:
            parts.append(_TIPS[area])
    elif category == "feature_request":
        parts.append(
            f"I've logged it with the team that owns {_AREA_NAMES[area]}; we can't "
            "promise a timeline, but requests like this shape our roadmap."
        )
    else:
        parts.append(_ACCESS_TIPS[area])
    parts.append(_ch(rng, _CLOSERS[priority]))
    return " ".join(parts)


def _fill(template: str, slots: _Slots) -> str:
    return template.format_map(slots) if "{" in template else template


def _make_item(rng: random.Random, item_id: str) -> dict[str, Any]:
    category = _ch(rng, CATEGORIES)
    area = _ch(rng, PRODUCT_AREAS)
    priority = _ch(rng, _ALLOWED_PRIORITIES[category])
    slots = _Slots(rng)

    body = _fill(_ch(rng, _CORES[area][category]), slots)
    if rng.random() < 0.25:
        body = _typos(body, rng, _ri(rng, 1, 2))
    if rng.random() < 0.55:
        body = f"{_ch(rng, _LEADS[category])} {body}"
    # 0-3 consecutive detail sentences; consecutive (not sampled) keeps this cheap.
    roll = rng.random()
    n_details = 0 if roll < 0.35 else 1 if roll < 0.7 else 2 if roll < 0.9 else 3
    pool = _DETAILS[category]
    first = _ri(rng, 0, len(pool) - 1)
    details = [_fill(pool[(first + k) % len(pool)], slots) for k in range(n_details)]
    sentences = [body, *details]
    if rng.random() < 0.12:
        sentences.insert(1, _fill(_ch(rng, _BACKGROUNDS), slots))
    if rng.random() < 0.45:
        sentences.insert(0, _fill(_ch(rng, _CONTEXTS), slots))
    text = " ".join(sentences)

    cue = _fill(_ch(rng, _CUES[priority]), slots)
    if priority in ("urgent", "high") and rng.random() < 0.35:
        text = f"{cue} {text}"
    else:
        text = text + _ch(rng, (" ", " ", "\n")) + cue
    if rng.random() < 0.6:
        text = _ch(rng, _GREETINGS) + _ch(rng, (" ", "\n")) + text
    if rng.random() < 0.5:
        text = text + _ch(rng, ("\n", "\n\n", " ")) + _ch(rng, _SIGNOFFS)
    if rng.random() < 0.07:
        text = text.lower()

    return {
        "id": item_id,
        "ticket": text,
        "reply": _make_reply(rng, category, area, priority, slots),
        "labels": {"category": category, "priority": priority, "product_area": area},
    }


def _iter_items(rng: random.Random, prefix: str, exclude: frozenset[str] = frozenset()) -> Iterator[dict[str, Any]]:
    """Endless stream of items whose ticket texts are unique (and not excluded)."""
    seen = set(exclude)
    index = 0
    while True:
        item = _make_item(rng, f"{prefix}-{index:06d}")
        if item["ticket"] in seen:
            continue
        seen.add(item["ticket"])
        index += 1
        yield item


def generate_clean(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Return ``n`` clean triage items, deterministic for ``seed``.

    Each item is ``{"id", "ticket", "reply", "labels": {"category", "priority",
    "product_area"}}``; ticket texts are unique within one call.
    """
    return list(islice(_iter_items(random.Random(seed), f"t{seed}"), n))


def _gold_items(n: int, seed: int) -> list[dict[str, Any]]:
    # A string seed gives a stream disjoint from the pool's integer seed.
    return list(islice(_iter_items(random.Random(f"gold:{seed}"), f"gold{seed}"), n))


# --------------------------------------------------------------------------
# Dialects
# --------------------------------------------------------------------------

_SHAREGPT_ROLES: Mapping[str, str] = MappingProxyType({"system": "system", "user": "human", "assistant": "gpt"})


def _turns(ticket: str, answer: str, system: bool = True) -> list[dict[str, Any]]:
    turns = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
    turns.append({"role": "user", "content": ticket})
    turns.append({"role": "assistant", "content": answer})
    return turns


def lookup_cluster_tool() -> dict[str, Any]:
    """OpenAI-style tool schema for the ``lookup_cluster`` function."""
    return {
        "type": "function",
        "function": {
            "name": "lookup_cluster",
            "description": "Look up a QuillDB cluster's status, region, version and node count.",
            "parameters": {
                "type": "object",
                "properties": {"cluster": {"type": "string", "description": "Cluster name."}},
                "required": ["cluster"],
            },
        },
    }


def _render(turns: Sequence[Mapping[str, Any]], dialect: str) -> dict[str, Any]:
    if dialect == "openai":
        out: dict[str, Any] = {"messages": [dict(t) for t in turns]}
        if any(t.get("tool_calls") for t in turns):
            out["tools"] = [lookup_cluster_tool()]
        return out
    if dialect == "sharegpt":
        return {"conversations": [{"from": _SHAREGPT_ROLES[t["role"]], "value": t["content"]} for t in turns]}
    if dialect == "alpaca":
        by_role = {t["role"]: t["content"] for t in turns}
        roles = [t["role"] for t in turns if t["role"] != "system"]
        if roles != ["user", "assistant"]:
            raise ValueError(f"alpaca needs one user then one assistant turn: {roles}")
        out = {
            "instruction": ALPACA_INSTRUCTION,
            "input": by_role["user"],
            "output": by_role["assistant"],
        }
        if "system" in by_role:
            out["system"] = by_role["system"]
        return out
    raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


def to_dialect(item: Mapping[str, Any], dialect: str, *, system: bool = True) -> dict[str, Any]:
    """Render a clean item as one conversation in ``dialect``.

    ``openai``: ``{"messages": [system?, user, assistant]}``;
    ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt",
    "value"}]}``; ``alpaca``: ``{"instruction", "input", "output"}`` plus a
    ``"system"`` key when ``system`` is true.
    """
    answer = assistant_text(item)
    # Built directly rather than through _render: this is the benchmark hot path.
    if dialect == "openai":
        return {"messages": _turns(item["ticket"], answer, system)}
    if dialect == "sharegpt":
        head = [{"from": "system", "value": SYSTEM_PROMPT}] if system else []
        return {"conversations": [*head, {"from": "human", "value": item["ticket"]}, {"from": "gpt", "value": answer}]}
    if dialect == "alpaca":
        out = {"instruction": ALPACA_INSTRUCTION, "input": item["ticket"], "output": answer}
        if system:
            out["system"] = SYSTEM_PROMPT
        return out
    raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


def generate_conversations(n: int, seed: int = 0, dialect: str = "openai") -> Iterator[dict[str, Any]]:
    """Lazily yield ``n`` clean conversations in ``dialect`` (for benchmarks).

    Equivalent to ``to_dialect(item, dialect)`` over ``generate_clean(n, seed)``.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
    for item in islice(_iter_items(random.Random(seed), f"t{seed}"), n):
        yield to_dialect(item, dialect)


# --------------------------------------------------------------------------
# Noise injection
# --------------------------------------------------------------------------

_FIRST_NAMES = (
    "Priya",
    "Marcus",
    "Elena",
    "Tomasz",
    "Aisha",
    "Kenji",
    "Sofia",
    "Daniel",
    "Fatima",
    "Liam",
    "Chloe",
    "Rafael",
    "Ingrid",
    "Omar",
    "Hannah",
    "Mateo",
)
_LAST_NAMES = (
    "Raman",
    "Whitfield",
    "Kowalczyk",
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Delgado",
    "Brennan",
    "Haddad",
    "Morrison",
    "Petrova",
    "Castillo",
    "Adeyemi",
    "Fischer",
)
_STREETS = ("Elm", "Oak", "Maple", "Cedar", "Pine", "Birch", "Willow", "Lakeview")
_STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Drive")
_CITIES = ("Springfield", "Riverton", "Fairview", "Greenville", "Madison", "Franklin", "Georgetown")
_FOLLOW_UPS = (
    "Any update on this?",
    "Also, forgot to mention: this started after our last deploy.",
    "Sorry, one more thing: it also happens on our staging cluster.",
    "Hello? Is anyone looking at this?",
)
_FILLERS = ("really", "actually", "just", "also", "basically")
_DROPPABLE = frozenset({"just", "really", "the", "so", "also", "very", "now", "our"})
_SYNONYMS: Mapping[str, str] = MappingProxyType(
    {
        "can't": "cannot",
        "don't": "do not",
        "It's": "It is",
        "We're": "We are",
        "Thanks!": "Thank you!",
        "very": "really",
        "Please": "Pls",
        "help": "assistance",
        "slow": "sluggish",
        "fails": "breaks",
        "every": "each",
    }
)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = _words(text)
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def word_shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of the lowercase word ``n``-gram sets of two texts."""
    sa, sb = _shingles(a, n), _shingles(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _near_edit(text: str, rng: random.Random) -> tuple[str, float] | None:
    """A small word-level edit with 5-gram Jaccard >= 0.8, or None if none found."""
    for _ in range(20):
        words = text.split(" ")
        for _ in range(rng.choice((1, 1, 2))):
            op = rng.randrange(4)
            i = rng.randrange(len(words))
            if op == 0:
                words.insert(i, rng.choice(_FILLERS))
            elif op == 1 and words[i] in _DROPPABLE:
                del words[i]
            elif op == 2 and words[i] in _SYNONYMS:
                words[i] = _SYNONYMS[words[i]]
            else:
                words[i] = _typos(words[i], rng, 1)
        edited = " ".join(words)
        if _words(edited) == _words(text):
            continue
        score = word_shingle_jaccard(text, edited)
        if score >= NEAR_DUP_MIN_JACCARD:
            return edited, score
    return None


def _mislabel(labels: Mapping[str, str], rng: random.Random) -> tuple[dict[str, str], str]:
    field = rng.choice(LABEL_KEYS)
    choices = {
        "category": CATEGORIES,
        "priority": PRIORITIES,
        "product_area": PRODUCT_AREAS,
    }[field]
    wrong = dict(labels)
    wrong[field] = rng.choice([c for c in choices if c != labels[field]])
    return wrong, field


def _fake_pii(rng: random.Random) -> tuple[str, str, list[tuple[str, str]]]:
    """A sentence with 1-2 fake PII strings: (sentence, where, [(type, s)])."""
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    name = f"{first} {last}"
    email = f"{first.lower()}.{last.lower()}@example.{rng.choice(('com', 'org', 'net'))}"
    area_code = rng.choice(("202", "312", "415", "617", "206"))
    phone = rng.choice(
        (
            f"(555) 01{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d}",
            f"+1-{area_code}-555-01{rng.randint(0, 99):02d}",
            f"({area_code}) 555-01{rng.randint(0, 99):02d}",
        )
    )
    address = f"{rng.randint(2, 980)} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}, {rng.choice(_CITIES)}"
    kind = rng.randrange(5)
    if kind == 0:
        return f"This is {name} from the data team.", "prepend", [("name", name)]
    if kind == 1:
        return (
            f"You can reach me at {email} or {phone}.",
            "append",
            [("email", email), ("phone", phone)],
        )
    if kind == 2:
        return f"Please send the invoice to {address}.", "append", [("address", address)]
    if kind == 3:
        return (
            f"My colleague {name} ({email}) set up the cluster.",
            "append",
            [("name", name), ("email", email)],
        )
    return f"Call me at {phone} if that's easier.", "append", [("phone", phone)]


def _plant_pii(text: str, rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    planted: list[tuple[str, str]] = []
    for _ in range(rng.choice((1, 1, 2))):
        sentence, where, pieces = _fake_pii(rng)
        text = f"{sentence} {text}" if where == "prepend" else f"{text}\n{sentence}"
        planted.extend(p for p in pieces if p not in planted)
    return text, planted


def _paste_log(text: str, rng: random.Random, min_chars: int) -> str:
    """Append a pasted server log so the row exceeds ``min_chars`` characters."""
    target = min_chars + rng.randint(200, 3000)
    components = ("qdb.replication", "qdb.storage", "qdb.sql", "qdb.backup", "qdb.kv")
    lines: list[str] = []
    size = len(text)
    while size < target:
        n, m, k = rng.randint(1, 999_999), rng.randint(1, 9999), rng.randint(1, 24)
        msg = rng.choice(
            (
                f"applied batch seq={n} lag_ms={m}",
                f"compaction L{k % 6} -> L{k % 6 + 1} size={m}MiB",
                f"slow query fingerprint={rng.getrandbits(48):012x} elapsed_ms={m}",
                f"lease transfer range r{n} to n{k}",
                f"heartbeat timeout peer=n{k} after {m}ms",
                f"retrying rpc attempt={k} err=deadline exceeded",
            )
        )
        line = (
            f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z "
            f"{rng.choice('IWE')} node=n{k} {rng.choice(components)}: {msg}"
        )
        lines.append(line)
        size += len(line) + 1
    log = "\n".join(lines)
    return f"{text}\n\nHere is the full log from the node:\n```\n{log}\n```"


def _break(turns: list[dict[str, Any]], subkind: str, rng: random.Random) -> list[dict[str, Any]]:
    head = [t for t in turns if t["role"] == "system"]
    user = next(t for t in turns if t["role"] == "user")
    answer = next(t for t in turns if t["role"] == "assistant")
    if subkind == "assistant_first":
        return [*head, answer, user]
    if subkind == "double_user":
        follow = {"role": "user", "content": rng.choice(_FOLLOW_UPS)}
        return [*head, user, follow, answer]
    return [*head, user, {"role": "assistant", "content": ""}]


def _row_chars(turns: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(t.get("content") or "") for t in turns)


def _inject(
    base: list[dict[str, Any]],
    counts: Mapping[str, int],
    rng: random.Random,
    *,
    gold: Sequence[Mapping[str, Any]] = (),
    system: bool = True,
    extra: Sequence[tuple[list[dict[str, Any]], dict[str, Any]]] = (),
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Turn clean ``base`` items into shuffled rows with planted problems.

    ``counts`` maps each of ``wrong_label``, ``pii``, ``overlong``, the
    ``BROKEN_SUBKINDS``, ``exact_duplicate``, ``near_duplicate`` and
    ``eval_leakage`` to how many rows get it. The first group mutates distinct
    base rows in place; duplicates and leaks are added rows, copied from
    untouched base rows or from ``gold``. ``extra`` rows are shuffled in as-is.
    Returns ``(turns per row, problems)``; each problem's ``row`` (and any
    ``duplicate_of``/``source``) is a final row index.
    """
    mutations = [
        kind for kind in ("wrong_label", "pii", "overlong", *BROKEN_SUBKINDS) for _ in range(counts.get(kind, 0))
    ]
    if len(mutations) >= len(base):
        raise ValueError("noise rates leave no clean rows to copy from")
    order = list(range(len(base)))
    rng.shuffle(order)
    clean = sorted(order[len(mutations) :])

    entries: list[tuple[list[dict[str, Any]], dict[str, Any] | None]] = [
        (_turns(it["ticket"], assistant_text(it), system), None) for it in base
    ]
    for index, kind in zip(order, mutations, strict=False):
        item = base[index]
        turns = entries[index][0]
        problem: dict[str, Any]
        if kind == "wrong_label":
            wrong, field = _mislabel(item["labels"], rng)
            answer = f"{item['reply']}\n{labels_json(wrong)}"
            turns = _turns(item["ticket"], answer, system)
            problem = {
                "kind": "wrong_label",
                "field": field,
                "true_labels": dict(item["labels"]),
                "given_labels": wrong,
            }
        elif kind == "pii":
            ticket, planted = _plant_pii(item["ticket"], rng)
            turns = _turns(ticket, assistant_text(item), system)
            problem = {
                "kind": "pii",
                "strings": [s for _, s in planted],
                "types": [t for t, _ in planted],
            }
        elif kind == "overlong":
            ticket = _paste_log(item["ticket"], rng, OVERLONG_MIN_CHARS)
            turns = _turns(ticket, assistant_text(item), system)
            problem = {"kind": "overlong", "chars": _row_chars(turns)}
        else:
            turns = _break(turns, kind, rng)
            problem = {"kind": "broken_structure", "subkind": kind}
        entries[index] = (turns, problem)

    for _ in range(counts.get("exact_duplicate", 0)):
        src = rng.choice(clean)
        copy = [dict(t) for t in entries[src][0]]
        entries.append((copy, {"kind": "exact_duplicate", "duplicate_of": src}))

    # Short tickets cannot take a word edit and stay above the Jaccard bar.
    long_enough = [i for i in clean if len(_words(base[i]["ticket"])) >= 30]
    made = 0
    while made < counts.get("near_duplicate", 0):
        src = rng.choice(long_enough or clean)
        item = base[src]
        edit = _near_edit(item["ticket"], rng)
        if edit is None:
            continue
        ticket, score = edit
        problem = {
            "kind": "near_duplicate",
            "source": src,
            "jaccard": round(score, 4),
            "conflicting_labels": made % 3 == 2,
        }
        answer = assistant_text(item)
        if problem["conflicting_labels"]:
            wrong, field = _mislabel(item["labels"], rng)
            answer = f"{item['reply']}\n{labels_json(wrong)}"
            problem.update(field=field, true_labels=dict(item["labels"]), given_labels=wrong)
        entries.append((_turns(ticket, answer, system), problem))
        made += 1

    n_leak = counts.get("eval_leakage", 0)
    if n_leak and not gold:
        raise ValueError("eval_leakage needs gold items")
    picks = (
        rng.sample(range(len(gold)), n_leak)
        if n_leak <= len(gold)
        else [rng.randrange(len(gold)) for _ in range(n_leak)]
    )
    for k, gold_index in enumerate(picks):
        gold_item = gold[gold_index]
        edit = _near_edit(gold_item["ticket"], rng) if k % 2 else None
        ticket, score = edit if edit else (gold_item["ticket"], 1.0)
        entries.append(
            (
                _turns(ticket, assistant_text(gold_item), system),
                {
                    "kind": "eval_leakage",
                    "gold_index": gold_index,
                    "gold_id": gold_item["id"],
                    "exact": edit is None,
                    "jaccard": round(score, 4),
                },
            )
        )

    entries.extend((turns, dict(extra_problem)) for turns, extra_problem in extra)
    perm = list(range(len(entries)))
    rng.shuffle(perm)
    final_pos = {old: new for new, old in enumerate(perm)}
    rows: list[list[dict[str, Any]]] = []
    problems: list[dict[str, Any]] = []
    for new, old in enumerate(perm):
        turns, found = entries[old]
        rows.append(turns)
        if found is not None:
            for key in ("duplicate_of", "source"):
                if isinstance(found.get(key), int):
                    found[key] = final_pos[found[key]]
            problems.append({"row": new, **found})

    # Copies are indistinguishable from their source, so call the earliest one
    # the original: a "keep first" dedup pass then matches the ground truth.
    groups: dict[int, list[dict[str, Any]]] = {}
    for problem in problems:
        if problem["kind"] == "exact_duplicate" and isinstance(problem["duplicate_of"], int):
            groups.setdefault(problem["duplicate_of"], []).append(problem)
    for source, copies in groups.items():
        members = sorted([source, *(p["row"] for p in copies)])
        for problem, row in zip(copies, members[1:], strict=True):
            problem.update(row=row, duplicate_of=members[0])
    problems.sort(key=lambda p: p["row"])
    return rows, problems


def _resolve_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_RATES)
    for kind, rate in (rates or {}).items():
        if kind not in merged:
            raise ValueError(f"unknown noise kind {kind!r}; expected {NOISE_KINDS}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate for {kind!r} must be in [0, 1], got {rate}")
        merged[kind] = float(rate)
    if sum(merged.values()) >= 1.0:
        raise ValueError("noise rates must sum to less than 1")
    return merged


def generate_noisy(
    n: int,
    seed: int = 0,
    rates: Mapping[str, float] | None = None,
    *,
    eval_size: int | None = None,
    realistic: Mapping[str, Any] | bool | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build a noisy training pool of ``n`` OpenAI-style rows plus ground truth.

    Each row is ``{"messages": [system, user, assistant], "metadata":
    {"sample_id": str}}``. For every kind in ``NOISE_KINDS``, ``round(rate * n)``
    rows carry that problem (``rates`` overrides ``DEFAULT_RATES`` per kind);
    a row has at most one problem.

    Ground truth: ``{"seed", "n", "rates", "counts", "problems", "by_kind",
    "pii_strings", "gold_eval"}``. ``problems`` is sorted by ``row`` (an index
    into the returned rows); besides ``row`` and ``kind`` each carries:

    - ``exact_duplicate``: ``duplicate_of`` (earlier row with equal messages);
    - ``near_duplicate``: ``source`` row, ``jaccard`` (word 5-gram Jaccard of
      the user texts, >= 0.8), ``conflicting_labels``, and when conflicting
      ``field``, ``true_labels``, ``given_labels``;
    - ``wrong_label``: ``field``, ``true_labels``, ``given_labels``;
    - ``pii``: ``strings`` planted in the user turn and their ``types``
      (name, email, phone, address);
    - ``broken_structure``: ``subkind`` in ``BROKEN_SUBKINDS``;
    - ``overlong``: ``chars`` (over ``OVERLONG_MIN_CHARS``);
    - ``eval_leakage``: ``gold_index``, ``gold_id``, ``exact``, ``jaccard``.

    ``gold_eval`` holds ``eval_size`` clean items (default ``max(50, n // 10)``)
    from a disjoint seed stream; a gold ticket appears verbatim in the pool only
    in ``eval_leakage`` rows with ``exact`` true.

    ``realistic`` (True for ``REALISTIC_DEFAULTS``, or a mapping overriding some of
    them) adds the systematic noise real teams have, on rows that carry no other
    problem and are no duplicate's source (see ``add_realistic_noise``); without
    it the output is exactly what it always was.
    """
    merged = _resolve_rates(rates)
    counts = {kind: round(merged[kind] * n) for kind in NOISE_KINDS}
    gold = _gold_items(eval_size if eval_size is not None else max(50, n // 10), seed)
    if counts["eval_leakage"] and not gold:
        raise ValueError("eval_leakage needs eval_size > 0")

    added = counts["exact_duplicate"] + counts["near_duplicate"]
    added += counts["eval_leakage"]
    gold_tickets = frozenset(item["ticket"] for item in gold)
    stream = _iter_items(random.Random(seed), f"t{seed}", exclude=gold_tickets)
    base = list(islice(stream, n - added))

    inject_counts = dict(counts)
    for i in range(counts["broken_structure"]):
        sub = BROKEN_SUBKINDS[i % len(BROKEN_SUBKINDS)]
        inject_counts[sub] = inject_counts.get(sub, 0) + 1
    turns_rows, problems = _inject(base, inject_counts, random.Random(f"noise:{seed}"), gold=gold)

    rows: list[dict[str, Any]] = [
        {"messages": turns, "metadata": {"sample_id": f"pool{seed}-{i:06d}"}} for i, turns in enumerate(turns_rows)
    ]
    kinds: tuple[str, ...] = NOISE_KINDS
    realistic_cfg: dict[str, Any] | None = None
    if realistic:
        realistic_cfg = _resolve_realistic(realistic if isinstance(realistic, Mapping) else {})
        added_problems, annotators = add_realistic_noise(rows, problems, realistic_cfg, random.Random(f"real:{seed}"))
        for row, annotator in zip(rows, annotators, strict=True):
            row["metadata"]["annotator"] = annotator
        problems = sorted([*problems, *added_problems], key=lambda p: p["row"])
        kinds = (*NOISE_KINDS, *REALISTIC_KINDS)
        for kind in REALISTIC_KINDS:
            counts[kind] = sum(1 for p in added_problems if p["kind"] == kind)
    by_kind: dict[str, list[int]] = {kind: [] for kind in kinds}
    pii_strings: list[str] = []
    for problem in problems:
        by_kind[problem["kind"]].append(problem["row"])
        pii_strings.extend(problem.get("strings", ()))
    return rows, {
        "seed": seed,
        "n": n,
        "rates": merged,
        "counts": counts,
        "problems": problems,
        "by_kind": by_kind,
        "pii_strings": list(dict.fromkeys(pii_strings)),
        "gold_eval": gold,
        **({"realistic": realistic_cfg} if realistic_cfg is not None else {}),
    }


# --------------------------------------------------------------------------
# Realistic (systematic) noise: what annotators and macros really do. Random
# wrong labels average away in a model trained on thousands of rows; these do
# not, because each is tied to something in the ticket (its category, its
# product area, the queue an annotator works).
# --------------------------------------------------------------------------

REALISTIC_KINDS = ("label_confusion", "biased_annotator", "templated_answer")
REALISTIC_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # One category pair: this share of the first category's rows carries the second; the rows are
        # those of whole product areas (annotators confuse the pair on particular topics).
        "confusion": ("performance", "outage"),
        "confusion_rate": 0.25,
        # One of `annotators` works mostly `biased_queue`'s tickets and shifts `biased_field` one level
        # up (priority: low → medium → high → urgent) on every row of theirs it can.
        "annotators": 5,
        "biased_field": "priority",
        "biased_queue": "storage",
        "biased_queue_share": 0.7,
        # One macro pasted as the whole answer (with its own label line) on this share of the pool,
        # taken from tickets of `templated_category`.
        "templated_rate": 0.04,
        "templated_category": "billing",
        "templated_labels": {"category": "billing", "priority": "low", "product_area": "console"},
    }
)
TEMPLATED_REPLY = (
    "Thanks for contacting QuillDB support! We have received your request and a member of our team "
    "will get back to you within two business days. In the meantime, our documentation at "
    "docs.quilldb.example answers most questions."
)
_LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"priority": PRIORITIES, "category": CATEGORIES, "product_area": PRODUCT_AREAS}
)


def _resolve_realistic(overrides: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(REALISTIC_DEFAULTS)
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"unknown realistic-noise setting {key!r}; expected one of {sorted(cfg)}")
        cfg[key] = value
    a, b = cfg["confusion"]
    if a not in CATEGORIES or b not in CATEGORIES or a == b:
        raise ValueError(f"confusion must be two different categories of {CATEGORIES}, got {cfg['confusion']!r}")
    if cfg["biased_field"] not in LABEL_KEYS or cfg["biased_queue"] not in PRODUCT_AREAS:
        raise ValueError("biased_field must be a label key and biased_queue a product area")
    for key in ("confusion_rate", "biased_queue_share", "templated_rate"):
        if not 0.0 <= float(cfg[key]) <= 1.0:
            raise ValueError(f"{key} must be in [0, 1], got {cfg[key]}")
    if int(cfg["annotators"]) < 2:
        raise ValueError("annotators must be at least 2 (one of them is the biased one)")
    cfg["confusion"] = [a, b]
    cfg["templated_labels"] = dict(cfg["templated_labels"])
    return cfg


def add_realistic_noise(
    rows: list[dict[str, Any]], problems: Sequence[Mapping[str, Any]], cfg: Mapping[str, Any], rng: random.Random
) -> tuple[list[dict[str, Any]], list[str]]:
    """Plant the realistic kinds into ``rows`` (OpenAI-style, changed in place); return the new
    problems and each row's annotator.

    Only rows without a problem that no duplicate was copied from are touched (a copy must stay a
    copy of its source), one kind per row, in this order:

    - ``templated_answer``: the assistant turn becomes ``TEMPLATED_REPLY`` plus the macro's label
      line, on ``round(templated_rate * n)`` rows drawn from ``templated_category`` tickets first;
    - ``label_confusion``: ``confusion[0]`` → ``confusion[1]`` on ``confusion_rate`` of the rows
      labelled with the first category, whole product areas at a time (seeded order; the last in part);
    - ``biased_annotator``: every row gets ``metadata.annotator`` ``a1``..``aN``; the biased one
      (``aN``) takes ``biased_queue_share`` of ``biased_queue`` tickets plus its share of the rest,
      and shifts ``biased_field`` one level up on each of its untouched rows where it can.

    Each problem: ``row``, ``kind``, ``fields`` (the label keys that differ), ``true_labels``,
    ``given_labels``, and ``annotator`` for the biased one.
    """
    used = {int(p["row"]) for p in problems}
    for p in problems:
        for key in ("duplicate_of", "source"):
            if isinstance(p.get(key), int):
                used.add(int(p[key]))
    truth: dict[int, dict[str, str]] = {}
    for i, row in enumerate(rows):
        if i in used:
            continue
        labels = parse_labels(next((t["content"] for t in row["messages"] if t["role"] == "assistant"), ""))
        if labels is not None:
            truth[i] = labels
    free = sorted(truth)
    out: list[dict[str, Any]] = []

    def relabel(i: int, kind: str, given: dict[str, str], answer: str | None = None, **extra: Any) -> None:
        turn = next(t for t in rows[i]["messages"] if t["role"] == "assistant")
        reply = turn["content"].rsplit("\n", 1)[0] if answer is None else answer
        turn["content"] = f"{reply}\n{labels_json(given)}"
        fields = [k for k in LABEL_KEYS if given[k] != truth[i][k]]
        out.append({"row": i, "kind": kind, "fields": fields, "true_labels": truth[i], "given_labels": given, **extra})
        taken.add(i)

    taken: set[int] = set()
    n_spam = round(float(cfg["templated_rate"]) * len(rows))
    pref = [i for i in free if truth[i]["category"] == cfg["templated_category"]]
    rest = [i for i in free if truth[i]["category"] != cfg["templated_category"]]
    rng.shuffle(pref)
    rng.shuffle(rest)
    for i in sorted((pref + rest)[:n_spam]):
        relabel(i, "templated_answer", dict(cfg["templated_labels"]), TEMPLATED_REPLY)

    a, b = cfg["confusion"]
    pair = [i for i in free if i not in taken and truth[i]["category"] == a]
    # The rate is of every row labelled `a` in the pool (other problems and copies included).
    labelled_a = 0
    for row in rows:
        given = parse_labels(next((t["content"] for t in row["messages"] if t["role"] == "assistant"), ""))
        labelled_a += bool(given and given["category"] == a)
    want = min(len(pair), round(float(cfg["confusion_rate"]) * labelled_a))
    areas = list(PRODUCT_AREAS)
    rng.shuffle(areas)
    ordered = [i for area in areas for i in pair if truth[i]["product_area"] == area]
    for i in sorted(ordered[:want]):
        relabel(i, "label_confusion", {**truth[i], "category": b})

    n_ann = int(cfg["annotators"])
    biased = f"a{n_ann}"
    annotators = []
    for i in range(len(rows)):
        in_queue = i in truth and truth[i]["product_area"] == cfg["biased_queue"]
        if in_queue and rng.random() < float(cfg["biased_queue_share"]):
            annotators.append(biased)
        else:
            annotators.append(f"a{rng.randint(1, n_ann)}")
    field = cfg["biased_field"]
    levels = _LEVELS[field]
    for i in free:
        if i in taken or annotators[i] != biased:
            continue
        k = levels.index(truth[i][field])
        if k + 1 < len(levels):
            relabel(i, "biased_annotator", {**truth[i], field: levels[k + 1]}, annotator=biased)
    out.sort(key=lambda p: p["row"])
    return out, annotators


# --------------------------------------------------------------------------
# Bundled sample set
# --------------------------------------------------------------------------

_MALFORMED_LINE = 75  # 1-based line of tickets_openai.jsonl that is cut short


def _tool_turns(item: Mapping[str, Any], call_id: str, rng: random.Random) -> list[dict[str, Any]]:
    """A tool-using conversation: call lookup_cluster, read the result, answer."""
    match = _CLUSTER_RE.search(item["ticket"])
    if match is None:
        raise ValueError("tool-call rows need a ticket that names a cluster")
    cluster = match.group(0)
    result = {
        "cluster": cluster,
        "status": rng.choice(("healthy", "degraded")),
        "region": rng.choice(_REGIONS),
        "version": f"{rng.choice((23, 24))}.{rng.randint(1, 4)}.{rng.randint(0, 9)}",
        "nodes": rng.randint(3, 12),
    }
    call = {
        "id": call_id,
        "type": "function",
        "function": {
            "name": "lookup_cluster",
            "arguments": json.dumps({"cluster": cluster}),
        },
    }
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": item["ticket"]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
        {"role": "assistant", "content": assistant_text(item)},
    ]


def _locate(file: str, row: int) -> dict[str, Any]:
    """Where a row lives: 1-based ``line`` for JSONL, 0-based ``index`` else."""
    if file.endswith(".jsonl"):
        return {"file": file, "line": row + 1 + (row + 1 >= _MALFORMED_LINE)}
    return {"file": file, "index": row}


def _file_problems(file: str, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for problem in problems:
        located = _locate(file, problem["row"])
        for key in ("duplicate_of", "source"):
            if isinstance(problem.get(key), int):
                problem[key] = _locate(file, problem[key])
        located.update((k, v) for k, v in problem.items() if k != "row")
        out.append(located)
    return out


def _clean_rows(problems: Sequence[Mapping[str, Any]], n_rows: int) -> list[int]:
    dirty = {p["row"] for p in problems}
    return [i for i in range(n_rows) if i not in dirty]


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write_sample_set(out_dir: Path, seed: int = 7) -> dict[str, Any]:
    """Write the bundled sample set and its ``ground_truth.json`` to ``out_dir``.

    Files: ``tickets_openai.jsonl`` (150 lines, line 75 malformed, two
    tool-call rows), ``tickets_sharegpt.json`` (120), ``tickets_alpaca.json``
    (100) and ``tickets_alpaca.parquet`` (50). Returns a summary with row
    counts, byte sizes and problem counts per kind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"sample:{seed}")
    # One unique stream for all files, so the only cross-file duplicates are
    # the planted ones.
    stream = _iter_items(random.Random(seed), f"s{seed}")

    # -- tickets_openai.jsonl -------------------------------------------------
    tool_items: list[dict[str, Any]] = []
    while len(tool_items) < 2:
        item = next(stream)
        if _CLUSTER_RE.search(item["ticket"]):
            tool_items.append(item)
    tool_extra = [
        (_tool_turns(item, f"call_{rng.getrandbits(40):010x}", rng), {"kind": "tool_call"}) for item in tool_items
    ]
    openai_counts = {
        "exact_duplicate": 4,
        "near_duplicate": 3,
        "pii": 4,
        "assistant_first": 2,
        "double_user": 2,
        "empty_answer": 2,
        "overlong": 1,
        "wrong_label": 2,
    }
    base = list(islice(stream, 149 - 2 - 7))
    openai_turns, found = _inject(base, openai_counts, rng, extra=tool_extra)
    tool_rows = [p["row"] for p in found if p["kind"] == "tool_call"]
    openai_problems = [p for p in found if p["kind"] != "tool_call"]
    openai_clean = [i for i in _clean_rows(found, len(openai_turns)) if i not in tool_rows]
    lines = [json.dumps(_render(turns, "openai"), ensure_ascii=False) for turns in openai_turns]
    broken = json.dumps(to_dialect(next(stream), "openai"), ensure_ascii=False)
    lines.insert(_MALFORMED_LINE - 1, broken[: len(broken) * 3 // 5])

    # -- tickets_sharegpt.json -------------------------------------------------
    origin = rng.choice(openai_clean)
    cross = {
        "kind": "exact_duplicate",
        "duplicate_of": _locate("tickets_openai.jsonl", origin),
        "cross_file": True,
        "cross_dialect": True,
    }
    sharegpt_counts = {
        "exact_duplicate": 3,
        "near_duplicate": 3,
        "pii": 3,
        "assistant_first": 1,
        "double_user": 1,
        "empty_answer": 2,
        "overlong": 1,
    }
    base = list(islice(stream, 120 - 1 - 6))
    sharegpt_turns, sharegpt_problems = _inject(base, sharegpt_counts, rng, extra=[(openai_turns[origin], cross)])
    sharegpt_rows = [_render(turns, "sharegpt") for turns in sharegpt_turns]

    # -- tickets_alpaca.json and tickets_alpaca.parquet --------------------------
    alpaca_counts = {
        "exact_duplicate": 3,
        "near_duplicate": 2,
        "pii": 2,
        "empty_answer": 2,
        "wrong_label": 1,
    }
    base = list(islice(stream, 100 - 5))
    alpaca_turns, alpaca_problems = _inject(base, alpaca_counts, rng, system=False)
    alpaca_rows = [_render(turns, "alpaca") for turns in alpaca_turns]

    origin = rng.choice(_clean_rows(alpaca_problems, len(alpaca_turns)))
    cross = {
        "kind": "exact_duplicate",
        "duplicate_of": _locate("tickets_alpaca.json", origin),
        "cross_file": True,
        "cross_dialect": False,
    }
    parquet_counts = {
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "pii": 1,
        "empty_answer": 1,
    }
    base = list(islice(stream, 50 - 1 - 2))
    parquet_turns, parquet_problems = _inject(
        base, parquet_counts, rng, system=False, extra=[(alpaca_turns[origin], cross)]
    )
    parquet_rows = [_render(turns, "alpaca") for turns in parquet_turns]

    # -- write -----------------------------------------------------------------
    files = {
        "tickets_openai.jsonl": ("openai", "jsonl", len(lines)),
        "tickets_sharegpt.json": ("sharegpt", "json", len(sharegpt_rows)),
        "tickets_alpaca.json": ("alpaca", "json", len(alpaca_rows)),
        "tickets_alpaca.parquet": ("alpaca", "parquet", len(parquet_rows)),
    }
    (out_dir / "tickets_openai.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "tickets_sharegpt.json").write_text(_dump_json(sharegpt_rows), encoding="utf-8")
    (out_dir / "tickets_alpaca.json").write_text(_dump_json(alpaca_rows), encoding="utf-8")
    _write_parquet(out_dir / "tickets_alpaca.parquet", parquet_rows)

    problems: list[dict[str, Any]] = [
        {"file": "tickets_openai.jsonl", "line": _MALFORMED_LINE, "kind": "malformed_json"}
    ]
    problems += _file_problems("tickets_openai.jsonl", openai_problems)
    problems += _file_problems("tickets_sharegpt.json", sharegpt_problems)
    problems += _file_problems("tickets_alpaca.json", alpaca_problems)
    problems += _file_problems("tickets_alpaca.parquet", parquet_problems)
    pii_strings = [s for p in problems for s in p.get("strings", ())]
    counts: dict[str, int] = {}
    for problem in problems:
        kind = problem["kind"]
        if kind == "broken_structure":
            kind = f"broken_structure:{problem['subkind']}"
        counts[kind] = counts.get(kind, 0) + 1
    counts = dict(sorted(counts.items()))

    ground_truth: dict[str, Any] = {
        "seed": seed,
        "files": {
            name: {
                "dialect": dialect,
                "format": fmt,
                "rows": rows,
                "position": "line (1-based)" if fmt == "jsonl" else "index (0-based)",
            }
            for name, (dialect, fmt, rows) in files.items()
        },
        "problems": problems,
        "counts": counts,
        "pii_strings": list(dict.fromkeys(pii_strings)),
        "tool_call_rows": [_locate("tickets_openai.jsonl", r) for r in tool_rows],
    }
    (out_dir / "ground_truth.json").write_text(_dump_json(ground_truth), "utf-8")

    sizes = {name: (out_dir / name).stat().st_size for name in files}
    return {
        "out_dir": str(out_dir),
        "files": {name: {"rows": files[name][2], "bytes": sizes[name]} for name in files},
        "total_bytes": sum(sizes.values()) + (out_dir / "ground_truth.json").stat().st_size,
        "problem_counts": counts,
        "pii_strings": len(ground_truth["pii_strings"]),
    }


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
