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
