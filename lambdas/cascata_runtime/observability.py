"""Metrics and logs of a processed batch, through Powertools (EMF metrics, JSON logs).

The `Quarantined` and `Failed` metrics feed the stacks' alarms. With
`POWERTOOLS_METRICS_DISABLED=true` (the local runtime sets it) nothing is buffered at all.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from cascata_runtime.shell import BatchReport

NAMESPACE = "Cascata"


_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})


def metrics_disabled() -> bool:
    """Whether Powertools emits no metrics here, by the rule its documentation gives for its
    environment variables: `POWERTOOLS_METRICS_DISABLED` when set, else `POWERTOOLS_DEV` (dev
    mode disables metrics unless they are explicitly enabled). Read per call, as Powertools
    reads them, so a test or the local runtime may set them at any time."""
    disabled = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    if disabled is not None:
        return disabled.strip().lower() in _TRUE
    return os.environ.get("POWERTOOLS_DEV", "false").strip().lower() in _TRUE


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
    if metrics_disabled():
        return
    metrics.add_metric(name="Records", unit=MetricUnit.Count, value=len(report.records))
    metrics.add_metric(name="Emitted", unit=MetricUnit.Count, value=len(report.emitted))
    metrics.add_metric(name="Quarantined", unit=MetricUnit.Count, value=len(report.quarantined))
    metrics.add_metric(name="Failed", unit=MetricUnit.Count, value=len(report.failed))
    metrics.flush_metrics()
