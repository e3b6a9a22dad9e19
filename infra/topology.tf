# What the deployment is made of, as plain data: names, which functions run, which subscriptions
# feed them, which service accounts exist and every role each holds. Only variables and the config
# file go in; no resource or data source is referenced here, so tests/infra evaluates this file with
# `terraform console` (no provider needed) and compares the answers with shared/topology.py,
# matrix_sync/stack/bootstrap.py and the least-privilege design. The other files only iterate it.

locals {
  config_file = startswith(var.config_path, "/") ? var.config_path : "${path.module}/${var.config_path}"
  config      = yamldecode(file(local.config_file))

  # The config file's answers (shared/config.py's defaults where it leaves a key out).
  snapshot_bucket    = local.config.gcs.bucket
  snapshot_prefix    = trim(try(local.config.gcs.prefix, "snapshots"), "/")
  dataset_id         = local.config.bigquery.dataset
  staging_dataset_id = "${local.dataset_id}${local.topology.staging_dataset_suffix}"
  bigquery_location  = try(local.config.bigquery.location, "US")
  tables             = local.config.tables
  # group name -> names of the tables in it; a table without `group` is in "default"
  table_groups = { for t in local.tables : try(t.group, "default") => t.name... }
  # source.password_secret (shared/config.py): the extractor reads the password itself from this
  # secret version; without it the whole URL comes from the source-url secret (MATRIX_SOURCE__URL).
  source_password_secret = try(local.config.source.password_secret, null)
  source_secret          = local.source_password_secret == null ? "source-url" : "source-password"

  # Why this config cannot be deployed, if it cannot (main.tf refuses to plan then).
  config_problems = concat(
    try(local.config.bigquery.project, null) == var.project_id && try(local.config.pubsub.project, null) == var.project_id ? [] :
    ["bigquery.project and pubsub.project must both be ${var.project_id} (var.project_id): one project holds the deployment"],
    can(regex("://[^/@:]*:[^/@]*@", try(local.config.source.url, ""))) ?
    ["source.url holds a password: keep it in the Secret Manager secret (MATRIX_SOURCE__URL), never in the file"] : [],
    local.source_password_secret == null || can(regex("^projects/${var.project_id}/secrets/${var.name_prefix}-source-password/versions/(latest|[1-9][0-9]*)$", coalesce(local.source_password_secret, "-"))) ? [] :
    ["source.password_secret must name a version of the secret Terraform creates: projects/${var.project_id}/secrets/${var.name_prefix}-source-password/versions/latest"],
    [for g in keys(local.table_groups) : "table group ${jsonencode(g)} must be lowercase letters, digits and hyphens (it names a Cloud Scheduler job)" if !can(regex("^[a-z][a-z0-9-]{0,40}$", g))],
    [for g in keys(var.scheduler.groups) : "scheduler.groups names ${jsonencode(g)}, a group no table of the config is in" if !contains(keys(local.table_groups), g)],
    [for name, f in var.functions : "functions.${name}.timeout_seconds exceeds pubsub.ack_deadline_seconds: Pub/Sub would redeliver events still running" if f.timeout_seconds > var.pubsub.ack_deadline_seconds],
    local.bucket_loadable ? [] :
    ["snapshot_bucket.location ${var.snapshot_bucket.location} is not one BigQuery loads into a dataset in ${local.bigquery_location} (bigquery.location) from: put the bucket in ${local.bigquery_location}${lower(local.bigquery_location) == "eu" ? " or a European region" : ""}"],
    !var.extractor.deploy_as_function || local.source_password_secret != null || var.extractor.source_url_secret_ready ? [] :
    # (the resource address is text for people, spelled with format(): this file references no resource)
    [format("the extractor function starts only once the secret ${var.name_prefix}-source-url, which Terraform creates empty, holds a version (MATRIX_SOURCE__URL is its latest version): create it first (terraform apply -target='%s.secret[\"source-url\"]'), add the URL (gcloud secrets versions add ${var.name_prefix}-source-url --data-file=-), then set extractor.source_url_secret_ready = true", "google_secret_manager_secret")],
  )
  # BigQuery loads from a bucket in the dataset's own location or inside its multi-region (for EU: a
  # European region or dual-region); a dataset in the US multi-region loads from any location.
  bucket_loadable = (
    upper(local.bigquery_location) == "US" ||
    lower(var.snapshot_bucket.location) == lower(local.bigquery_location) ||
    (upper(local.bigquery_location) == "EU" && can(regex("^(europe-[a-z]+[0-9]+|eur[0-9]+)$", lower(var.snapshot_bucket.location))))
  )

  # shared/topology.py, spelled out.
  topology = {
    topics = {
      gcs_notifications  = "gcs-notifications"
      extract_requests   = "extract-requests"
      table_loaded       = "table-loaded"
      alerts             = "alerts"
      reconcile_requests = "reconcile-requests"
    }
    dead_letter_suffix          = "-dead-letter"
    push_subscription_suffix    = "-push"
    extractor_pull_subscription = "extractor-pull"
    staging_dataset_suffix      = "_staging"
    tables = {
      ledger          = "_sync_ledger"
      reconciliations = "_sync_reconciliations"
      validations     = "_sync_validations"
    }
    # function -> entry point and the topic whose messages it handles (topology.FUNCTIONS)
    functions = {
      loader     = { entry_point = "on_snapshot_event", trigger_topic = "gcs-notifications" }
      reconciler = { entry_point = "on_table_loaded", trigger_topic = "table-loaded" }
      validator  = { entry_point = "on_table_loaded", trigger_topic = "table-loaded" }
      extractor  = { entry_point = "on_extract_request", trigger_topic = "extract-requests" }
    }
    # push subscriptions beyond each function's trigger (topology.REQUEST_SUBSCRIPTIONS); the
    # function's one entry point tells the messages apart by their body
    request_subscriptions = {
      "reconciler-requests-push" = { function = "reconciler", topic = "reconcile-requests" }
    }
  }
  # matrix_sync/stack/bootstrap.py's pull subscriptions for people: alerts, and each dead-letter topic.
  alerts_subscription             = "alerts-sub"
  dead_letter_subscription_suffix = "-sub"
  sync_tables                     = toset(values(local.topology.tables))

  # The extractor is either a function or the on-prem agent, never both: both would extract twice.
  deployed_functions = {
    for name, fn in local.topology.functions : name => fn
    if name != "extractor" || var.extractor.deploy_as_function
  }
  extractor_account = var.extractor.deploy_as_function ? "extractor" : "agent"
  # A Serverless VPC Access connector's name is at most 25 characters; name_prefix may be 18.
  vpc_connector_name = substr("${var.name_prefix}-extractor", 0, 25)

  # consumer subscription -> the function (or agent) it feeds, its topic and how it delivers
  consumer_subscriptions = merge(
    {
      for name, fn in local.deployed_functions : "${name}${local.topology.push_subscription_suffix}" => {
        function = name
        topic    = fn.trigger_topic
        push     = true
      }
    },
    {
      for name, s in local.topology.request_subscriptions : name => {
        function = s.function
        topic    = s.topic
        push     = true
      } if contains(keys(local.deployed_functions), s.function)
    },
    var.extractor.deploy_as_function ? {} : {
      (local.topology.extractor_pull_subscription) = {
        function = "extractor"
        topic    = local.topology.topics.extract_requests
        push     = false
      }
    },
  )
  # one dead-letter topic per consumer: <function>-dead-letter
  dead_letter_topics = toset([for s in values(local.consumer_subscriptions) : s.function])

  # What the deep-reconcile Cloud Scheduler job publishes to reconcile-requests
  # (shared/reconciler/request.py): every table of the config, or var.scheduler.deep_reconcile.tables.
  deep_reconcile_request = {
    request        = "reconcile"
    deep           = true
    project        = local.config.bigquery.project
    dataset        = local.dataset_id
    pubsub_project = local.config.pubsub.project
    tables         = var.scheduler.deep_reconcile.tables
    requested_by   = "schedule"
  }

  # Environment of every function. The functions learn their target (project, dataset, topics)
  # from each snapshot's manifest, not from the environment.
  runtime = "python312"
  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    MATRIX_ENVIRONMENT   = var.environment
    MATRIX_LOG_LEVEL     = var.log_level
  }
  # The extractor reads the config file (shared/extractor/handler.py: MATRIX_CONFIG), mounted from
  # Secret Manager, and the source URL with its password from MATRIX_SOURCE__URL.
  extractor_config_dir  = "/etc/matrix-sync"
  extractor_config_file = "matrix-sync.yaml"
  extractor_env = tomap({
    MATRIX_CONFIG = "${local.extractor_config_dir}/${local.extractor_config_file}"
  })
  # variable -> key of local.secrets; none when the extractor reads source.password_secret itself
  extractor_secret_env = local.source_password_secret == null ? tomap({
    MATRIX_SOURCE__URL = "source-url"
  }) : tomap({})
  # Per-table settings documents (shared/table_settings.py), set only where given: unset, the code's
  # defaults apply.
  settings_env = {
    validator  = var.validation_settings == "" ? tomap({}) : tomap({ MATRIX_VALIDATION = var.validation_settings })
    reconciler = var.reconcile_settings == "" ? tomap({}) : tomap({ MATRIX_RECONCILE = var.reconcile_settings })
  }
  function_env = {
    for name in keys(local.deployed_functions) :
    name => merge(local.common_env, name == "extractor" ? local.extractor_env : tomap({}), lookup(local.settings_env, name, tomap({})))
  }

  # Secret Manager secrets (ids: <name_prefix>-<key>); values are added by people (secrets.tf).
  secrets = merge(
    local.source_password_secret == null ?
    { "source-url" = "SQLAlchemy URL of the Matrix SQL Server, with the password (MATRIX_SOURCE__URL)" } :
    { "source-password" = "Password of the Matrix SQL Server login, read by the extractor (source.password_secret)" },
    var.extractor.deploy_as_function ? tomap({ config = "The matrix-sync config file, mounted into the extractor function (MATRIX_CONFIG)" }) : tomap({}),
  )

  # Service accounts (ids: <name_prefix>-<key>).
  service_accounts = merge(
    { for name in keys(local.deployed_functions) : name => "matrix-sync ${name} function" },
    var.extractor.deploy_as_function ? tomap({}) : tomap({ agent = "matrix-sync on-prem extractor agent (matrix-sync agent)" }),
    {
      push  = "Pub/Sub push to the matrix-sync functions"
      build = "Builds the matrix-sync functions' containers"
    },
  )

  # Every role every service account holds: (account, role, scope[, condition]). Scopes:
  # project | dataset:target|staging | table:<results table> | bucket:snapshots|sources |
  # topic:<topic> | subscription:<subscription> | secret:<key of local.secrets> |
  # function:<function> (Cloud Run invoker). Conditions are named in iam.tf.
  grant_list = concat(
    [
      # loader: stage parts, MERGE into the target tables, write the ledger, write each delta's
      # compacted key index (new objects only, never an overwrite), announce table-loaded, then
      # delete superseded compacted index parts (<prefix>/.../_index/*.compacted.parquet) and nothing else
      { account = "loader", role = "roles/bigquery.jobUser", scope = "project" },
      { account = "loader", role = "roles/bigquery.dataEditor", scope = "dataset:target" },
      { account = "loader", role = "roles/bigquery.dataEditor", scope = "dataset:staging" },
      { account = "loader", role = "roles/storage.objectViewer", scope = "bucket:snapshots" },
      { account = "loader", role = "roles/storage.objectCreator", scope = "bucket:snapshots", condition = "snapshot-objects-only" },
      { account = "loader", role = "roles/storage.objectUser", scope = "bucket:snapshots", condition = "compacted-index-parts-only" },
      { account = "loader", role = "roles/pubsub.publisher", scope = "topic:table-loaded" },
      { account = "loader", role = "roles/pubsub.publisher", scope = "topic:alerts" },
      # reconciler: read the ledger and the manifest, stage the snapshot to diff it on a mismatch,
      # repair the table (delete extra rows, re-stamp stale hashes), write its results table,
      # request a repair extraction, fan a reconcile request out per table, alert
      { account = "reconciler", role = "roles/bigquery.jobUser", scope = "project" },
      { account = "reconciler", role = "roles/bigquery.dataEditor", scope = "dataset:target" },
      { account = "reconciler", role = "roles/bigquery.dataEditor", scope = "dataset:staging" },
      { account = "reconciler", role = "roles/bigquery.dataEditor", scope = "table:_sync_reconciliations" },
      { account = "reconciler", role = "roles/storage.objectViewer", scope = "bucket:snapshots" },
      { account = "reconciler", role = "roles/pubsub.publisher", scope = "topic:extract-requests" },
      { account = "reconciler", role = "roles/pubsub.publisher", scope = "topic:reconcile-requests" },
      { account = "reconciler", role = "roles/pubsub.publisher", scope = "topic:alerts" },
      # validator: the same, with its own results table
      { account = "validator", role = "roles/bigquery.jobUser", scope = "project" },
      { account = "validator", role = "roles/bigquery.dataViewer", scope = "dataset:target" },
      { account = "validator", role = "roles/bigquery.dataEditor", scope = "table:_sync_validations" },
      { account = "validator", role = "roles/storage.objectViewer", scope = "bucket:snapshots" },
      { account = "validator", role = "roles/pubsub.publisher", scope = "topic:alerts" },
      # extractor (function or agent): write snapshots, read the last one back (delta), read the ledger
      { account = local.extractor_account, role = "roles/storage.objectCreator", scope = "bucket:snapshots", condition = "snapshot-objects-only" },
      { account = local.extractor_account, role = "roles/storage.objectViewer", scope = "bucket:snapshots", condition = "snapshot-objects-only" },
      # overwriting an object is a delete in GCS: only each table's lock and last-outcome record
      # (<prefix>/_locks/, <prefix>/_extractions/) may be overwritten
      { account = local.extractor_account, role = "roles/storage.objectUser", scope = "bucket:snapshots", condition = "extraction-state-only" },
      { account = local.extractor_account, role = "roles/bigquery.jobUser", scope = "project" },
      { account = local.extractor_account, role = "roles/bigquery.dataViewer", scope = "dataset:target" },
      # ... and read the source's credentials: that one secret, not the project's secrets
      { account = local.extractor_account, role = "roles/secretmanager.secretAccessor", scope = "secret:${local.source_secret}" },
      # ... and alert on a table whose definition cannot be snapshotted
      { account = local.extractor_account, role = "roles/pubsub.publisher", scope = "topic:alerts" },
      # build: what Cloud Build needs to turn a source archive into the function's container
      { account = "build", role = "roles/logging.logWriter", scope = "project" },
      { account = "build", role = "roles/artifactregistry.writer", scope = "project" },
      { account = "build", role = "roles/storage.objectViewer", scope = "project", condition = "function-source-buckets-only" },
    ],
    # push: invoke the functions, nothing else
    [for name in keys(local.deployed_functions) : { account = "push", role = "roles/run.invoker", scope = "function:${name}" }],
    var.extractor.deploy_as_function ? [
      { account = "extractor", role = "roles/secretmanager.secretAccessor", scope = "secret:config" },
      ] : [
      { account = "agent", role = "roles/pubsub.subscriber", scope = "subscription:${local.topology.extractor_pull_subscription}" },
    ],
  )

  # The people (or automation) of var.operators who run the operator commands (README "Commands"):
  # the roles each of them holds, in grant_list's scopes: (role, scope[, condition]).
  # <function>-dead-letter-sub for each dead-letter topic, and the topics dead letters came from
  operator_dead_letter_subscriptions = [for fn in sort(local.dead_letter_topics) : "${fn}${local.topology.dead_letter_suffix}${local.dead_letter_subscription_suffix}"]
  operator_roles = concat(
    [
      # status, report, validate, reconcile, compare-keys, delete, truncate, create-tables: queries
      { role = "roles/bigquery.jobUser", scope = "project" },
      # delete/truncate and compare-keys --repair change rows and write the ledger; validate --record
      # writes _sync_validations; reconcile repairs and writes _sync_reconciliations; create-tables --apply
      { role = "roles/bigquery.dataEditor", scope = "dataset:target" },
      # reconcile stages the snapshot to diff it; compare-keys writes its hash table and the keys to delete
      { role = "roles/bigquery.dataEditor", scope = "dataset:staging" },
      # manifests and key indexes (reconcile, validate), last outcomes _extractions/ (status, report), leases _locks/
      { role = "roles/storage.objectViewer", scope = "bucket:snapshots", condition = "snapshot-objects-only" },
      # compare-keys --repair extracts the differing tables again (full snapshots), as the agent does:
      # new objects under the prefix, and only the lease and last outcome overwritten
      { role = "roles/storage.objectCreator", scope = "bucket:snapshots", condition = "snapshot-objects-only" },
      { role = "roles/storage.objectUser", scope = "bucket:snapshots", condition = "extraction-state-only" },
    ],
    # request, reconcile --publish, reconcile's repair requests and alerts, and dead-letters --replay
    # (each letter goes back to the topic of the subscription that gave up on it)
    [for topic in sort(distinct(concat(
      [local.topology.topics.extract_requests, local.topology.topics.reconcile_requests, local.topology.topics.alerts],
      [for s in values(local.consumer_subscriptions) : s.topic],
    ))) : { role = "roles/pubsub.publisher", scope = "topic:${topic}" }],
    # dead-letters: looks each subscription up (pubsub.subscriptions.get), pulls and hands back
    # (listing), acknowledges (--replay, --discard)
    [for sub in local.operator_dead_letter_subscriptions : { role = "roles/pubsub.viewer", scope = "subscription:${sub}" }],
    [for sub in local.operator_dead_letter_subscriptions : { role = "roles/pubsub.subscriber", scope = "subscription:${sub}" }],
  )
  # member -> each role of operator_roles (iam.tf applies them with the service accounts' grants)
  operator_grant_list = flatten([for member in var.operators : [for g in local.operator_roles : merge(g, { member = member })]])
}
