"""Which Google Cloud a command talks to: the emulators named by the environment, a running
local stack, or the real services."""
from __future__ import annotations

import os
from pathlib import Path

from matrix_sync.stack import LocalStack, StackError
from shared.clients import reset_clients
from shared.config import Config

STACK_DIR_VARIABLE = "MATRIX_STACK_DIR"


def stack_root() -> Path:
    return Path(os.environ.get(STACK_DIR_VARIABLE, ".matrix-sync/stack"))


def local_stack() -> LocalStack:
    return LocalStack(root=stack_root())


def running_stack() -> LocalStack | None:
    """The local stack when all of it runs, None when none of it does. A stack partly down is an
    error: falling back to Google Cloud then would send a local config's writes to real projects."""
    stack = local_stack()
    statuses = stack.status()
    stopped = [s.name for s in statuses if not s.running]
    if len(stopped) == len(statuses):
        return None
    if stopped:
        raise StackError(f"the local stack in {stack.root} is partly down ({', '.join(stopped)} stopped): "
                         "`matrix-sync stack up` restarts what stopped, `matrix-sync stack down` stops the rest")
    return stack


def use_stack(stack: LocalStack) -> None:
    """Points every google-cloud client at the stack's emulators."""
    os.environ.update(stack.env())
    reset_clients()


def target_config(config: Config) -> str:
    """Points the clients at the local stack when one runs and no emulator variables are set, and
    creates there what the config names; returns a word for where the data goes."""
    stack = running_stack()
    if stack is None:
        return "emulators from the environment" if os.environ.get("BIGQUERY_EMULATOR_HOST") else "Google Cloud"
    use_stack(stack)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    return f"local stack in {stack.root}"


def notifications_project(config: Config) -> str:
    """The project the bucket's notifications go to: the config's, as Terraform deploys it; on the
    local stack, the stack's own (the GCS emulator publishes to one project)."""
    stack = running_stack()
    return config.pubsub.project if stack is None else stack.project
