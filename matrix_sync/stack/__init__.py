"""Local stack: Pub/Sub, GCS and BigQuery emulators plus the function servers, wired like the cloud.

Used by `matrix-sync stack up|down|status|env|install` and by the test suite."""
from matrix_sync.stack.errors import StackError
from matrix_sync.stack.local import LocalStack, ServiceStatus
from matrix_sync.stack.ports import StackPorts

__all__ = ["LocalStack", "ServiceStatus", "StackError", "StackPorts"]
