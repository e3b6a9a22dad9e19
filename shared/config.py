"""The one YAML file that says what is replicated where, plus environment overrides.

Environment variables `MATRIX_<SECTION>__<FIELD>` override the file, e.g. `MATRIX_SOURCE__URL` or
`MATRIX_GCS__BUCKET`. The source password is never read from the file: it comes from the environment
(`MATRIX_SOURCE__PASSWORD`, or a whole URL in `MATRIX_SOURCE__URL`) or from the Secret Manager
secret version named by `source.password_secret` (shared/credentials.py).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import url as sa_url

from shared import identifiers, secrets
from shared.topology import PIPELINE_TABLE_PREFIX

ENV_PREFIX = "MATRIX_"
PASSWORD_VARIABLE = f"{ENV_PREFIX}SOURCE__PASSWORD"
_SECRET_VERSION = re.compile(
    r"^projects/[a-z0-9][a-z0-9-]{0,62}/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)$")
_QUERY_PASSWORD = re.compile(r"(?i)[?&;](password|pwd|passwd)=")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    url: str = Field(description="SQLAlchemy URL, e.g. mssql+pymssql://user@host/Matrix or sqlite:///matrix.db")
    password: SecretStr | None = Field(
        default=None, description=f"the source password; only from the environment ({PASSWORD_VARIABLE})")
    password_secret: str | None = Field(
        default=None, description="Secret Manager version holding the password: projects/P/secrets/S/versions/V")
    connect_timeout_s: int = Field(default=15, ge=1)

    @field_validator("url")
    @classmethod
    def _looks_like_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///matrix.db")
        try:
            secrets.register(sa_url.make_url(value).password)
        except Exception:  # noqa: BLE001 - SQLAlchemy's errors quote the URL, password and all
            raise ValueError("is not a SQLAlchemy URL of the form dialect+driver://user@host:port/database "
                             "(the port a number, characters such as @ : / in the user or password "
                             "percent-encoded)") from None
        return value

    @field_validator("password")
    @classmethod
    def _mask_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secrets.register(value.get_secret_value())
        return value

    @field_validator("password_secret")
    @classmethod
    def _valid_secret_version(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_VERSION.match(value):
            raise ValueError(f"{value!r} is not a secret version: "
                             "projects/<project>/secrets/<secret>/versions/<number|latest>")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> SourceConfig:
        given = [name for name, present in (("a password in source.url", url_has_password(self.url)),
                                            (PASSWORD_VARIABLE, self.password is not None),
                                            ("source.password_secret", self.password_secret is not None)) if present]
        if len(given) > 1:
            raise ValueError(f"the password is given twice ({' and '.join(given)}): keep one")
        return self


def url_has_password(url: str) -> bool:
    """A password in the URL's user part or in its query string (password=, pwd=)."""
    if _QUERY_PASSWORD.search(url):
        return True
    try:
        return bool(sa_url.make_url(url).password)
    except (sa_exc.ArgumentError, ValueError):  # not parsable as a URL: look for user:password@ instead
        return any(match["password"] for match in secrets.URL_PASSWORD.finditer(url))


# One part of a source name: [bracketed] (]] for ]), "quoted" ("" for "), or bare up to the next dot.
_NAME_PART = re.compile(r'\[((?:[^\]]|\]\])*)\]|"((?:[^"]|"")*)"|([^.]*)')


def name_parts(value: str) -> list[str]:
    """``schema.table`` split at the dots outside ``[brackets]`` or ``"double quotes"``, which are
    removed, so a part may hold a dot: ``dbo.[Order.Items]``."""
    parts, position = [], 0
    while True:
        match = _NAME_PART.match(value, position)
        assert match is not None  # the bare alternative matches even an empty part
        bracketed, quoted, bare = match.groups()
        if bare is not None and bare[:1] in ('[', '"'):
            raise ValueError(f"{value!r}: {bare[0]} without its closing {']' if bare[0] == '[' else bare[0]}")
        parts.append(bracketed.replace("]]", "]") if bracketed is not None
                     else quoted.replace('""', '"') if quoted is not None else bare)
        position = match.end()
        if position == len(value):
            return parts
        if value[position] != ".":
            raise ValueError(f"{value!r}: a quoted name part must end at a dot or the end")
        position += 1


class TableConfig(_Strict):
    name: str = Field(description='[schema.]table in the source; a part holding a dot in [brackets] or "quotes"')
    key: list[str] | None = Field(default=None, min_length=1, description="key columns; default: the primary key")
    target: str | None = Field(default=None, description="BigQuery table name; default: the table part of name")
    group: str = Field(default="default", pattern=r"^[a-z][a-z0-9-]{0,40}$",
                       description="tables of a group are extracted together by one Cloud Scheduler job")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        parts = name_parts(value)
        if len(parts) > 2:
            raise ValueError(f"{value!r} has more than schema.table")
        for part in parts:
            identifiers.source_part(part)
        return value

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for column in value:
            identifiers.source_part(column)
        if len(set(value)) != len(value):
            raise ValueError("key lists a column twice")
        return value

    @field_validator("target")
    @classmethod
    def _valid_target(cls, value: str | None) -> str | None:
        return None if value is None else identifiers.bigquery_table(value)

    @model_validator(mode="after")
    def _target_not_the_pipelines_own(self) -> TableConfig:
        if self.target_table.lower().startswith(PIPELINE_TABLE_PREFIX):
            raise ValueError(f"BigQuery table {self.target_table!r}: names starting with {PIPELINE_TABLE_PREFIX!r} "
                             f"are the pipeline's own (its ledger and results); set another `target`")
        return self

    @property
    def schema_name(self) -> str | None:
        parts = name_parts(self.name)
        return parts[0] if len(parts) == 2 else None

    @property
    def table_name(self) -> str:
        return name_parts(self.name)[-1]

    @property
    def target_table(self) -> str:
        return self.target or identifiers.bigquery_name_for(self.table_name)


MAX_PREFIX_BYTES = 512


class GcsConfig(_Strict):
    bucket: str
    prefix: str = "snapshots"

    @field_validator("bucket")
    @classmethod
    def _valid_bucket(cls, value: str) -> str:
        return identifiers.gcs_bucket(value)

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        cleaned = value.strip("/")
        if not cleaned or ".." in cleaned.split("/") or not all(p for p in cleaned.split("/")):
            raise ValueError(f"invalid object prefix {value!r}")
        if not cleaned.isprintable() or len(cleaned.encode()) > MAX_PREFIX_BYTES:
            # GCS names are at most 1,024 bytes, with no control characters; the rest of a name needs room
            raise ValueError(f"invalid object prefix {value[:60]!r}: printable characters, at most "
                             f"{MAX_PREFIX_BYTES} bytes")
        return cleaned


class BigQueryConfig(_Strict):
    project: identifiers.GcpProject
    dataset: identifiers.BigQueryDataset
    location: str = "US"


class PubSubConfig(_Strict):
    project: identifiers.GcpProject


class ExtractConfig(_Strict):
    chunk_rows: int = Field(default=50_000, ge=1, le=5_000_000, description="rows held in memory at once")
    chunk_bytes: int = Field(default=64 << 20, ge=1 << 20, le=1 << 32,
                             description="a chunk holds fewer rows once its values reach about this many bytes")
    mode: Literal["full", "delta"] = Field(
        default="delta", description="delta ships only changed rows and deleted keys; full ships everything")
    full_every: int = Field(default=24, ge=1, description="every Nth snapshot of a table is full, to re-anchor")
    parallel_ranges: int = Field(default=1, ge=1, le=64,
                                 description="full snapshots split into this many key ranges, extracted in parallel")
    lock_lease_s: int = Field(default=300, ge=5, le=3600,
                              description="a table's extraction lock expires this long after its last renewal "
                                          "(renewed every third of it while the extraction runs)")


class RunConfig(_Strict):
    wait_timeout_s: int = Field(default=600, ge=1, description="how long `run` waits for reconciliation")


class Config(_Strict):
    source: SourceConfig
    tables: list[TableConfig] = Field(min_length=1)
    gcs: GcsConfig
    bigquery: BigQueryConfig
    pubsub: PubSubConfig
    extract: ExtractConfig = ExtractConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _unique_tables(self) -> "Config":
        for attribute in ("name", "target_table"):
            seen: set[str] = set()
            for table in self.tables:
                value = getattr(table, attribute).lower()
                if value in seen:
                    raise ValueError(f"two tables share the {attribute.replace('_', ' ')} {value!r}")
                seen.add(value)
        return self

    def table(self, name: str) -> TableConfig:
        """The table `name` (its source name or target table) names: exactly, else ignoring case,
        as the names are unique ignoring case."""
        for wanted in (lambda n: n == name, lambda n: n.lower() == name.lower()):
            for table in self.tables:
                if wanted(table.name) or wanted(table.target_table):
                    return table
        listed = ", ".join(table.name for table in self.tables[:20])
        raise ConfigError(f"table {name!r} is not in the config (its tables: {listed}"
                          f"{', ...' if len(self.tables) > 20 else ''})")


def load_config(path: Path | str, environ: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    _refuse_password_in_file(raw, path)
    merged, overridden = _apply_overrides(raw, os.environ if environ is None else environ)
    _resolve_sqlite_path(merged, path.parent)
    try:
        return Config.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_describe(error, overridden)}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, in one line: PyYAML's own text spans lines and quotes the offending line."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f": {' '.join(str(error).split())}"
    where = f" at line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}"
    context = ""
    if error.context and error.context_mark is not None:
        context = (f" ({error.context} that starts at line {error.context_mark.line + 1}, "
                   f"column {error.context_mark.column + 1})")
    elif error.context:
        context = f" ({error.context})"
    return f"{where}: {error.problem}{context}"


def _refuse_password_in_file(raw: dict[str, Any], path: Path) -> None:
    """A config file is copied, committed and mounted; a password in it would travel with it."""
    source = raw.get("source")
    if not isinstance(source, dict):
        return
    if "password" in source:
        key = "source.password"
    elif isinstance(source.get("url"), str) and url_has_password(source["url"]):
        key = "source.url"
    else:
        return
    raise ConfigError(
        f"{path}: {key}: a password is never read from the config file; remove it and set "
        f"{PASSWORD_VARIABLE} (or the whole URL in {ENV_PREFIX}SOURCE__URL) in the environment, or name a "
        "Secret Manager secret version in source.password_secret (projects/<project>/secrets/<secret>/versions/latest)")


def _apply_overrides(raw: dict[str, Any], environ: dict[str, str] | os._Environ[str]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's settings with MATRIX_<SECTION>__<FIELD> variables over them, and which variable set
    each overridden `section.field`. A variable naming no section is refused, not ignored. A section
    with nothing under it (`source:` alone, YAML's null) counts as not given, so variables fill it."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()
              if value is not None}
    overridden: dict[str, str] = {}
    sections = [name for name in Config.model_fields if name != "tables"]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, field = name[len(ENV_PREFIX):].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"environment variable {name}: no config section {section!r} "
                              f"(MATRIX_<SECTION>__<FIELD> with a section of {', '.join(sections)})")
        merged.setdefault(section, {})
        if isinstance(merged[section], dict):
            merged[section][field] = value
            overridden[f"{section}.{field}"] = name
    return merged, overridden


def _resolve_sqlite_path(merged: dict[str, Any], base: Path) -> None:
    """A relative SQLite path is relative to the config file, not to wherever the command runs."""
    source = merged.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("url"), str):
        return
    url: str = source["url"]
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        source["url"] = prefix + str((base / url[len(prefix):]).resolve())


def _describe(error: ValidationError, overridden: dict[str, str]) -> str:
    problems = []
    for item in error.errors():
        location = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        variable = overridden.get(".".join(str(p) for p in item["loc"][:2]))
        problems.append(f"{location or '(top level)'}: {message}" + (f" (set by {variable})" if variable else ""))
    return "; ".join(problems)
