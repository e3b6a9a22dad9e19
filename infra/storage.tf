# The snapshot bucket (named by the config's gcs.bucket), its finalize notification into
# gcs-notifications, and the bucket holding the functions' source archives.

resource "google_storage_bucket" "snapshots" {
  # checkov:skip=CKV_GCP_62: access logs would be written to another bucket per request; Cloud Audit Logs (data access) are the access record here.
  name                        = local.snapshot_bucket
  location                    = var.snapshot_bucket.location
  storage_class               = var.snapshot_bucket.storage_class
  force_destroy               = var.snapshot_bucket.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  # Snapshots (parts, quarantine files, manifests, delta key indexes) are deleted after N days.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = var.snapshot_bucket.snapshot_retention_days
      matches_prefix = ["${local.snapshot_prefix}/"]
    }
  }

  # Temporary objects go sooner.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = var.snapshot_bucket.staging_retention_days
      matches_prefix = var.snapshot_bucket.staging_prefixes
    }
  }

  # Versions replaced or deleted are kept a few days for recovery, then removed.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.snapshot_bucket.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
  }

  lifecycle_rule {
    action {
      type = "AbortIncompleteMultipartUpload"
    }
    condition {
      age = 1
    }
  }

  depends_on = [google_project_service.api]
}

# OBJECT_FINALIZE of every object under the snapshot prefix; the loader acts on manifests only
# (written last, so their event means the snapshot is complete) and acknowledges the rest.
resource "google_storage_notification" "snapshots" {
  bucket             = google_storage_bucket.snapshots.name
  topic              = google_pubsub_topic.topic[local.topology.topics.gcs_notifications].id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = "${local.snapshot_prefix}/"

  depends_on = [google_pubsub_topic_iam_member.gcs_agent_publisher]
}

# Cloud Storage's service agent publishes the notifications.
data "google_storage_project_service_account" "gcs_agent" {
  project = var.project_id
}

resource "google_pubsub_topic_iam_member" "gcs_agent_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topic[local.topology.topics.gcs_notifications].name
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs_agent.member
}

# Source archives of the functions, uploaded by Terraform from dist/ (make package).
resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62: holds only build inputs written by Terraform itself; Cloud Audit Logs record access.
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.snapshot_bucket.location
  force_destroy               = true
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
  }

  depends_on = [google_project_service.api]
}

# Named by the archive's MD5, so a code change is a new object and the function redeploys, while an
# unchanged archive (make package is reproducible) changes nothing.
resource "google_storage_bucket_object" "source" {
  for_each = local.deployed_functions

  bucket       = google_storage_bucket.sources.name
  name         = "functions/${each.key}/${local.archive_md5[each.key]}.zip"
  source       = local.archives[each.key]
  content_type = "application/zip"

  lifecycle {
    precondition {
      condition     = fileexists(local.archives[each.key])
      error_message = "${local.archives[each.key]} is missing: run `make package` first."
    }
  }
}

locals {
  archives    = { for name in keys(local.deployed_functions) : name => "${local.dist_dir}/${name}.zip" }
  archive_md5 = { for name, path in local.archives : name => fileexists(path) ? filemd5(path) : "missing" }
}
