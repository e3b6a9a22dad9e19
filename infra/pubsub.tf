# Topics and subscriptions: the same as matrix_sync/stack/bootstrap.py creates on the emulator.
#
# Every consumer subscription is one Terraform owns, with a dead-letter policy: the functions are
# deployed without an Eventarc event_trigger because the subscription Eventarc creates for a gen2
# function cannot be given a dead-letter topic (hashicorp/terraform-provider-google#25069).
# Pub/Sub pushes to each function's URL instead, authenticated as the push service account;
# functions-framework turns the push body into the same messagePublished CloudEvent.

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  # condition name -> which subscriptions' undelivered messages it watches
  waiting_for_people = {
    "a message was dead-lettered" = "one_of(${join(", ", [for s in google_pubsub_subscription.dead_letter : jsonencode(s.name)])})"
    "an alert was raised"         = jsonencode(google_pubsub_subscription.alerts.name)
  }
}

resource "google_pubsub_topic" "topic" {
  # checkov:skip=CKV_GCP_83: messages carry table names, run ids and counts, never row data; Google-managed encryption is enough.
  for_each = toset(values(local.topology.topics))

  name                       = each.value
  message_retention_duration = var.pubsub.message_retention_duration

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: dead letters are the same small event messages as above.
  for_each = local.dead_letter_topics

  name                       = "${each.key}${local.topology.dead_letter_suffix}"
  message_retention_duration = var.pubsub.dead_letter_retention_duration

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "consumer" {
  for_each = local.consumer_subscriptions

  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds       = var.pubsub.ack_deadline_seconds
  message_retention_duration = var.pubsub.message_retention_duration
  # table-loaded messages carry ordering key = table: checks of one table run in load order
  enable_message_ordering = each.value.topic == local.topology.topics.table_loaded

  dynamic "push_config" {
    for_each = each.value.push ? [lookup(local.function_uris, each.value.function, null)] : []
    content {
      push_endpoint = push_config.value
      oidc_token {
        service_account_email = google_service_account.account["push"].email
        audience              = push_config.value
      }
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.function].id
    max_delivery_attempts = var.pubsub.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.pubsub.minimum_backoff
    maximum_backoff = var.pubsub.maximum_backoff
  }

  expiration_policy {
    ttl = "" # never expires, however quiet the table
  }

  depends_on = [
    google_pubsub_topic_iam_member.pubsub_agent_dead_letter_publisher,
    google_cloud_run_v2_service_iam_member.grant,
  ]
}

# Pull subscriptions for people: what was dead-lettered, and the alerts. They have no dead-letter
# policy of their own: nothing consumes them automatically.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.dead_letter_topics

  name                       = "${google_pubsub_topic.dead_letter[each.key].name}${local.dead_letter_subscription_suffix}"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.pubsub.dead_letter_retention_duration

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "alerts" {
  name                       = local.alerts_subscription
  topic                      = google_pubsub_topic.topic[local.topology.topics.alerts].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.pubsub.dead_letter_retention_duration

  expiration_policy {
    ttl = ""
  }
}

# What the Pub/Sub service agent needs for dead-lettering: publish to each dead-letter topic and
# subscribe to (acknowledge on) each subscription that forwards to one; and to mint the push
# service account's OIDC tokens.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter_publisher" {
  for_each = google_pubsub_topic.dead_letter

  project = var.project_id
  topic   = each.value.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_subscriber" {
  for_each = google_pubsub_subscription.consumer

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.account["push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# People hear of a message waiting in a dead-letter subscription (Pub/Sub gave up on it: run
# `matrix-sync dead-letters`, and `--replay` once the cause is fixed) or in the alerts one (a refused
# snapshot, a mismatch, a failed check) through var.alert_notification_channels.
resource "google_monitoring_alert_policy" "waiting_for_people" {
  display_name = "${var.name_prefix}: messages waiting for people"
  combiner     = "OR"

  dynamic "conditions" {
    for_each = local.waiting_for_people
    content {
      display_name = conditions.key
      condition_threshold {
        filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.label.subscription_id = ${conditions.value}"
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"
        aggregations {
          alignment_period   = "60s"
          per_series_aligner = "ALIGN_MAX"
        }
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Dead letters: `matrix-sync dead-letters --config FILE` lists them; fix the cause, then `--replay`. Alerts: pull `${google_pubsub_subscription.alerts.name}`; `matrix-sync status --config FILE` names the tables that need attention."
  }

  notification_channels = var.alert_notification_channels

  depends_on = [google_project_service.api]
}
