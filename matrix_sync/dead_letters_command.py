"""`matrix-sync dead-letters`: what Pub/Sub gave up delivering, and sending it again."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from matrix_sync import dead_letters as dl
from matrix_sync.console import console, errors, styled
from matrix_sync.environment import notifications_project, target_config
from matrix_sync.errors import one_line_errors
from matrix_sync.operator import EXPECTED_ERRORS
from shared.config import load_config
from shared.topology import FUNCTIONS


def letters_table(letters: list[dl.DeadLetter], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for heading in ("function", "first published", "dead-lettered", "attempts", "about"):
        table.add_column(heading)
    for letter in letters:
        table.add_row(letter.function, letter.first_published,
                      letter.dead_lettered_at.isoformat(timespec="seconds"), letter.delivery_attempts, letter.describe())
    return table


@click.command("dead-letters")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True,
              help="the YAML config naming source, tables and targets")
@click.option("--function", "functions", multiple=True, type=click.Choice(list(FUNCTIONS)),
              help="only this function's dead letters (repeatable); default all")
@click.option("--replay", is_flag=True, help="publish each again to the topic it came from, then remove it")
@click.option("--discard", is_flag=True, help="remove them unsent (with --yes)")
@click.option("--yes", is_flag=True, help="really discard")
@one_line_errors(*EXPECTED_ERRORS, dl.DeadLetterError)
def dead_letters(config_path: Path, functions: tuple[str, ...], replay: bool, discard: bool, yes: bool) -> None:
    """Lists the messages Pub/Sub dead-lettered after their last delivery attempt (exit 1 if any);
    --replay sends them again once their cause is fixed, --discard drops them."""
    if replay and discard:
        raise click.UsageError("--replay and --discard exclude each other")
    if discard and not yes:
        raise click.UsageError("--discard removes the messages for good: add --yes")
    config = load_config(config_path)
    target_config(config)
    chosen = list(functions) or list(FUNCTIONS)
    places = [(notifications_project(config) if function == "loader" else config.pubsub.project, function)
              for function in chosen]
    present = [(project, function) for project, function in places if functions or dl.readable(project, function)]
    handled: list[dl.DeadLetter] = []
    held: list[dl.DeadLetter] = []  # listed only, or another deployment's: handed back at the end
    unsent: list[tuple[dl.DeadLetter, str]] = []

    def ours(letter: dl.DeadLetter) -> bool:
        return letter.belongs_to(bucket=config.gcs.bucket, project=config.bigquery.project,
                                 dataset=config.bigquery.dataset)

    def on_batch(batch: list[dl.DeadLetter]) -> None:
        mine = [letter for letter in batch if ours(letter)]
        held.extend(letter for letter in batch if not ours(letter))
        if not (replay or discard):
            held.extend(mine)
            handled.extend(mine)
            return
        done = []
        for letter in mine:
            try:
                if replay:
                    dl.send_again(letter)
                done.append(letter)
            except dl.DeadLetterError as error:
                held.append(letter)
                unsent.append((letter, str(error)))
        dl.acknowledge(done)
        handled.extend(done)

    try:
        dl.each_batch(present, on_batch)
    finally:
        dl.release(held)
    others = len(held) - len(unsent) - (0 if replay or discard else len(handled))
    note = f" ({others} of other deployments sharing the Pub/Sub project left as they are)" if others else ""
    if not handled and not unsent:
        console.print(f"no dead letters for {', '.join(function for _, function in present)}{note}")
        return
    verb = "sent again" if replay else "discarded" if discard else "waiting"
    console.print(letters_table(handled, f"dead letters {verb}: {len(handled)}{note}"))
    for _letter, reason in unsent:
        errors.print(styled("not sent:", "bold red", f" {reason}"), highlight=False)
    if not (replay or discard):
        errors.print("after fixing their cause: matrix-sync dead-letters --config FILE --replay", highlight=False)
    if unsent or not (replay or discard):
        sys.exit(1)
