variable "project_id" {
  type        = string
  description = "Google Cloud project that holds the whole deployment (bucket, topics, functions, datasets). Must equal bigquery.project and pubsub.project of the config file."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  type        = string
  description = "Deployment environment; becomes a label on every resource and MATRIX_ENVIRONMENT in the functions."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Cloud Scheduler jobs and the VPC access connector."
  default     = "us-central1"
}

variable "config_path" {
  type        = string
  description = "The matrix-sync YAML config the code reads (tables, bucket, dataset); relative to infra/ unless absolute. Terraform reads it with yamldecode for the bucket, the dataset names and one scheduler job per table group."
}

variable "dist_dir" {
  type        = string
  description = "Folder holding the function archives built by `make package` (<function>.zip); relative to infra/ unless absolute."
  default     = "../dist"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of service account ids, secret ids and the sources bucket. Topic, subscription and function names are fixed by shared/topology.py and never prefixed."
  default     = "matrix-sync"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,17}$", var.name_prefix))
    error_message = "name_prefix must be 1-18 lowercase letters, digits or hyphens, starting with a letter (service account ids are at most 30 characters)."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels for every resource that takes labels (app and environment are always set)."
  default     = {}
}

variable "log_level" {
  type        = string
  description = "MATRIX_LOG_LEVEL of the functions."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) told when a message waits in a dead-letter or the alerts subscription. Empty: the alert policy still opens incidents in the console, but tells nobody."
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "alert_notification_channels must be names like projects/P/notificationChannels/ID."
  }
}

variable "operators" {
  type        = list(string)
  description = "IAM members who run the operator commands (matrix-sync status, report, validate, compare-keys, reconcile, delete, truncate, request, dead-letters, create-tables --apply): user:, group: or serviceAccount: members, e.g. \"group:dwh-operators@example.com\". Each gets local.operator_roles (topology.tf), scoped to the deployment's datasets, bucket prefix, topics and dead-letter subscriptions. Empty: nobody but the pipeline's service accounts."
  default     = []

  validation {
    condition     = alltrue([for m in var.operators : can(regex("^(user|group|serviceAccount):[^@:\\s]+@[^@:\\s]+\\.[^@:\\s]+$", m))])
    error_message = "operators must be IAM members with their type: user:alice@example.com, group:dwh-operators@example.com or serviceAccount:ops@PROJECT.iam.gserviceaccount.com (an address alone, like alice@example.com, is refused)."
  }

  validation {
    condition     = length(distinct(var.operators)) == length(var.operators)
    error_message = "operators names a member twice."
  }
}

variable "validation_settings" {
  type        = string
  description = "MATRIX_VALIDATION of the validator function: per-table thresholds as one JSON object, {\"default\": {...}, \"tables\": {\"<table>\": {...}}} (shared/validator/thresholds.py), e.g. jsonencode({ tables = { payments = { max_quarantined_rows = 5 } } }). Empty: the variable is not set and the code's defaults apply."
  default     = ""

  validation {
    condition     = var.validation_settings == "" || alltrue([for key in try(keys(jsondecode(var.validation_settings)), ["not a JSON object"]) : contains(["default", "tables"], key)])
    error_message = "validation_settings must be empty or a JSON object with \"default\" and/or \"tables\"."
  }
}

variable "reconcile_settings" {
  type        = string
  description = "MATRIX_RECONCILE of the reconciler function: per-table options as one JSON object, {\"default\": {...}, \"tables\": {\"<table>\": {...}}} (shared/reconciler/options.py), e.g. jsonencode({ default = { max_repair_keys = 5000 }, tables = { customers = { deep = true } } }). Empty: the variable is not set and the code's defaults apply."
  default     = ""

  validation {
    condition     = var.reconcile_settings == "" || alltrue([for key in try(keys(jsondecode(var.reconcile_settings)), ["not a JSON object"]) : contains(["default", "tables"], key)])
    error_message = "reconcile_settings must be empty or a JSON object with \"default\" and/or \"tables\"."
  }
}

variable "enable_apis" {
  type        = bool
  description = "Enable the Google APIs the deployment uses (left enabled on destroy)."
  default     = true
}

variable "snapshot_bucket" {
  type = object({
    location                  = optional(string, "US")
    storage_class             = optional(string, "STANDARD")
    force_destroy             = optional(bool, false)
    snapshot_retention_days   = optional(number, 30)
    staging_prefixes          = optional(list(string), ["staging/", "tmp/"])
    staging_retention_days    = optional(number, 2)
    noncurrent_retention_days = optional(number, 7)
  })
  description = <<-EOT
    The snapshot bucket (its name and snapshot prefix come from the config file's gcs section).
    snapshot_retention_days: objects under the snapshot prefix are deleted after this many days; a
    delta extraction whose base snapshot is gone falls back to a full one, so keep it above the
    interval between full snapshots. staging_prefixes: temporary objects, deleted after
    staging_retention_days. noncurrent_retention_days: overwritten or deleted versions are kept
    this long (versioning is always on).
  EOT
  default     = {}

  validation {
    condition     = var.snapshot_bucket.snapshot_retention_days >= 7 && var.snapshot_bucket.staging_retention_days >= 1 && var.snapshot_bucket.staging_retention_days < var.snapshot_bucket.snapshot_retention_days
    error_message = "snapshot_retention_days must be at least 7 and staging_retention_days between 1 and snapshot_retention_days - 1."
  }

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.snapshot_bucket.storage_class)
    error_message = "storage_class must be STANDARD, NEARLINE, COLDLINE or ARCHIVE."
  }
}

variable "bigquery" {
  type = object({
    deletion_protection            = optional(bool, true)
    delete_contents_on_destroy     = optional(bool, false)
    staging_table_expiration_hours = optional(number, 6)
  })
  description = "BigQuery datasets (target dataset name and location come from the config file; the staging dataset is <dataset>_staging). deletion_protection guards the ledger and results tables; staging tables expire after staging_table_expiration_hours (the loader's own TTL is 6 h)."
  default     = {}

  validation {
    condition     = var.bigquery.staging_table_expiration_hours >= 1
    error_message = "staging_table_expiration_hours must be at least 1 (BigQuery's minimum default table expiration is one hour)."
  }
}

variable "pubsub" {
  type = object({
    ack_deadline_seconds           = optional(number, 600)
    max_delivery_attempts          = optional(number, 5)
    minimum_backoff                = optional(string, "1s")
    maximum_backoff                = optional(string, "10s")
    message_retention_duration     = optional(string, "604800s")
    dead_letter_retention_duration = optional(string, "604800s")
  })
  description = "Delivery settings of every consumer subscription (the defaults are the local stack's, matrix_sync/stack/bootstrap.py). After max_delivery_attempts a message goes to <function>-dead-letter, whose pull subscription keeps it for dead_letter_retention_duration."
  default     = {}

  validation {
    condition     = var.pubsub.ack_deadline_seconds >= 10 && var.pubsub.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }

  validation {
    condition     = var.pubsub.max_delivery_attempts >= 5 && var.pubsub.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }

  validation {
    condition = alltrue([
      for d in [var.pubsub.message_retention_duration, var.pubsub.dead_letter_retention_duration] :
      can(regex("^[0-9]+s$", d)) && try(tonumber(trimsuffix(d, "s")) >= 600 && tonumber(trimsuffix(d, "s")) <= 604800, false)
    ])
    error_message = "Retention durations are seconds like \"604800s\", between 10 minutes and 7 days (a subscription's limits)."
  }
}

variable "functions" {
  type = object({
    loader = optional(object({
      memory          = optional(string, "1Gi")
      cpu             = optional(string)
      timeout_seconds = optional(number, 540)
      min_instances   = optional(number, 0)
      max_instances   = optional(number, 10)
    }), {})
    reconciler = optional(object({
      memory          = optional(string, "512Mi")
      cpu             = optional(string)
      timeout_seconds = optional(number, 540)
      min_instances   = optional(number, 0)
      max_instances   = optional(number, 10)
    }), {})
    validator = optional(object({
      memory          = optional(string, "512Mi")
      cpu             = optional(string)
      timeout_seconds = optional(number, 540)
      min_instances   = optional(number, 0)
      max_instances   = optional(number, 10)
    }), {})
    extractor = optional(object({
      memory          = optional(string, "2Gi")
      cpu             = optional(string, "1")
      timeout_seconds = optional(number, 540)
      min_instances   = optional(number, 0)
      max_instances   = optional(number, 4)
    }), {})
  })
  description = "Size and scaling of each Cloud Function (gen2): memory (e.g. 512Mi, 2Gi), vCPUs (null: what the memory size implies), timeout (at most the subscriptions' ack deadline), instance limits. Each instance handles one event at a time."
  default     = {}

  validation {
    condition = alltrue([
      for f in values(var.functions) :
      can(regex("^[0-9]+(Mi|Gi)$", f.memory)) && f.timeout_seconds >= 1 && f.timeout_seconds <= 3600 && f.min_instances >= 0 && f.max_instances >= 1 && f.min_instances <= f.max_instances
    ])
    error_message = "Each function needs memory like 512Mi or 2Gi, timeout_seconds in 1..3600 and 0 <= min_instances <= max_instances, max_instances >= 1."
  }
}

variable "extractor" {
  type = object({
    deploy_as_function      = optional(bool, false)
    agent_principals        = optional(list(string), [])
    source_url_secret_ready = optional(bool, false)
  })
  description = <<-EOT
    Where the extractor runs. deploy_as_function = false (default): the on-prem agent (`matrix-sync
    agent`) pulls extract requests from the extractor-pull subscription as its own service account.
    agent_principals: principals allowed to act as that service account through Workload Identity
    Federation, e.g. "principalSet://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/attribute.host/matrix-etl01".
    deploy_as_function = true: the extractor runs as a Cloud Function pushed to by extractor-push,
    reaching the SQL Server through the VPC access connector (var.network).
    source_url_secret_ready: a function reading the whole URL (no source.password_secret) gets it from
    the latest version of the source-url secret when it starts, and cannot start while that secret
    has none; the plan refuses to create it until this is true, i.e. until the URL was added
    (infra/README.md, "Secrets").
  EOT
  default     = {}

  validation {
    condition     = alltrue([for p in var.extractor.agent_principals : can(regex("^(principal|principalSet)://", p))])
    error_message = "agent_principals must be Workload Identity Federation principals (principal://... or principalSet://...)."
  }
}

variable "network" {
  type = object({
    create_connector   = optional(bool, false)
    existing_connector = optional(string)
    network            = optional(string, "default")
    ip_cidr_range      = optional(string, "10.8.0.0/28")
    machine_type       = optional(string, "e2-micro")
    min_instances      = optional(number, 2)
    max_instances      = optional(number, 3)
  })
  description = "Serverless VPC access for a cloud-hosted extractor (only used when extractor.deploy_as_function): create a connector in `network` with a /28 `ip_cidr_range`, or name an existing_connector (projects/P/locations/R/connectors/C). Egress to private ranges only goes through it."
  default     = {}

  validation {
    condition     = !(var.network.create_connector && var.network.existing_connector != null)
    error_message = "Set either network.create_connector or network.existing_connector, not both."
  }

  validation {
    condition     = can(cidrhost(var.network.ip_cidr_range, 0)) && endswith(var.network.ip_cidr_range, "/28")
    error_message = "network.ip_cidr_range must be a /28 range (a VPC access connector's size)."
  }
}

variable "scheduler" {
  type = object({
    schedule  = optional(string, "0 2 * * *")
    time_zone = optional(string, "Etc/UTC")
    paused    = optional(bool, false)
    groups = optional(map(object({
      schedule  = optional(string)
      time_zone = optional(string)
      paused    = optional(bool)
    })), {})
    deep_reconcile = optional(object({
      schedule  = optional(string, "0 4 * * 0")
      time_zone = optional(string)
      paused    = optional(bool)
      tables    = optional(list(string), [])
    }), {})
  })
  description = "Cloud Scheduler: one job per table group of the config file (a table's optional `group`, \"default\" when absent) publishes an extract request for the group's tables on `schedule` (cron, in time_zone). groups overrides schedule, time zone or pause per group; each key must be a group of the config. deep_reconcile: one job publishes a deep reconcile request (hashes rebuilt from the data in BigQuery, so values edited behind the pipeline's back are caught and repaired) on its own `schedule` (default Sundays 04:00) for `tables` (BigQuery or source names; empty: every replicated table); time zone and pause default to the extract jobs'."
  default     = {}
}
