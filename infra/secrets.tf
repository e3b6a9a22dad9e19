# Secrets. Terraform creates the secrets, never their values where they are secret: the source's
# credentials are added by a person, so they are in no state file. One of two ways (topology.tf):
#
# - the config names source.password_secret: projects/<project>/secrets/matrix-sync-source-password/versions/latest
#   (preferred). The secret holds the password alone; the extractor (function or on-prem agent)
#   reads it at connect time, and its identity may access that one secret:
#     printf '%s' 'PASSWORD' | gcloud secrets versions add matrix-sync-source-password --data-file=-
# - otherwise the secret matrix-sync-source-url holds the whole URL, password included; the extractor
#   function gets it as MATRIX_SOURCE__URL, which overrides source.url of the config file:
#     printf '%s' 'mssql+pymssql://etl_reader:PASSWORD@matrix-db.corp:1433/Matrix' |
#       gcloud secrets versions add matrix-sync-source-url --data-file=-
#
# A cloud-hosted extractor also reads the config file itself from the "config" secret (it holds no
# password: main.tf refuses a config whose source.url has one).

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  secret_id = "${var.name_prefix}-${each.key}"
  annotations = {
    description = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_version" "config" {
  count = var.extractor.deploy_as_function ? 1 : 0

  secret      = google_secret_manager_secret.secret["config"].id
  secret_data = file(local.config_file)

  depends_on = [terraform_data.config_guard]
}
