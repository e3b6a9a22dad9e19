terraform {
  # optional() defaults in object types need 1.3; terraform_data needs 1.4; check blocks 1.5.
  required_version = ">= 1.5, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.0, < 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, {
    app         = "matrix-sync"
    environment = var.environment
  })
}
