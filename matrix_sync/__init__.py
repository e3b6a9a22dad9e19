"""matrix-sync: keeps BigQuery an exact, verified copy of the on-prem SQL Server."""
