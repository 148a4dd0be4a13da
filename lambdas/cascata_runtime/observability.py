"""Metrics and logs of a processed batch, through Powertools (EMF metrics, JSON logs).

The `Quarantined` and `Failed` metrics feed the stacks' alarms. With
`POWERTOOLS_METRICS_DISABLED=true` (the local runtime sets it) nothing is buffered at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

if TYPE_CHECKING:
    from cascata_runtime.shell import BatchReport

NAMESPACE = "Cascata"


def publish(report: BatchReport, *, metrics: Metrics, logger: Logger) -> None:
    for entry in report.quarantined:
        logger.warning(
            "record quarantined",
            extra={"reason": entry.rejection.as_dict(), "source": entry.record.position.as_dict()},
        )
    for index, reason in sorted(report.failed.items()):
        logger.error(
            "record failed, will be retried",
            extra={"reason": reason, "source": report.records[index].position.as_dict()},
        )
    if is_metrics_disabled():
        return
    metrics.add_metric(name="Records", unit=MetricUnit.Count, value=len(report.records))
    metrics.add_metric(name="Emitted", unit=MetricUnit.Count, value=len(report.emitted))
    metrics.add_metric(name="Quarantined", unit=MetricUnit.Count, value=len(report.quarantined))
    metrics.add_metric(name="Failed", unit=MetricUnit.Count, value=len(report.failed))
    metrics.flush_metrics()
