"""The project's common library: config, logging, hashing, schema, type mapping and cloud adapters."""
