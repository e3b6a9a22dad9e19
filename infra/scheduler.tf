# One Cloud Scheduler job per table group of the config file: it publishes an extract request
# naming the group's tables to extract-requests, where the extractor (agent or function) takes it.
# The message is what `matrix-sync` itself publishes (matrix_sync/agent.py request_extract):
# {"tables": [...], "deployment": "gs://<bucket>/<prefix>"}, plus the group for the logs. The
# deployment (this config's snapshot root, shared/topology.py snapshot_root) is also an attribute:
# an extractor or agent of another deployment leaves the request alone.
locals {
  extract_request_deployment = "gs://${local.snapshot_bucket}/${local.snapshot_prefix}"
}

resource "google_cloud_scheduler_job" "extract" {
  for_each = local.table_groups

  name        = "extract-${each.key}"
  region      = var.region
  description = "matrix-sync: extract request for table group ${each.key} (${length(each.value)} tables)"
  schedule    = coalesce(try(var.scheduler.groups[each.key].schedule, null), var.scheduler.schedule)
  time_zone   = coalesce(try(var.scheduler.groups[each.key].time_zone, null), var.scheduler.time_zone)
  paused      = coalesce(try(var.scheduler.groups[each.key].paused, null), var.scheduler.paused)

  pubsub_target {
    topic_name = google_pubsub_topic.topic[local.topology.topics.extract_requests].id
    data       = base64encode(jsonencode({ group = each.key, tables = sort(each.value), deployment = local.extract_request_deployment }))
    attributes = {
      group      = each.key
      deployment = local.extract_request_deployment
    }
  }

  depends_on = [google_project_service.api, terraform_data.config_guard]
}

# One Cloud Scheduler job for the deep reconciliation: it publishes a reconcile request
# (local.deep_reconcile_request, shared/reconciler/request.py) to reconcile-requests, whose push
# subscription feeds the reconciler; the reconciler fans it out per table, rebuilds every row's
# hashes from its data, repairs what differs and alerts on what it cannot repair.
locals {
  deep_reconcile_scope = coalesce(join(", ", var.scheduler.deep_reconcile.tables), "every table")
}

resource "google_cloud_scheduler_job" "deep_reconcile" {
  name        = "deep-reconcile"
  region      = var.region
  description = "matrix-sync: deep reconciliation of ${local.deep_reconcile_scope}"
  schedule    = var.scheduler.deep_reconcile.schedule
  time_zone   = coalesce(var.scheduler.deep_reconcile.time_zone, var.scheduler.time_zone)
  paused      = coalesce(var.scheduler.deep_reconcile.paused, var.scheduler.paused)

  pubsub_target {
    topic_name = google_pubsub_topic.topic[local.topology.topics.reconcile_requests].id
    data       = base64encode(jsonencode(local.deep_reconcile_request))
    attributes = {
      request = local.deep_reconcile_request.request
    }
  }

  depends_on = [google_project_service.api, terraform_data.config_guard]
}
