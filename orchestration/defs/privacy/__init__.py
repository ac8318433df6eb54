"""GDPR erasure from the UI: the job `forget_person` (Launchpad config: user_id, requested_by) runs the same
erasure as `analyticspro forget --user-id ID` (warehouse/erasure.py)."""

import dagster as dg

from common.settings import get_settings
from warehouse.erasure import forget


class ForgetConfig(dg.Config):
    user_id: str
    """The user id to erase, with every anonymous id seen with it."""
    requested_by: str = "dagster-ui"
    """Who asked (recorded in ops.erasure_requests)."""


@dg.op(description="Erase one person from every tier and record the request in ops.erasure_requests.")
def forget_person_op(context: dg.OpExecutionContext, config: ForgetConfig) -> None:
    report = forget(get_settings(), config.user_id, config.requested_by, say=context.log.info)
    context.log.info(report.describe())
    context.log_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey(["raw", "events"]),
            metadata={"erasure_request": report.request_id, "rows_removed": dg.MetadataValue.json(report.rows)},
        )
    )


@dg.job(
    description="GDPR erasure of one person (config: user_id, requested_by).", tags={"analyticspro/pipeline": "marts"}
)
def forget_person() -> None:
    forget_person_op()


def build_privacy_defs() -> dg.Definitions:
    return dg.Definitions(jobs=[forget_person])
