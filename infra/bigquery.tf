# The target dataset (config bigquery.dataset, in bigquery.location), its staging dataset, and the
# tables the functions share: the ledger and the two results tables, with the schemas of
# shared/ledger.py and shared/results.py (infra/schemas/*.json, generated from them and checked by
# tests/infra/test_schemas_in_sync.py).
#
# The replicated tables themselves are created by the loader from each snapshot's manifest: only
# the source reflection knows their columns, and the loader evolves them (ALTER TABLE ADD COLUMN).

resource "google_bigquery_dataset" "target" {
  # checkov:skip=CKV_GCP_81: Google-managed encryption; a CMEK would have to be readable by every function and the BigQuery service agent, out of scope here.
  dataset_id                 = local.dataset_id
  location                   = local.bigquery_location
  description                = "matrix-sync: the replicated Matrix tables, the ledger and the reconciliation and validation results"
  delete_contents_on_destroy = var.bigquery.delete_contents_on_destroy

  depends_on = [google_project_service.api]
}

resource "google_bigquery_dataset" "staging" {
  # checkov:skip=CKV_GCP_81: holds only short-lived staging copies of snapshots that are in GCS anyway.
  dataset_id                  = local.staging_dataset_id
  location                    = local.bigquery_location
  description                 = "matrix-sync: staging tables of the loader; each expires on its own"
  default_table_expiration_ms = var.bigquery.staging_table_expiration_hours * 3600 * 1000
  delete_contents_on_destroy  = true

  depends_on = [google_project_service.api]
}

resource "google_bigquery_table" "sync" {
  # checkov:skip=CKV_GCP_80: see CKV_GCP_81 on the dataset: Google-managed encryption.
  # checkov:skip=CKV_GCP_121: deletion protection is var.bigquery.deletion_protection, true unless an environment (dev) turns it off; checkov cannot see an optional() default.
  for_each = local.sync_tables

  dataset_id          = google_bigquery_dataset.target.dataset_id
  table_id            = each.key
  schema              = file("${path.module}/schemas/${each.key}.json")
  clustering          = ["table_id"] # as the code creates them (shared/ledger.py, shared/results.py)
  deletion_protection = var.bigquery.deletion_protection
}
