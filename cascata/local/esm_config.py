"""Event source mapping settings, in Lambda's own terms, with AWS's defaults and range checks.

`MappingConfig` is what `CreateEventSourceMapping` accepts for a stream (Kinesis) or Kafka
source, with snake_case names of the API fields (reference section 1). Unset fields take the
service defaults of reference 1.1; out-of-range values raise `ValueError` with a message naming
the field, the value and the allowed range, as the API's `InvalidParameterValueException` would.

`MappingConfig.from_event_source` converts the pipeline declaration (`cascata.pipeline.
EventSource`) so that the local runtime and the CDK stacks render one declaration the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from cascata.local.filters import FilterCriteria, FilterPatternError

if TYPE_CHECKING:
    from cascata.pipeline import EventSource

__all__ = [
    "KAFKA_DEFAULT_BATCHING_WINDOW_S",
    "MAX_PAYLOAD_BYTES",
    "REPORT_BATCH_ITEM_FAILURES",
    "MappingConfig",
    "destination_kind",
]

StartingPositionName = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
DestinationKind = Literal["s3", "sqs", "sns"]

REPORT_BATCH_ITEM_FAILURES: Final = "ReportBatchItemFailures"
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
"""Synchronous invoke payload limit (6 MB = 6,291,456 bytes), request and response alike."""
KAFKA_DEFAULT_BATCHING_WINDOW_S: Final = 0.5
"""Kafka mappings batch for 500 ms by default, a value the API cannot express afterwards."""
MAX_FILTERS: Final = 5
"""Lambda's default quota of filters per mapping (raisable to 10 on request)."""


def destination_kind(arn: str) -> DestinationKind:
    """`s3`, `sqs` or `sns` for an on-failure destination ARN; ValueError for anything else."""
    parts = arn.split(":")
    if len(parts) >= 6 and parts[0] == "arn":
        service = parts[2]
        if service == "s3" and parts[5]:
            return "s3"
        if service == "sqs" and parts[5]:
            return "sqs"
        if service == "sns" and parts[5]:
            return "sns"
    raise ValueError(
        f"on-failure destination {arn!r} is not an S3 bucket, SQS queue or SNS topic ARN"
        " (Kafka-topic destinations are not emulated)"
    )


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """The settings of one event source mapping, named as in the Lambda API.

    `maximum_batching_window_in_seconds=None` means the source's default: 0 for Kinesis,
    0.5 s for Kafka. `starting_position` is required by the API (there is no service default);
    here it defaults to TRIM_HORIZON like the pipeline declaration, so that records produced
    before the mapping is created are seen by tests.
    """

    batch_size: int = 100
    maximum_batching_window_in_seconds: float | None = None
    starting_position: StartingPositionName = "TRIM_HORIZON"
    starting_position_timestamp: float | None = None
    parallelization_factor: int = 1
    bisect_batch_on_function_error: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age_in_seconds: int = -1
    tumbling_window_in_seconds: int = 0
    function_response_types: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    """FilterCriteria patterns, each a JSON string exactly as `Filters[].Pattern` holds it."""
    on_failure_destination: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError("invalid event source mapping configuration: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []

        def integer(name: str, value: object) -> bool:
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
                return False
            return True

        if integer("batch_size", self.batch_size) and not 1 <= self.batch_size <= 10_000:
            problems.append(f"batch_size {self.batch_size} is outside 1..10000")
        window = self.maximum_batching_window_in_seconds
        if window is not None and (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not 0 <= window <= 300
        ):
            problems.append(
                f"maximum_batching_window_in_seconds {window!r} is outside 0..300 seconds"
            )
        if self.starting_position not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
            problems.append(
                f"starting_position {self.starting_position!r} is not TRIM_HORIZON, LATEST "
                "or AT_TIMESTAMP"
            )
        if self.starting_position == "AT_TIMESTAMP":
            if self.starting_position_timestamp is None:
                problems.append("starting_position AT_TIMESTAMP needs starting_position_timestamp")
        elif self.starting_position_timestamp is not None:
            problems.append(
                "starting_position_timestamp is only allowed with starting_position AT_TIMESTAMP"
            )
        if (
            integer("parallelization_factor", self.parallelization_factor)
            and not 1 <= self.parallelization_factor <= 10
        ):
            problems.append(
                f"parallelization_factor {self.parallelization_factor} is outside 1..10"
            )
        if not isinstance(self.bisect_batch_on_function_error, bool):
            problems.append("bisect_batch_on_function_error must be true or false")
        retries = self.maximum_retry_attempts
        if integer("maximum_retry_attempts", retries) and not (
            retries == -1 or 0 <= retries <= 10_000
        ):
            problems.append(
                f"maximum_retry_attempts {retries} is outside -1 (infinite) or 0..10000"
            )
        age = self.maximum_record_age_in_seconds
        if integer("maximum_record_age_in_seconds", age) and not (
            age == -1 or 60 <= age <= 604_800
        ):
            problems.append(
                f"maximum_record_age_in_seconds {age} is outside -1 (infinite) or 60..604800"
            )
        tumbling = self.tumbling_window_in_seconds
        if integer("tumbling_window_in_seconds", tumbling) and not 0 <= tumbling <= 900:
            problems.append(f"tumbling_window_in_seconds {tumbling} is outside 0..900")
        for kind in self.function_response_types:
            if kind != REPORT_BATCH_ITEM_FAILURES:
                problems.append(
                    f"function_response_types may only hold {REPORT_BATCH_ITEM_FAILURES!r}, "
                    f"got {kind!r}"
                )
        if len(self.filters) > MAX_FILTERS:
            problems.append(
                f"{len(self.filters)} filters; at most {MAX_FILTERS} are allowed per mapping"
            )
        for pattern in self.filters:
            if not isinstance(pattern, str):
                problems.append(f"filter {pattern!r} must be a JSON string")
                continue
            try:
                FilterCriteria([pattern])
            except FilterPatternError as exc:
                problems.append(str(exc))
                continue
            data = json.loads(pattern).get("data")
            if data is not None and not isinstance(data, dict):
                # Kinesis data is matched as JSON; a non-object `data` pattern can never match.
                problems.append(f"filter {pattern!r}: the data part must be a JSON object")
        if self.on_failure_destination is not None:
            try:
                destination_kind(self.on_failure_destination)
            except ValueError as exc:
                problems.append(str(exc))
        if not isinstance(self.enabled, bool):
            problems.append("enabled must be true or false")
        return problems

    # --- derived --------------------------------------------------------------------------

    @property
    def report_batch_item_failures(self) -> bool:
        return REPORT_BATCH_ITEM_FAILURES in self.function_response_types

    def batching_window_for(self, source_kind: str) -> float:
        """The effective batching window in seconds for a `kinesis` or `kafka` source."""
        if self.maximum_batching_window_in_seconds is not None:
            return float(self.maximum_batching_window_in_seconds)
        return KAFKA_DEFAULT_BATCHING_WINDOW_S if source_kind == "kafka" else 0.0

    def with_changes(self, **changes: Any) -> MappingConfig:
        """A copy with some fields changed (validated again), like UpdateEventSourceMapping."""
        return replace(self, **changes)

    @classmethod
    def from_event_source(
        cls, source: EventSource, on_failure_arn: str | None = None
    ) -> MappingConfig:
        """The mapping a pipeline `EventSource` declares, as the CDK stacks render it.

        `on_failure_arn` is the ARN of the declared `on_failure` resource (the declaration only
        holds its logical name). A batching window of 0 in the declaration means "the source's
        default" (the declaration cannot say "unset"): 0 for Kinesis, 500 ms for Kafka.
        """
        return cls(
            batch_size=source.batch_size,
            maximum_batching_window_in_seconds=(
                float(source.batching_window_s) if source.batching_window_s else None
            ),
            starting_position=source.starting_position,
            starting_position_timestamp=source.starting_position_timestamp,
            parallelization_factor=source.parallelization_factor,
            bisect_batch_on_function_error=source.bisect_on_error,
            maximum_retry_attempts=source.max_retries,
            maximum_record_age_in_seconds=source.max_record_age_s,
            tumbling_window_in_seconds=source.tumbling_window_s,
            function_response_types=(
                (REPORT_BATCH_ITEM_FAILURES,) if source.report_batch_item_failures else ()
            ),
            filters=tuple(source.filters),
            on_failure_destination=on_failure_arn,
        )

    def to_api(self, *, source_kind: str = "kinesis") -> dict[str, Any]:
        """The configuration fields as GetEventSourceMapping returns them (reference 1.1)."""
        api: dict[str, Any] = {
            "StartingPosition": self.starting_position,
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": _number(self.batching_window_for(source_kind)),
        }
        if self.starting_position_timestamp is not None:
            api["StartingPositionTimestamp"] = self.starting_position_timestamp
        if source_kind == "kinesis":
            api.update(
                ParallelizationFactor=self.parallelization_factor,
                TumblingWindowInSeconds=self.tumbling_window_in_seconds,
            )
        api.update(
            BisectBatchOnFunctionError=self.bisect_batch_on_function_error,
            MaximumRetryAttempts=self.maximum_retry_attempts,
            MaximumRecordAgeInSeconds=self.maximum_record_age_in_seconds,
            FunctionResponseTypes=list(self.function_response_types),
            DestinationConfig={
                "OnFailure": (
                    {"Destination": self.on_failure_destination}
                    if self.on_failure_destination
                    else {}
                )
            },
        )
        if self.filters:
            api["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in self.filters]}
        return api
