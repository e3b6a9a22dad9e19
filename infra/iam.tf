# Service accounts and every role they hold, applied from local.grant_list (topology.tf): one line
# per (account, role, scope); the resources below only iterate it, and tests/infra/test_iam.py
# compares it with the roles each account is meant to have. The members of var.operators get
# local.operator_grant_list through the same resources (tests/infra/test_operator_iam.py).

locals {
  # IAM conditions named by grant_list
  conditions = {
    snapshot-objects-only = {
      title       = "snapshot-objects-only"
      description = "Objects under the snapshot prefix and nothing else in the bucket"
      expression  = "resource.name.startsWith(\"projects/_/buckets/${local.snapshot_bucket}/objects/${local.snapshot_prefix}/\")"
    }
    extraction-state-only = {
      title       = "extraction-state-only"
      description = "The per-table extraction locks and outcome records, which the extractor overwrites"
      expression  = "resource.name.startsWith(\"projects/_/buckets/${local.snapshot_bucket}/objects/${local.snapshot_prefix}/_locks/\") || resource.name.startsWith(\"projects/_/buckets/${local.snapshot_bucket}/objects/${local.snapshot_prefix}/_extractions/\")"
    }
    compacted-index-parts-only = {
      title       = "compacted-index-parts-only"
      description = "The key index parts the loader compacts for each delta, which it deletes once superseded"
      expression  = "resource.name.startsWith(\"projects/_/buckets/${local.snapshot_bucket}/objects/${local.snapshot_prefix}/\") && resource.name.endsWith(\".compacted.parquet\")"
    }
    function-source-buckets-only = {
      title       = "function-source-buckets-only"
      description = "The sources bucket and the bucket Cloud Functions stages sources in"
      expression  = "resource.name.startsWith(\"projects/_/buckets/${var.project_id}-${var.name_prefix}-sources\") || resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
    }
  }

  # the service accounts' grants and, beside them, each operator's (var.operators: local.operator_grant_list)
  grants = merge(
    {
      for g in local.grant_list : "${g.account} ${g.role} ${g.scope}" => {
        account   = g.account
        member    = google_service_account.account[g.account].member
        role      = g.role
        kind      = split(":", g.scope)[0]
        target    = try(split(":", g.scope)[1], "")
        condition = try(local.conditions[g.condition], null)
      }
    },
    {
      for g in local.operator_grant_list : "${g.member} ${g.role} ${g.scope}" => {
        account   = "operator"
        member    = g.member
        role      = g.role
        kind      = split(":", g.scope)[0]
        target    = try(split(":", g.scope)[1], "")
        condition = try(local.conditions[g.condition], null)
      }
    },
  )
  datasets = {
    target  = google_bigquery_dataset.target.dataset_id
    staging = google_bigquery_dataset.staging.dataset_id
  }
  buckets = {
    snapshots = google_storage_bucket.snapshots.name
    sources   = google_storage_bucket.sources.name
  }
  # subscription name -> its name as created: the consumers' (by their key) and the dead-letter ones
  subscriptions = merge(
    { for key, s in google_pubsub_subscription.consumer : key => s.name },
    { for s in google_pubsub_subscription.dead_letter : s.name => s.name },
  )
}

resource "google_service_account" "account" {
  for_each = local.service_accounts

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value
  description  = "${each.value}; roles: infra/iam.tf local.grant_list"

  depends_on = [google_project_service.api]
}

resource "google_project_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "project" }

  project = var.project_id
  role    = each.value.role
  member  = each.value.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title       = condition.value.title
      description = condition.value.description
      expression  = condition.value.expression
    }
  }
}

resource "google_bigquery_dataset_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "dataset" }

  project    = var.project_id
  dataset_id = local.datasets[each.value.target]
  role       = each.value.role
  member     = each.value.member
}

resource "google_bigquery_table_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "table" }

  project    = var.project_id
  dataset_id = google_bigquery_table.sync[each.value.target].dataset_id
  table_id   = google_bigquery_table.sync[each.value.target].table_id
  role       = each.value.role
  member     = each.value.member
}

resource "google_storage_bucket_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "bucket" }

  bucket = local.buckets[each.value.target]
  role   = each.value.role
  member = each.value.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title       = condition.value.title
      description = condition.value.description
      expression  = condition.value.expression
    }
  }
}

resource "google_pubsub_topic_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "topic" }

  project = var.project_id
  topic   = google_pubsub_topic.topic[each.value.target].name
  role    = each.value.role
  member  = each.value.member
}

resource "google_pubsub_subscription_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "subscription" }

  project      = var.project_id
  subscription = local.subscriptions[each.value.target]
  role         = each.value.role
  member       = each.value.member
}

resource "google_secret_manager_secret_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "secret" }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.target].secret_id
  role      = each.value.role
  member    = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "grant" {
  for_each = { for key, g in local.grants : key => g if g.kind == "function" }

  project  = var.project_id
  location = google_cloudfunctions2_function.function[each.value.target].location
  name     = google_cloudfunctions2_function.function[each.value.target].name
  role     = each.value.role
  member   = each.value.member
}

# The on-prem agent authenticates through Workload Identity Federation (infra/README.md): the
# principals of var.extractor.agent_principals may act as its service account, and no key exists.
resource "google_service_account_iam_member" "agent_workload_identity" {
  for_each = var.extractor.deploy_as_function ? toset([]) : toset(var.extractor.agent_principals)

  service_account_id = google_service_account.account["agent"].name
  role               = "roles/iam.workloadIdentityUser"
  member             = each.value
}
