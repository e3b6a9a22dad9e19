# Remote state in a GCS bucket, configured partially: the bucket and prefix differ per environment,
# so they are given at init time rather than written here.
#
#   terraform -chdir=infra init -backend-config=environments/dev/backend.hcl
#
# or, as cloudbuild.yaml does,
#
#   terraform -chdir=infra init \
#     -backend-config="bucket=$TF_STATE_BUCKET" -backend-config="prefix=matrix-sync/dev"
#
# The state bucket is created once by hand (it cannot hold its own state): versioning on, uniform
# bucket-level access, public access prevention enforced, e.g.
#
#   gcloud storage buckets create gs://ACME-tf-state --location=US --uniform-bucket-level-access \
#     --public-access-prevention && gcloud storage buckets update gs://ACME-tf-state --versioning
#
# GCS state locks itself; no lock table is needed.
terraform {
  backend "gcs" {}
}
