output "snapshot_bucket" {
  description = "Bucket the extractor writes snapshots to (the config's gcs.bucket)."
  value       = google_storage_bucket.snapshots.name
}

output "snapshot_prefix" {
  description = "Object prefix of the snapshots, and of the bucket notification."
  value       = local.snapshot_prefix
}

output "topics" {
  description = "Topic name -> id, dead-letter topics included."
  value = merge(
    { for name, topic in google_pubsub_topic.topic : name => topic.id },
    { for fn, topic in google_pubsub_topic.dead_letter : topic.name => topic.id },
  )
}

output "subscriptions" {
  description = "Consumer subscription -> its dead-letter topic."
  value       = { for name, sub in google_pubsub_subscription.consumer : name => sub.dead_letter_policy[0].dead_letter_topic }
}

output "functions" {
  description = "Function name -> its URL (reachable only from inside the project: internal ingress)."
  value       = local.function_uris
}

output "service_accounts" {
  description = "Role of each service account -> its email."
  value       = { for key, account in google_service_account.account : key => account.email }
}

output "extractor_agent_service_account" {
  description = "Service account the on-prem agent runs as (null when the extractor is a function)."
  value       = var.extractor.deploy_as_function ? null : google_service_account.account["agent"].email
}

output "extractor_pull_subscription" {
  description = "Subscription the on-prem agent pulls extract requests from (null when the extractor is a function)."
  value       = var.extractor.deploy_as_function ? null : google_pubsub_subscription.consumer[local.topology.extractor_pull_subscription].id
}

output "datasets" {
  description = "Target and staging dataset ids."
  value       = local.datasets
}

output "scheduler_jobs" {
  description = "Table group -> the tables its job requests."
  value       = local.table_groups
}

output "source_url_secret" {
  description = "Secret Manager secret to which a person adds the source URL with its password (null when the config names source.password_secret)."
  value       = contains(keys(local.secrets), "source-url") ? google_secret_manager_secret.secret["source-url"].id : null
}

output "source_password_secret" {
  description = "Secret Manager secret to which a person adds the source password (null unless the config names source.password_secret)."
  value       = contains(keys(local.secrets), "source-password") ? google_secret_manager_secret.secret["source-password"].id : null
}
