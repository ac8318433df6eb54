"""The GraphQL schema (strawberry): hot metrics, daily metrics, funnels, retention, revenue, the query builder
and its exports. Resolvers read through dashboards.warehouse and tell the request's CachePolicy what they
touched, so the HTTP layer knows whether the answer may be cached (Redis, 60 s) and for how long a CDN may
keep it."""

from __future__ import annotations

import asyncio
import enum
import gc
import importlib
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

import strawberry
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.scalars import JSON
from strawberry.types import Info

from common.settings import utc_today
from dashboards.insight import EXPORT_MAX_DAYS, OPERATORS, PERSON_FIELDS, Filter, Insight, InsightError, to_trends
from dashboards.warehouse import DAILY_METRICS, Warehouse, day_range
from insights.spec import SpecError, parse_spec

log = logging.getLogger("analyticspro.dashboards")


@dataclass
class CachePolicy:
    """What one request's fields touched. Cacheable only when every field used a preset range; closed (a CDN
    may keep it a day) only when every field is about days that ended more than `lookback_days` ago."""

    lookback_days: int
    cacheable: bool = True
    live: bool = True  # every field is today's live numbers
    closed: bool = True
    fields: int = 0

    def note(self, *, preset: bool, last_day: date | None, cacheable: bool = True, live: bool = False) -> None:
        self.fields += 1
        self.live = self.live and live
        self.cacheable = self.cacheable and preset and cacheable
        settled = utc_today() - timedelta(days=self.lookback_days)
        self.closed = self.closed and last_day is not None and last_day < settled

    @property
    def cache_control(self) -> str:
        if self.fields and self.closed:
            return "public, max-age=86400"
        return "private, no-cache"


@strawberry.enum
class DateRangePreset(enum.Enum):
    TODAY = "TODAY"
    YESTERDAY = "YESTERDAY"
    LAST_7_DAYS = "LAST_7_DAYS"
    LAST_30_DAYS = "LAST_30_DAYS"
    LAST_90_DAYS = "LAST_90_DAYS"
    THIS_MONTH = "THIS_MONTH"
    LAST_MONTH = "LAST_MONTH"
    LAST_12_MONTHS = "LAST_12_MONTHS"


@strawberry.input(description="A preset (cached for 60 s) or a custom range `from`..`to`, inclusive (never cached).")
class DateRangeInput:
    preset: DateRangePreset | None = None
    from_: date | None = strawberry.field(default=None, name="from")
    to: date | None = None


def resolve_range(info: Info, value: DateRangeInput | None, default: DateRangePreset) -> tuple[date, date, bool]:
    """(first day, last day, is a preset) of a range argument."""
    if value is None or (value.preset is None and value.from_ is None and value.to is None):
        first, last = day_range(utc_today(), default.value)
        return first, last, True
    if value.preset is not None:
        if value.from_ is not None or value.to is not None:
            raise InsightError("give either a preset or from/to, not both")
        first, last = day_range(utc_today(), value.preset.value)
        return first, last, True
    if value.from_ is None or value.to is None:
        raise InsightError("a custom date range needs both from and to (YYYY-MM-DD)")
    if value.to < value.from_:
        raise InsightError(f"the date range ends ({value.to}) before it starts ({value.from_})")
    return value.from_, value.to, False


def _warehouse(info: Info) -> Warehouse:
    return info.context["warehouse"]


def _policy(info: Info) -> CachePolicy:
    return info.context["policy"]


@strawberry.type
class HotMetrics:
    date: date
    signups: int
    dau: int
    events: int
    revenue: float
    active_last_5m: int | None
    signups_last_hour: int | None
    events_last_hour: int | None
    updated_at: str | None
    source: str = strawberry.field(description="redis, or postgres when Redis could not answer")


@strawberry.type
class MetricPoint:
    date: date
    metric: str
    value: float


@strawberry.type
class FunnelStep:
    index: int
    name: str
    persons: int = strawberry.field(description="persons who entered in the date range (in the group) and reached it")
    conversion_from_previous: float | None = strawberry.field(
        description="persons / persons at the previous step (1 at step 1; null when the previous step has none)"
    )
    conversion_from_start: float | None = strawberry.field(description="persons / persons at step 1")
    drop_off: int = strawberry.field(
        description="persons who reached the previous step but not this one: persons at the previous step - persons "
        "(0 at step 1); the marts' drop_off (docs/metrics.md, Funnel drop-off)"
    )
    drop_off_rate: float | None = strawberry.field(
        description="dropOff / persons at the previous step (null at step 1, or when the previous step has none)"
    )


@strawberry.type
class FunnelGroup:
    value: str
    steps: list[FunnelStep]


@strawberry.type
class Funnel:
    name: str
    first_cohort: date
    last_cohort: date
    steps: list[FunnelStep]
    breakdown_by: str | None
    breakdown: list[FunnelGroup]


@strawberry.type
class RetentionCohort:
    cohort_start: date
    size: int
    retained: list[int]
    rates: list[float]


@strawberry.type
class Retention:
    grain: str
    cohorts: list[RetentionCohort]


@strawberry.type
class RevenueMonth:
    month: date
    mrr: float
    arr: float
    new_mrr: float
    expansion_mrr: float
    contraction_mrr: float
    churned_mrr: float
    reactivation_mrr: float
    customers: int
    new_customers: int
    churned_customers: int
    logo_churn_rate: float | None
    revenue_churn_rate: float | None
    net_revenue_retention: float | None
    arpu: float | None
    ltv: float | None


@strawberry.input
class FilterInput:
    field: str = strawberry.field(
        description="event.<property> (or a column: page_path, utm_source, ...) or user.<field>"
    )
    op: str = strawberry.field(description="=, !=, >, <, contains, is set, is not set")
    value: str | None = None


@strawberry.type
class InsightRow:
    bucket: date | None
    group: str | None
    events: int
    persons: int | None = strawberry.field(description="distinct persons")
    events_margin: int = strawberry.field(description="always 0: every answer is exact (kept for older clients)")


@strawberry.type
class InsightResult:
    event: str
    group_by: str
    first_day: date
    last_day: date
    rows: list[InsightRow]
    estimated: bool = strawberry.field(description="always false: every answer is exact (kept for older clients)")
    sample_rate: float = strawberry.field(description="always 1 (kept for older clients)")
    groups_total: int = strawberry.field(description="rows in the answer")
    truncated: bool = strawberry.field(
        description="grouped by a property: the 25 largest groups are shown and the rest are one group, 'other'"
    )


@strawberry.type
class CatalogueEvent:
    name: str
    properties: list[str]


@strawberry.type
class Catalogue:
    events: list[CatalogueEvent]
    person_fields: list[str]
    operators: list[str]
    metrics: list[str]
    funnels: list[str]


@strawberry.type
class ExportJob:
    id: str
    status: str = strawberry.field(description="QUEUED, STARTED, SUCCESS or FAILURE (the Dagster run's)")
    run_id: str | None
    location: str | None
    rows: int | None
    message: str | None


def to_question(
    info: Info,
    event: str,
    filters: list[FilterInput] | None,
    group_by: str,
    date_range: DateRangeInput | None,
    sample: float | None,
) -> tuple[Insight, bool]:
    first, last, preset = resolve_range(info, date_range, DateRangePreset.LAST_30_DAYS)
    question = Insight(
        event=event,
        date_from=first,
        date_to=last,
        filters=tuple(Filter(item.field, item.op, item.value) for item in (filters or [])),
        group_by=group_by,
        sample=sample,
    )
    return question, preset


@strawberry.type
class Query:
    @strawberry.field(description="Today's numbers (UTC): from Redis, or from the marts when Redis cannot answer.")
    async def hot_metrics(self, info: Info) -> HotMetrics:
        _policy(info).note(preset=True, last_day=None, cacheable=False, live=True)
        return HotMetrics(**await _warehouse(info).hot_metrics())

    @strawberry.field(description=f"Daily metrics ({', '.join(DAILY_METRICS)}) for a date range.")
    async def daily_metrics(
        self, info: Info, metrics: list[str], date_range: DateRangeInput | None = None
    ) -> list[MetricPoint]:
        first, last, preset = resolve_range(info, date_range, DateRangePreset.LAST_30_DAYS)
        _policy(info).note(preset=preset, last_day=last)
        return [MetricPoint(**point) for point in await _warehouse(info).daily_metrics(metrics, first, last)]

    @strawberry.field(description="A configured funnel over the persons who entered in the date range, with drop-off.")
    async def funnel(
        self,
        info: Info,
        name: str = "default",
        date_range: DateRangeInput | None = None,
        breakdown_by: str | None = None,
    ) -> Funnel:
        first, last, preset = resolve_range(info, date_range, DateRangePreset.LAST_30_DAYS)
        # a cohort's later steps can still happen within the conversion window: never "closed"
        _policy(info).note(preset=preset, last_day=None if last >= utc_today() - timedelta(days=90) else last)
        answer = await _warehouse(info).funnel(name, first, last, breakdown_by)
        steps = [FunnelStep(**step) for step in answer["steps"]]
        groups = [
            FunnelGroup(value=group["value"], steps=[FunnelStep(**step) for step in group["steps"]])
            for group in answer["breakdown"]
        ]
        return Funnel(
            name=name, first_cohort=first, last_cohort=last, steps=steps, breakdown_by=breakdown_by, breakdown=groups
        )

    @strawberry.field(description="Cohort retention (week or month cohorts by first activity) as a matrix.")
    async def retention(self, info: Info, grain: str = "week", date_range: DateRangeInput | None = None) -> Retention:
        first, last, preset = resolve_range(info, date_range, DateRangePreset.LAST_90_DAYS)
        _policy(info).note(preset=preset, last_day=None)  # later periods of a cohort keep filling in
        cohorts = await _warehouse(info).retention(grain, first, last)
        return Retention(grain=grain, cohorts=[RetentionCohort(**cohort) for cohort in cohorts])

    @strawberry.field(
        description="MRR, its movements (new, expansion, contraction, churn, reactivation), churn, LTV by month."
    )
    async def revenue(self, info: Info, date_range: DateRangeInput | None = None) -> list[RevenueMonth]:
        first, last, preset = resolve_range(info, date_range, DateRangePreset.LAST_12_MONTHS)
        month_end = (last.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        _policy(info).note(preset=preset, last_day=month_end)
        rows = await _warehouse(info).revenue(first, last)
        fields = set(RevenueMonth.__annotations__)
        return [RevenueMonth(**{k: v for k, v in row.items() if k in fields}) for row in rows]

    @strawberry.field(
        description="The query builder: one event, filters, grouped by day/week/month or a property. A special case "
        "of `query(spec)`'s trends (two series, events and persons), answered the same way."
    )
    async def insight(
        self,
        info: Info,
        event: str,
        filters: list[FilterInput] | None = None,
        group_by: str = "day",
        date_range: DateRangeInput | None = None,
        sample: Annotated[
            float | None,
            strawberry.argument(deprecation_reason="ignored: every answer is exact (the insights engine's trends)"),
        ] = None,
    ) -> InsightResult:
        question, preset = to_question(info, event, filters, group_by, date_range, sample)
        _policy(info).note(preset=preset, last_day=question.date_to)
        answer = await _warehouse(info).insight(question)
        return InsightResult(
            event=event,
            group_by=group_by,
            first_day=question.date_from,
            last_day=question.date_to,
            rows=[InsightRow(**row) for row in answer["rows"]],
            estimated=answer["estimated"],
            sample_rate=answer["sample_rate"],
            groups_total=answer["groups_total"],
            truncated=answer["truncated"],
        )

    @strawberry.field(
        description="Any insights question — funnel, trends, retention, paths, stickiness or lifecycle — as the JSON "
        "spec `analyticspro query` takes; the answer is the JSON that command prints (README, 'Insights'). Exact, "
        "over every event (warm and cold tiers); a spec's mistakes come back as errors naming the field."
    )
    async def query(self, info: Info, spec: JSON) -> JSON:
        parsed = parse_spec(spec, info.context["settings"].insight_max_days)
        # a funnel's later steps and a cohort's later periods keep filling in after `to`: never "closed"
        settles = parsed.kind in ("trends", "stickiness", "paths")
        _policy(info).note(preset=True, last_day=parsed.date_to if settles else None)
        return await _warehouse(info).questions.ask(parsed)

    @strawberry.field(description="What the query builder can ask: events, their properties, person fields.")
    async def catalogue(self, info: Info) -> Catalogue:
        _policy(info).note(preset=True, last_day=None)
        warehouse = _warehouse(info)
        catalogue = await warehouse.catalogue()
        return Catalogue(
            events=[CatalogueEvent(name=name, properties=sorted(catalogue[name])) for name in sorted(catalogue)],
            person_fields=sorted(PERSON_FIELDS),
            operators=list(OPERATORS),
            metrics=list(DAILY_METRICS),
            funnels=await warehouse.funnel_names(),
        )

    @strawberry.field(description="Progress and file location of an export started with exportInsight.")
    async def export_status(self, info: Info, id: strawberry.ID) -> ExportJob:
        _policy(info).note(preset=False, last_day=None, cacheable=False)
        exports = await _exports()
        return ExportJob(**await asyncio.to_thread(exports.export_status, info.context["settings"], str(id)))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Run the question exactly (no sample) as a Dagster job that writes CSV to the bucket."
    )
    async def export_insight(
        self,
        info: Info,
        event: str,
        filters: list[FilterInput] | None = None,
        group_by: str = "day",
        date_range: DateRangeInput | None = None,
    ) -> ExportJob:
        _policy(info).note(preset=False, last_day=None, cacheable=False)
        question, _preset = to_question(info, event, filters, group_by, date_range, None)
        # refuse a question that cannot run now, not in the background job
        await _warehouse(info).questions.check(to_trends(question, EXPORT_MAX_DAYS))
        exports = await _exports()
        return ExportJob(**await asyncio.to_thread(exports.start_export, info.context["settings"], question))


_exports_module: Any = None


async def _exports() -> Any:
    """dashboards.exports (which imports Dagster), imported once, in a thread, then kept out of the cyclic GC."""
    global _exports_module
    if _exports_module is None:
        _exports_module = await asyncio.to_thread(importlib.import_module, "dashboards.exports")
        gc.collect()
        gc.freeze()
    return _exports_module


class DashboardSchema(strawberry.Schema):
    """Errors about the question (InsightError) are the caller's to fix: logged in one line, without a traceback."""

    def process_errors(self, errors: list, execution_context: Any = None) -> None:
        unexpected = []
        for error in errors:
            if isinstance(error.original_error, InsightError | SpecError):
                log.info("refused: %s", error.message)
            else:
                unexpected.append(error)
        if unexpected:
            super().process_errors(unexpected, execution_context)


# one request cannot ask for unbounded work: nesting, aliases (each a query) and document size are capped. A page
# sends a few documents again and again with other variables (a custom range, another funnel), so each is parsed and
# validated once per process (validating the overview's document was half of an uncached answer's CPU). The cache
# is keyed by the document and the validation rules: the two limits are rule classes made once, here (strawberry's
# QueryDepthLimiter and MaxAliasesLimiter would make new classes for every request, and never hit it).
DOCUMENT_CACHE_SIZE = 512
RULES = [max_depth_rule(8, None, None), max_aliases_rule(20)]
EXTENSIONS = [  # factories: strawberry builds fresh extensions for each request; the caches live in the module
    lambda: AddValidationRules(RULES),
    lambda: MaxTokensLimiter(max_token_count=3000),
    lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
    lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
]
schema = DashboardSchema(query=Query, mutation=Mutation, extensions=EXTENSIONS)
