"""How an existing table follows a snapshot's schema: new columns and lossless widenings are
applied; anything that would lose or reinterpret data is refused before anything is changed."""
from __future__ import annotations

from dataclasses import dataclass, field

from google.cloud import bigquery

from shared import bigquery as bq
from shared import logs
from shared.clients import emulated
from shared.ddl import cluster_columns, emulator_refusal
from shared.ledger import Entry
from shared.loader.errors import RefusedError, SchemaChangeError
from shared.manifest import Manifest
from shared.schema import ROW_HASH_COLUMN

log = logs.get(__name__)
_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "DECIMAL": "NUMERIC",
            "BIGDECIMAL": "BIGNUMERIC"}
# BigQuery's lossless coercions that ALTER COLUMN SET DATA TYPE accepts, in order of width.
_EXACT_NUMBERS = ("INT64", "NUMERIC", "BIGNUMERIC")


@dataclass(frozen=True)
class SchemaPlan:
    create: bool = False
    added: tuple[bigquery.SchemaField, ...] = ()
    widened: dict[str, str] = field(default_factory=dict)
    kept: tuple[str, ...] = ()  # BigQuery's own columns, never in a snapshot: left as they are
    reordered: tuple[str, ...] = ()  # the stored hashes' column order, when the snapshot's differs


def hashed_columns(manifest: Manifest) -> tuple[str, ...]:
    """The data columns in the order the snapshot's row hashes cover them (the ledger records it)."""
    return tuple(c.bq_name for c in manifest.table_schema.columns)


# What an operator does about a refused schema change: the loader never drops a table or column itself.
_RELOAD = "; to take it, drop the BigQuery table: the next snapshot re-creates and reloads it"


def normalised(bq_type: str) -> str:
    return _ALIASES.get(bq_type.upper(), bq_type.upper())


def key_names(manifest: Manifest) -> tuple[str, ...]:
    """What the target is clustered by and the ledger records as its key; a keyless table's is its row hash."""
    if manifest.table_schema.keyless:
        return (ROW_HASH_COLUMN,)
    return tuple(c.bq_name for c in manifest.table_schema.key_columns)


def refuse_what_the_emulator_cannot_hold(manifest: Manifest) -> None:
    """On the local stack, a table the emulator cannot hold is refused at once (`emulator_refusal`)."""
    refusal = emulator_refusal(manifest.table_schema, manifest.target.table_id) if emulated() else None
    if refusal:
        raise RefusedError(refusal)


def plan(existing: bigquery.Table | None, manifest: Manifest, latest: Entry | None) -> SchemaPlan:
    """`latest` is the ledger's row of the last applied snapshot, if any: its key and hashed columns."""
    if existing is None:
        return SchemaPlan(create=True)
    table_id = manifest.target.table_id
    previous_columns = latest.hashed_columns if latest else None
    _check_key(existing, manifest, latest.key_columns if latest else None)
    wanted = {f.name.lower(): f for f in bq.table_fields(manifest.table_schema)}
    have = {f.name.lower(): f for f in existing.schema}
    missing = [f.name for name, f in have.items() if name not in wanted]
    kept = [] if previous_columns is None else [n for n in missing if n.lower() not in _lowered(previous_columns)]
    dropped = [n for n in missing if n not in kept]
    if dropped:
        origin = ("were in the last applied snapshot and are not in this one" if previous_columns is not None
                  else "are not in the snapshot (dropped or renamed in the source, or added in BigQuery)")
        raise SchemaChangeError(f"column(s) {', '.join(dropped)} of {table_id} {origin}: "
                                f"dropping columns is not applied automatically{_RELOAD}")
    stored_order = previous_columns or tuple(f.name for f in existing.schema)
    reordered = _moved(stored_order, hashed_columns(manifest))
    added, widened = [], {}
    for name, field_ in wanted.items():
        current = have.get(name)
        if current is None:
            added.append(field_)
            continue
        old, new = normalised(current.field_type), normalised(field_.field_type)
        if old == new:
            continue
        if old in _EXACT_NUMBERS and new in _EXACT_NUMBERS:
            if _EXACT_NUMBERS.index(new) < _EXACT_NUMBERS.index(old):
                raise SchemaChangeError(f"column {current.name} of {table_id} would narrow from {old} to "
                                        f"{new}{_RELOAD}")
            widened[current.name] = new
            continue
        raise SchemaChangeError(f"column {current.name} of {table_id} would change type from {old} to {new}: "
                                f"a different type family cannot be applied{_RELOAD}")
    return SchemaPlan(added=tuple(added), widened=widened, kept=tuple(kept), reordered=reordered)


def _lowered(names: tuple[str, ...]) -> set[str]:
    return {n.lower() for n in names}  # BigQuery column names are case-insensitive


def _moved(stored: tuple[str, ...], snapshot: tuple[str, ...]) -> tuple[str, ...]:
    """The columns both hold, in the stored hashes' order, when the snapshot has them in another
    order; else (). A row hash covers values by position, so after two columns swap names (or move)
    a row can hash as before while its columns' values changed. Columns only added or only dropped
    leave the common order alone."""
    common = _lowered(stored) & _lowered(snapshot)
    before = tuple(n for n in stored if n.lower() in common)
    after = tuple(n for n in snapshot if n.lower() in common)
    return before if [n.lower() for n in before] != [n.lower() for n in after] else ()


def _check_key(existing: bigquery.Table, manifest: Manifest, previous_key: tuple[str, ...] | None) -> None:
    new = key_names(manifest)
    if previous_key is not None:
        old, compared = previous_key, new
    elif existing.clustering_fields:
        # Tables this loader (or create-tables) creates are clustered by the key's first (up to four)
        # columns of types BigQuery clusters by.
        old, compared = tuple(existing.clustering_fields), tuple(cluster_columns(manifest.table_schema))
    else:
        return
    if [k.lower() for k in old] != [k.lower() for k in compared]:
        raise SchemaChangeError(f"key of {manifest.target.table_id} would change from ({', '.join(old)}) to "
                                f"({', '.join(new)}){_RELOAD}")


def apply(manifest: Manifest, schema_plan: SchemaPlan) -> None:
    table_id = manifest.target.table_id
    if schema_plan.create:
        # BigQuery refuses to cluster by FLOAT64, BYTES or TIME (a binary(16) key, say): those are left out.
        bq.create_table(table_id, bq.table_fields(manifest.table_schema),
                        clustering=cluster_columns(manifest.table_schema) or None)
        return
    if schema_plan.widened:
        bq.widen_columns(table_id, schema_plan.widened)
        log.warning("widened column(s) of %s: %s", table_id, schema_plan.widened)
    if schema_plan.added:
        bq.add_columns(table_id, list(schema_plan.added))
        log.warning("added column(s) %s to %s", [f.name for f in schema_plan.added], table_id)
    if schema_plan.kept:
        log.info("column(s) %s of %s were never in a snapshot: left as they are (NULL in new rows)",
                 list(schema_plan.kept), table_id)
