# matrix-sync on Google Cloud: the event chain of README.md, created from two sources of truth.
#  - The names of topics, subscriptions, functions and tables are those of shared/topology.py
#    (spelled out in topology.tf, with every other decision as plain data; tests/infra evaluates it
#    and compares it with the Python module and with the local stack's bootstrap).
#  - What is replicated, and where, comes from the same YAML file the code reads (var.config_path).
#
# Files by concern: topology.tf (names, functions, subscriptions, service accounts and their
# roles, as data), storage.tf (snapshot and sources buckets, notification), pubsub.tf (topics,
# subscriptions, dead letters and the alert policy on them), functions.tf, bigquery.tf, scheduler.tf, iam.tf (the grants of
# topology.tf applied), secrets.tf, network.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  dist_dir = startswith(var.dist_dir, "/") ? var.dist_dir : "${path.module}/${var.dist_dir}"

  required_apis = toset(concat([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # data.google_project, project IAM; enable it before the first plan
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ], local.create_connector ? ["vpcaccess.googleapis.com"] : []))
}

resource "google_project_service" "api" {
  for_each = var.enable_apis ? local.required_apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Refuses, at plan time, a config file the deployment cannot serve (topology.tf: config_problems).
resource "terraform_data" "config_guard" {
  input = {
    tables = length(local.tables)
    groups = keys(local.table_groups)
  }

  lifecycle {
    precondition {
      condition     = length(local.config_problems) == 0
      error_message = "${local.config_file}: ${join("; ", local.config_problems)}"
    }
  }
}
