# Serverless VPC access for a cloud-hosted extractor, which must reach the on-prem SQL Server over
# the VPC (Interconnect or VPN). Not created for the on-prem agent, which needs only outbound HTTPS.

locals {
  create_connector = var.extractor.deploy_as_function && var.network.create_connector
  vpc_connector = (
    !var.extractor.deploy_as_function ? null :
    var.network.create_connector ? google_vpc_access_connector.extractor[0].id :
    var.network.existing_connector
  )
}

resource "google_vpc_access_connector" "extractor" {
  count = local.create_connector ? 1 : 0

  name          = local.vpc_connector_name
  region        = var.region
  network       = var.network.network
  ip_cidr_range = var.network.ip_cidr_range
  machine_type  = var.network.machine_type
  min_instances = var.network.min_instances
  max_instances = var.network.max_instances

  depends_on = [google_project_service.api]
}
