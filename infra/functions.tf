# Cloud Functions (gen2): loader, reconciler, validator, and the extractor when
# var.extractor.deploy_as_function. Each runs as its own service account (iam.tf), from the archive
# `make package` built (storage.tf), and is invoked only by its push subscription (pubsub.tf):
# internal ingress, no public invoker. A failed event (non-2xx) is retried by Pub/Sub with backoff,
# then dead-lettered after pubsub.max_delivery_attempts.

locals {
  function_settings = {
    loader     = var.functions.loader
    reconciler = var.functions.reconciler
    validator  = var.functions.validator
    extractor  = var.functions.extractor
  }
  function_uris = { for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.deployed_functions

  name        = each.key
  location    = var.region
  description = "matrix-sync ${each.key}: handles ${each.value.trigger_topic} messages (entry point ${each.value.entry_point})"

  build_config {
    runtime         = local.runtime
    entry_point     = each.value.entry_point
    service_account = google_service_account.account["build"].id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = local.function_settings[each.key].memory
    available_cpu                    = local.function_settings[each.key].cpu
    timeout_seconds                  = local.function_settings[each.key].timeout_seconds
    min_instance_count               = local.function_settings[each.key].min_instances
    max_instance_count               = local.function_settings[each.key].max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.account[each.key].email
    environment_variables            = local.function_env[each.key]

    dynamic "secret_environment_variables" {
      for_each = each.key == "extractor" ? local.extractor_secret_env : tomap({})
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }

    dynamic "secret_volumes" {
      for_each = each.key == "extractor" ? ["config"] : []
      content {
        mount_path = local.extractor_config_dir
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_volumes.value].secret_id
        versions {
          version = "latest"
          path    = local.extractor_config_file
        }
      }
    }

    vpc_connector                 = each.key == "extractor" ? local.vpc_connector : null
    vpc_connector_egress_settings = each.key == "extractor" && local.vpc_connector != null ? "PRIVATE_RANGES_ONLY" : null
  }

  # the config file's secret version must exist before a revision that mounts its latest version
  depends_on = [
    google_project_service.api,
    google_project_iam_member.grant,
    google_storage_bucket_iam_member.grant,
    google_secret_manager_secret_iam_member.grant,
    google_secret_manager_secret_version.config,
  ]
}
