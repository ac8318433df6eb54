"""The Dagster job `export_insight`: a query-builder question's exact answer as CSV in the bucket (the logic is
dashboards/exports.py; the API starts this module as a process, one export per run)."""

import dagster as dg

from dashboards.config import get_dashboard_settings
from dashboards.exports import EXPORT_TAG, question_from_json, write_export
from orchestration.instance import prepare_dagster_home


class ExportConfig(dg.Config):
    export_id: str
    """The id the API returned (also the run tag analyticspro/export_id)."""
    question: str
    """The query-builder question as JSON (event, filters, group_by, date_from, date_to)."""


@dg.op(description="Run a query-builder question exactly and write its answer as CSV to the bucket.")
def export_insight_op(context: dg.OpExecutionContext, config: ExportConfig) -> dg.Output[str]:
    settings = get_dashboard_settings()

    def tag(tags: dict[str, str]) -> None:
        context.instance.add_run_tags(context.run_id, tags)

    location, rows = write_export(
        settings, config.export_id, question_from_json(config.question), say=context.log.info, tag=tag
    )
    return dg.Output(location, metadata={"location": location, "rows": rows})


@dg.job(
    description="Export a query-builder question as CSV (started by the dashboards API's exportInsight).",
    executor_def=dg.in_process_executor,
)
def export_insight() -> None:
    export_insight_op()


def build_export_defs() -> dg.Definitions:
    return dg.Definitions(jobs=[export_insight])


def main(argv: list[str]) -> int:
    """`python -m orchestration.defs.exports <export id> <question json>`: one export as a Dagster run."""
    export_id, question = argv
    prepare_dagster_home()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.reconstructable(export_insight),
            instance=instance,
            run_config={"ops": {"export_insight_op": {"config": {"export_id": export_id, "question": question}}}},
            tags={EXPORT_TAG: export_id},
            raise_on_error=False,
        )
        return 0 if result.success else 1
