"""`matrix-sync dead-letters`: what Pub/Sub gave up delivering, and sending it again."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from matrix_sync import dead_letters as dl
from matrix_sync.console import console, errors, styled
from matrix_sync.environment import notifications_project
from matrix_sync.errors import one_line_errors
from matrix_sync.operator import CONFIG_OPTION, EXPECTED_ERRORS, targeted_config
from shared.topology import FUNCTIONS, snapshot_root


def letters_table(letters: list[dl.DeadLetter], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for heading in ("function", "first published", "dead-lettered", "attempts", "about"):
        table.add_column(heading)
    for letter in letters:
        table.add_row(letter.function, letter.first_published,
                      letter.dead_lettered_at.isoformat(timespec="seconds"), letter.delivery_attempts, letter.describe())
    return table


@click.command("dead-letters")
@CONFIG_OPTION
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
    config = targeted_config(config_path)
    chosen = list(functions) or list(FUNCTIONS)
    places = [(notifications_project(config) if function == "loader" else config.pubsub.project, function)
              for function in chosen]
    present = [(project, function) for project, function in places if functions or dl.readable(project, function)]
    handled: list[dl.DeadLetter] = []  # listed, sent again or discarded
    theirs: list[dl.DeadLetter] = []  # another deployment's: handed back untouched
    unsent: list[tuple[dl.DeadLetter, str]] = []

    root = snapshot_root(config.gcs.bucket, config.gcs.prefix)

    def on_batch(batch: list[dl.DeadLetter]) -> None:
        mine = []
        for letter in batch:
            ours = letter.belongs_to(root=root, project=config.bigquery.project, dataset=config.bigquery.dataset)
            (mine if ours else theirs).append(letter)
        if not (replay or discard):
            handled.extend(mine)
            return
        done = []
        for letter in mine:
            try:
                if replay:
                    dl.send_again(letter)
                done.append(letter)
            except dl.DeadLetterError as error:
                unsent.append((letter, str(error)))
        dl.acknowledge(done)
        handled.extend(done)

    try:
        dl.each_batch(present, on_batch)
    finally:  # what was only looked at stays for the next look
        dl.release(theirs + [letter for letter, _ in unsent] + ([] if replay or discard else handled))
    note = f" ({len(theirs)} of other deployments sharing the Pub/Sub project left as they are)" if theirs else ""
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
