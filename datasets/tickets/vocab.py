"""Labels, prompts and the sentences a ticket is built from.

Each core sentence belongs to exactly one (area, category) pair and each cue to one priority,
which is what makes the labels recoverable from the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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
