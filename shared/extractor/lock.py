"""One extraction per table at a time, whoever starts it (extractor function, on-prem agent, CLI):
a lease object in GCS, `<prefix>/_locks/<target table>.json`, next to the snapshot folders but in
none of them (the loader acts on `_manifest.json` objects only and ignores it).

The lease holds the holder's id, host, boot id, pid and expiry in the object's metadata (read together with
its generation in one request) and, for people, as its JSON body. Every change is an upload with a
generation precondition, so of two extractions racing for a table exactly one wins:
- acquire: create with `if_generation_match=0`; if the object exists and its lease expired or was
  released, overwrite it with `if_generation_match=<the generation read>`;
- renew (every third of the lease, from a thread, and once more when the manifest's sequence is
  taken) and release: overwrite with the generation this holder wrote last. A failed precondition means another extraction took over an expired lease:
  the holder stops before writing its manifest (`Lease.check`).

A lease whose holder ran on this very machine (same host name, kernel boot id and pid namespace) in a process
that is gone (killed, crashed) is free at once: waiting out its expiry would skip, and acknowledge,
every request for the table meanwhile. A holder on another machine cannot be seen, so its lease
expires as before.

Release writes a released lease instead of deleting the object: fake-gcs-server ignores
preconditions on deletes, and an unconditional delete could remove a lease a taker has just won.
Real GCS enforces preconditions on every request, deletes included; it also counts an overwrite as a
delete, so the extractor's identity needs storage.objects.delete on the lock objects. Expiry is
compared with each host's own clock: keep extract.lock_lease_s well above the clock skew. Snapshot
sequences do not depend on the clocks agreeing: the lease carries the last one issued
(`Lease.next_sequence`).
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from google.api_core import exceptions as gexc

from shared import gcs, logs
from shared.clients import storage_client

log = logs.get(__name__)
LOCK_FOLDER = "_locks"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _process_space() -> str:
    """This machine's kernel boot id and this process's pid namespace (Linux): where a pid names the
    same process. Two containers on one host (even with one host name) have their own namespaces.
    '' where either is unknown, so no lease is freed early."""
    try:
        return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


BOOT_ID = _process_space()


def process_gone(pid: int) -> bool:
    """No process `pid` runs on this machine (a zombie counts as gone: it has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's process
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def lock_name(prefix: str, target_table: str) -> str:
    return f"{prefix}/{LOCK_FOLDER}/{target_table}.json"


@dataclass(frozen=True)
class LeaseRecord:
    """What the lock object says, with the generation that said it."""

    holder: str
    host: str
    pid: int
    expires_at: datetime
    released: bool
    generation: int
    sequence: int = 0  # the last snapshot sequence issued under this lock (0: none recorded)
    boot: str = ""  # the holder's boot id and pid namespace ('' when unknown)

    def free(self, now: datetime) -> bool:
        return self.released or self.expires_at <= now or self.holder_gone()

    def holder_gone(self) -> bool:
        """Held by a process of this machine that no longer runs."""
        return (bool(self.boot) and self.boot == BOOT_ID and self.host == socket.gethostname() and self.pid > 0
                and process_gone(self.pid))

    def describe(self) -> str:
        return f"extraction {self.holder} on {self.host} (pid {self.pid}) until {self.expires_at.isoformat()}"


class TableLocked(Exception):
    """Another extraction holds the table's lease: this one is skipped."""

    def __init__(self, table: str, holder: LeaseRecord) -> None:
        super().__init__(f"{table} is being extracted by {holder.describe()}")
        self.table = table
        self.holder = holder


class LeaseLost(RuntimeError):
    """The lease expired and another extraction took it over: this one must not write its manifest."""


def _metadata(holder: str, expires_at: datetime, released: bool, sequence: int) -> dict[str, str]:
    return {"holder": holder, "host": socket.gethostname(), "boot": BOOT_ID, "pid": str(os.getpid()),
            "expires_at": expires_at.isoformat(), "released": "true" if released else "false",
            "sequence": str(sequence)}


def _write(bucket: str, name: str, metadata: dict[str, str], if_generation_match: int) -> int:
    """The new generation; raises PreconditionFailed when the object is not at if_generation_match."""
    blob = storage_client().bucket(bucket).blob(name)
    blob.metadata = metadata
    with gcs.writing(bucket, name):
        blob.upload_from_string(json.dumps(metadata).encode(), content_type="application/json",
                                if_generation_match=if_generation_match)
    return int(blob.generation)


def read_lease(bucket: str, name: str) -> LeaseRecord | None:
    blob = storage_client().bucket(bucket).get_blob(name)
    if blob is None:
        return None
    fields = blob.metadata or {}
    try:
        return LeaseRecord(holder=fields["holder"], host=fields["host"], pid=int(fields["pid"]),
                           expires_at=datetime.fromisoformat(fields["expires_at"]),
                           released=fields["released"] == "true", generation=int(blob.generation),
                           sequence=int(fields.get("sequence", 0)), boot=fields.get("boot", ""))
    except (KeyError, ValueError):  # not written by this module: nobody holds it, take it over
        log.warning("lock object gs://%s/%s has no readable lease; treating it as expired", bucket, name)
        return LeaseRecord("unknown", "unknown", 0, datetime.min.replace(tzinfo=UTC), True, int(blob.generation))


class Lease:
    """A lease this process holds on one table."""

    def __init__(self, bucket: str, name: str, table: str, holder: str, lease_s: int, generation: int,
                 clock: Clock, sequence: int = 0) -> None:
        self.bucket, self.name, self.table, self.holder = bucket, name, table, holder
        self.lease_s, self.generation, self._clock, self.sequence = lease_s, generation, clock, sequence
        self._lost = threading.Event()
        self._writing = threading.Lock()  # the renewer thread and next_sequence both write the lease

    def next_sequence(self) -> int:
        """A snapshot sequence past every one issued under this lock before, by any host: the clock's
        microseconds, or one more than the last issued where a clock lags (another host's, or this
        one's stepped back), which would otherwise make the newer snapshot look stale to the loader.

        Taken right before the manifest is written, so it renews the lease there and then: a holder
        that was paused past its lease (its renewer not yet aware that another extraction took the
        table over) gets LeaseLost instead of writing a manifest of older data with a newer sequence;
        and the sequence is on record before the manifest exists."""
        self.sequence = max(int(self._clock().timestamp() * 1_000_000), self.sequence + 1)
        self.renew()
        return self.sequence

    def renew(self) -> None:
        self._replace(released=False)

    def release(self) -> None:
        """Never raises: a lease that cannot be released simply expires."""
        if self._lost.is_set():
            return
        try:
            self._replace(released=True)
        except LeaseLost:
            log.warning("lock of %s was taken over before release; left to its new holder", self.table)
        except (gexc.GoogleAPICallError, OSError) as error:  # requests' errors are OSErrors
            log.warning("lock of %s not released (%s); it expires in at most %d s", self.table, error, self.lease_s)

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost(f"the extraction lock of {self.table} expired and was taken over; snapshot abandoned")

    def _replace(self, *, released: bool) -> None:
        expires_at = self._clock() if released else self._clock() + timedelta(seconds=self.lease_s)
        try:
            with self._writing:
                self.generation = _write(self.bucket, self.name,
                                         _metadata(self.holder, expires_at, released, self.sequence), self.generation)
        except gexc.PreconditionFailed:
            self._lost.set()
            raise LeaseLost(f"the extraction lock of {self.table} was taken over by another extraction") from None


def acquire(bucket: str, name: str, table: str, holder: str, lease_s: int, clock: Clock = utc_now) -> Lease:
    """Takes the lease if nobody holds it (or its holder's lease expired); raises TableLocked otherwise."""
    for _ in range(3):  # the object may vanish between a failed create and the read (lifecycle rule)
        expected = sequence = 0
        current = read_lease(bucket, name)
        if current is not None:
            if not current.free(clock()):
                raise TableLocked(table, current)
            expected, sequence = current.generation, current.sequence
        try:
            generation = _write(bucket, name, _metadata(holder, clock() + timedelta(seconds=lease_s), False, sequence),
                                expected)
        except gexc.PreconditionFailed:
            continue
        if current is not None and not current.released:
            why = "whose process is gone" if current.expires_at > clock() else "expired"
            logs.event(log, f"took over the extraction lock of {table} from {current.describe()}: {why}",
                       level=logging.WARNING, lock="taken_over", previous_holder=current.holder,
                       previous_host=current.host)
        return Lease(bucket, name, table, holder, lease_s, generation, clock, sequence)
    current = read_lease(bucket, name)
    if current is None:
        raise RuntimeError(f"lock object gs://{bucket}/{name} keeps changing; try again")
    raise TableLocked(table, current)


class _Renewer:
    """Renews a lease every third of its duration until stopped or the lease is lost."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self._stop = threading.Event()
        context = contextvars.copy_context()  # keeps the log labels (run id, table) on its lines
        self._thread = threading.Thread(target=context.run, args=(self._run,), daemon=True,
                                        name=f"lease-{lease.table}")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self._lease.lease_s / 3):
            try:
                self._lease.renew()
            except LeaseLost as error:
                log.error("%s", error)
                return
            except (gexc.GoogleAPICallError, OSError) as error:
                log.warning("renewing the extraction lock of %s failed, trying again: %s", self._lease.table, error)


@contextmanager
def table_lock(bucket: str, prefix: str, target_table: str, holder: str, lease_s: int,
               clock: Clock = utc_now) -> Iterator[Lease]:
    """Holds the table's lease for the block, renewing it, and releases it after, also on error."""
    lease = acquire(bucket, lock_name(prefix, target_table), target_table, holder, lease_s, clock)
    try:
        with _Renewer(lease):
            yield lease
    finally:
        lease.release()
