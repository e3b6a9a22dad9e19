"""Names of the topics, subscriptions and BigQuery tables the functions share.

The local stack's bootstrap and Terraform both create exactly these; tests compare them.
"""
from __future__ import annotations

GCS_NOTIFICATIONS_TOPIC = "gcs-notifications"
EXTRACT_REQUESTS_TOPIC = "extract-requests"
TABLE_LOADED_TOPIC = "table-loaded"
RECONCILE_REQUESTS_TOPIC = "reconcile-requests"  # scheduled (and operators') deep reconciliations
ALERTS_TOPIC = "alerts"
DEAD_LETTER_SUFFIX = "-dead-letter"
DEAD_LETTER_SUBSCRIPTION_SUFFIX = "-sub"

SNAPSHOT_PREFIX = "snapshots"
MANIFEST_NAME = "_manifest.json"
# An extract request names the deployment it is for by its snapshot root, gs://<bucket>/<prefix>, in
# its body and as an attribute: deployments sharing a Pub/Sub project share `extract-requests`.
DEPLOYMENT_FIELD = "deployment"

PIPELINE_TABLE_PREFIX = "_sync_"  # no replicated table may be named so
LEDGER_TABLE = "_sync_ledger"
RECONCILIATION_TABLE = "_sync_reconciliations"
VALIDATION_TABLE = "_sync_validations"
STAGING_DATASET_SUFFIX = "_staging"

# function name -> (entry point, topic that triggers it)
FUNCTIONS: dict[str, tuple[str, str]] = {
    "loader": ("on_snapshot_event", GCS_NOTIFICATIONS_TOPIC),
    "reconciler": ("on_table_loaded", TABLE_LOADED_TOPIC),
    "validator": ("on_table_loaded", TABLE_LOADED_TOPIC),
    "extractor": ("on_extract_request", EXTRACT_REQUESTS_TOPIC),
}


# Push subscriptions beyond each function's own trigger: subscription -> (function, topic). The
# function's one entry point tells the messages apart by their body.
REQUEST_SUBSCRIPTIONS: dict[str, tuple[str, str]] = {
    "reconciler-requests-push": ("reconciler", RECONCILE_REQUESTS_TOPIC),
}


def subscription_name(function: str) -> str:
    return f"{function}-push"


def dead_letter_topic(function: str) -> str:
    return f"{function}{DEAD_LETTER_SUFFIX}"


def dead_letter_subscription(function: str) -> str:
    """The pull subscription people read a function's dead letters from."""
    return f"{dead_letter_topic(function)}{DEAD_LETTER_SUBSCRIPTION_SUFFIX}"

# The on-prem extractor agent pulls extract requests instead of receiving pushes.
EXTRACTOR_PULL_SUBSCRIPTION = "extractor-pull"


def snapshot_root(bucket: str, prefix: str = SNAPSHOT_PREFIX) -> str:
    """gs://<bucket>/<prefix>: where a deployment's snapshots live, and what names the deployment."""
    return f"gs://{bucket.strip('/')}/{prefix.strip('/') or SNAPSHOT_PREFIX}"


def normalised_root(root: str) -> str:
    """A root as snapshot_root writes it: no trailing slash, the default prefix when it has none."""
    bucket, _, prefix = root.strip().removeprefix("gs://").partition("/")
    return snapshot_root(bucket, prefix)


def same_root(one: str, other: str) -> bool:
    return normalised_root(one) == normalised_root(other)


def under_root(uri: str, root: str) -> bool:
    """Whether the object `uri` (gs://bucket/name) lives under the snapshot root `root`."""
    return uri.startswith(normalised_root(root) + "/")


def manifest_root(manifest_uri: str) -> str | None:
    """The root a manifest lives under (<root>/<table>/<run_id>/_manifest.json), or None for a URI
    that is not a manifest's."""
    pieces = manifest_uri.rsplit("/", 3)
    if not manifest_uri.startswith("gs://") or len(pieces) != 4 or pieces[-1] != MANIFEST_NAME:
        return None
    root = pieces[0]
    return normalised_root(root) if root.count("/") >= 3 else None
