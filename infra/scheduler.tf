# One Cloud Scheduler job per table group of the config file: it publishes an extract request
# naming the group's tables to extract-requests, where the extractor (agent or function) takes it.
# The message is what `matrix-sync` itself publishes (matrix_sync/agent.py request_extract):
# {"tables": [...]}, plus the group for the logs.

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
    data       = base64encode(jsonencode({ group = each.key, tables = sort(each.value) }))
    attributes = {
      group = each.key
    }
  }

  depends_on = [google_project_service.api, terraform_data.config_guard]
}
