"""The same questions on Apache Spark, for when one machine is not enough (`analyticspro query --engine spark`).

One implementation, two engines: the kinds (funnels.py, trends.py, ...) write their statements once, in DuckDB's
dialect; here sqlglot translates each into Spark SQL, and Spark runs it over the same columnar copy (store.py).
Every value stays a bound parameter (Spark's named parameter markers, `spark.sql(text, args=...)`), so a spec cannot
change a statement's shape on Spark either.

The copy's Parquet files become two cached Spark views shaped like the DuckDB engine's tables (engine.py):
- events: `person_key` is the person id itself (a dense integer numbering is a global pass that does not spread
  over machines; the statements only compare and count keys), `event_id` the catalogue's id (numbered as the DuckDB
  engine numbers them, `extend_catalogue`), `rk` = (days since 1970 << 32) + the row's position in its day sorted by
  (person, time, message id), a day in several files keeping the latest file's version of each message;
- persons: the latest file's row of each person.
A property is read as a map lookup of its key (`from_json(properties, 'map<string,string>')[key]`), which gives the
value's JSON text as DuckDB's `json_extract_string` does, for any key, without building a JSON path from it.

The session: SPARK_REMOTE (a Spark Connect URL, `sc://host:15002`) reaches a cluster, whose executors must read
INSIGHTS_DIR (shared storage); otherwise Spark runs in this process, `local[SPARK_CORES]` (default every core) with
SPARK_DRIVER_MEMORY (default 4g) of heap, as the spark engine of the marts does.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

try:  # the `spark` extra; this module is imported only when the spark engine is asked for
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window
except ImportError:
    raise ImportError(
        "the spark engine needs pyspark, the `spark` extra: run `uv sync --extra spark` (or `make install`)"
    ) from None

from common.settings import PROJECT_ROOT
from insights.engine import StoreMissing, answer, extend_catalogue, read_copy
from insights.filters import Catalogue
from insights.spec import Spec, SpecError, parse_spec
from insights.store import store_dir

PROPERTIES_TYPE = "map<string,string>"
TABLES = ("events", "persons")


def spark_session() -> Any:
    """The session questions run in: an existing one (a dbt build's, in the same process) or a new one."""
    builder = SparkSession.builder.appName("analyticspro-insights")
    if not os.environ.get("SPARK_REMOTE"):
        cores = int(os.environ.get("SPARK_CORES") or os.cpu_count() or 2)
        log4j = PROJECT_ROOT / "dbt_project" / "log4j2.properties"
        builder = (
            builder.master(f"local[{cores}]")
            .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY") or "4g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.log.structuredLogging.enabled", "false")
            # one machine: two shuffle partitions a core (SPARK_SHUFFLE_PARTITIONS), adaptive execution merges more
            .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS") or str(2 * cores))
            .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log4j}")
        )
    session = builder.getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")  # the copy's times are UTC; so are days and weeks
    return session


def _spark_value(value: object) -> object:
    """A bound value as Spark's parameters take it: the kinds bind naive UTC times; Spark wants the instant."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _pointer_key(pointer: object) -> str:
    """The key an RFC 6901 top-level pointer (filters.json_pointer) names."""
    text = str(pointer)
    return text[1:].replace("~1", "/").replace("~0", "~")


@dataclass
class Step:
    """One Spark statement of a question: a common table expression to compute once and keep as `view`, or (view
    None) the question's own select."""

    view: str | None
    sql: str
    args: dict[str, object]


def translate(statement: str, params: list[object], views: dict[str, str], scratch: str = "q") -> list[Step]:
    """A kind's statement (DuckDB's dialect, $n parameters) as Spark SQL with named parameters (:p<n>) and its tables
    renamed to `views`.

    Spark inlines a common table expression at each place that reads it, so a funnel's chain (each step reads the
    one before, twice) would grow into a plan of hundreds of shuffles. A CTE read more than once is therefore its
    own step, computed once into a view named `<scratch>_<cte>` (checkpointed: its rows, without the plan that made
    them), and the statements after it read the view."""
    tree = sqlglot.parse_one(statement, read="duckdb")

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in views:
            return exp.Table(this=exp.to_identifier(views[node.name]), alias=node.args.get("alias"))
        if isinstance(node, exp.JSONExtractScalar | exp.JSONExtract) and isinstance(node.expression, exp.Placeholder):
            key = exp.Placeholder(this=f"k{node.expression.name}")  # the pointer's key, not the pointer
            parsed = exp.Anonymous(this="from_json", expressions=[node.this, exp.Literal.string(PROPERTIES_TYPE)])
            return exp.Bracket(this=parsed, expressions=[key])
        if isinstance(node, exp.PercentileDisc) and node.args.get("expression") is not None:
            # DuckDB's quantile_disc(x, q) is Spark's percentile_disc(q) within group (order by x): both the smallest
            # value whose cumulative share reaches q (sqlglot would write Spark's approximate percentile instead)
            ordered = exp.Order(expressions=[exp.Ordered(this=node.this)])
            function = exp.Anonymous(this="percentile_disc", expressions=[node.expression])
            return exp.WithinGroup(this=function, expression=ordered)
        if isinstance(node, exp.Placeholder) and node.name.isdigit():
            return exp.Placeholder(this=f"p{node.name}")
        return node

    tree = tree.transform(rewrite)

    def arguments(node: exp.Expression) -> dict[str, object]:
        found: dict[str, object] = {}
        for placeholder in node.find_all(exp.Placeholder):
            name = placeholder.name
            value = params[int(name[1:]) - 1]
            found[name] = _pointer_key(value) if name.startswith("k") else _spark_value(value)
        return found

    with_ = tree.args.get("with_")
    ctes = list(with_.expressions) if with_ is not None else []
    reads = {cte.alias: 0 for cte in ctes}
    for table in tree.find_all(exp.Table):
        if not table.args.get("db") and table.name in reads:
            reads[table.name] += 1
    steps: list[Step] = []
    kept: list[exp.CTE] = []
    renamed: dict[str, str] = {}

    def point_at_views(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in renamed:
            alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
            return exp.Table(this=exp.to_identifier(renamed[node.name]), alias=alias)
        return node

    for cte in ctes:
        body = cte.this.transform(point_at_views)
        if reads[cte.alias] > 1:
            query = body.copy()
            if kept:  # the single-use CTEs before it that it may read
                query.set("with_", exp.With(expressions=[c.copy() for c in kept]))
            view = f"{scratch}_{cte.alias}"
            steps.append(Step(view, query.sql(dialect="spark"), arguments(query)))
            renamed[cte.alias] = view
        else:
            kept.append(exp.CTE(this=body, alias=cte.args["alias"]))
    final = tree.copy()
    final.set("with_", exp.With(expressions=kept) if kept else None)
    final = final.transform(point_at_views)
    steps.append(Step(None, final.sql(dialect="spark"), arguments(final)))
    return steps


class SparkEngine:
    """Answers specs on Spark over the columnar copy in `folder`; `run` and `ask` as Engine's."""

    def __init__(self, folder: Path | None = None, session: Any = None) -> None:
        self.folder = folder or store_dir()
        self.spark = session or spark_session()
        suffix = uuid.uuid4().hex[:8]
        self.views = {table: f"insights_{table}_{suffix}" for table in TABLES}
        self.generation = 0
        self.catalogue = Catalogue()
        self._cached: list[Any] = []

    def refresh(self) -> bool:
        """Point the views at the copy's current files (cached in the cluster's memory); True when they changed."""
        manifest = read_copy(self.folder)
        if manifest.generation == self.generation:
            return False
        event_files = [(self._path(name), name, day, position) for day, entry in sorted(manifest.days.items())
                       for position, name in enumerate(entry["files"])]  # fmt: skip
        if not event_files:
            raise StoreMissing(f"the columnar copy in {self.folder} holds no events yet: load and build some first")
        names = {row[0] for row in self.spark.read.parquet(*[f[0] for f in event_files]).select("event_name")
                 .distinct().collect()}  # fmt: skip
        self.catalogue = extend_catalogue(self.catalogue, self.folder, manifest, names)

        positions = self.spark.createDataFrame(
            [(Path(name).name, position) for _, name, _, position in event_files], "file_name string, position int"
        )
        ids = self.spark.createDataFrame(list(self.catalogue.event_ids.items()), "event_name string, event_id int")
        rows = self.spark.read.parquet(*[f[0] for f in event_files]).withColumn(
            "file_name", F.col("_metadata.file_name")
        )
        latest = Window.partitionBy("event_date", "message_id").orderBy(F.col("position").desc())
        in_day = Window.partitionBy("event_date").orderBy("person_id", "event_at", "message_id")
        events = (
            rows.join(F.broadcast(positions), "file_name")
            .withColumn("version", F.row_number().over(latest))
            .where("version = 1")
            .withColumn("rk", (F.unix_date("event_date").cast("bigint") * F.lit(1 << 32)) + F.row_number().over(in_day))
            .join(F.broadcast(ids), "event_name", "left")
            .select(
                F.col("person_id").alias("person_key"),
                "rk",
                "event_at",
                "event_date",
                F.coalesce("event_id", F.lit(0)).alias("event_id"),  # identify, alias, group: id 0
                "is_activity",
                "page_path",
                "referrer",
                "utm_source",
                "utm_medium",
                "utm_campaign",
                "revenue",
                "properties",
            )
        )
        frames = [events]
        if manifest.persons:
            person_files = list(manifest.persons["files"])
            order = self.spark.createDataFrame(
                [(Path(name).name, position) for position, name in enumerate(person_files)],
                "file_name string, position int",
            )
            newest = Window.partitionBy("person_id").orderBy(F.col("position").desc())
            persons = (
                self.spark.read.parquet(*[self._path(name) for name in person_files])
                .withColumn("file_name", F.col("_metadata.file_name"))
                .join(F.broadcast(order), "file_name")
                .withColumn("version", F.row_number().over(newest))
                .where("version = 1")
                .select(F.col("person_id").alias("person_key"), "plan", "country", "email", "user_id", "mrr",
                        "signup_date", "is_identified")
            )  # fmt: skip
        else:
            persons = self.spark.createDataFrame(
                [],
                "person_key string, plan string, country string, email string, user_id string, mrr double, "
                "signup_date date, is_identified boolean",
            )
        frames.append(persons)
        for frame in self._cached:
            frame.unpersist()
        self._cached = []
        for table, frame in zip(TABLES, frames, strict=True):
            frame = frame.persist()
            frame.count()  # materialize the cache now, not in the first question
            frame.createOrReplaceTempView(self.views[table])
            self._cached.append(frame)
        self.generation = manifest.generation
        return True

    def _path(self, name: str) -> str:
        return str(self.folder / name)

    def run(self, spec: Spec, timeout_seconds: float | None = None) -> dict[str, Any]:
        """The answer to `spec`, as the DuckDB engine gives it; SpecError when it runs longer than `timeout_seconds`
        (its Spark jobs are cancelled)."""
        if not self.generation:
            self.refresh()
        tag = f"analyticspro-question-{uuid.uuid4().hex[:12]}"
        stopped = threading.Event()

        def cancel() -> None:
            stopped.set()
            self.spark.interruptTag(tag)

        timer = threading.Timer(timeout_seconds, cancel) if timeout_seconds else None

        scratch: list[tuple[str, Any]] = []

        def fetch(statement: str, params: list[object]) -> list[tuple]:
            rows: list[tuple] = []
            for step in translate(statement, params, self.views, f"{tag.replace('-', '_')}_{len(scratch)}"):
                if stopped.is_set():  # the time ran out between two jobs: start no more
                    raise TimeoutError(tag)
                frame = self.spark.sql(step.sql, args=step.args)
                if step.view is None:
                    rows = [tuple(row) for row in frame.collect()]
                else:  # computed now and cut from its plan: later steps read the rows, not the plan again
                    frame = frame.localCheckpoint()
                    frame.createOrReplaceTempView(step.view)
                    scratch.append((step.view, frame))
            return rows

        self.spark.addTag(tag)
        try:
            if timer is not None:
                timer.start()
            return answer(spec, self.catalogue, fetch)
        except Exception as error:
            if stopped.is_set():
                raise SpecError(
                    f"the question ran longer than {timeout_seconds:g}s and was stopped: narrow the date range or "
                    "the steps' filters"
                ) from error
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self.spark.removeTag(tag)
            for view, frame in scratch:
                self.spark.catalog.dropTempView(view)
                frame.unpersist()

    def ask(self, data: object, max_days: int = 366) -> dict[str, Any]:
        """parse_spec then run."""
        return self.run(parse_spec(data, max_days))

    def close(self) -> None:
        """Let go of the cached views (the session stays: other work in this process may use it)."""
        for frame in self._cached:
            frame.unpersist()
        for view in self.views.values():
            self.spark.catalog.dropTempView(view)
        self._cached = []
        self.generation = 0


__all__ = ["SparkEngine", "spark_session", "translate"]
