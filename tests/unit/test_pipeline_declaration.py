"""The declaration itself: sound, named mechanically, and in step with each settings module."""

from __future__ import annotations

import ast
import importlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from cascata.pipeline import (
    ApiFunction,
    Binding,
    EventSource,
    Function,
    Pipeline,
    Processor,
    Route,
    ScheduledFunction,
)
from payments.pipeline import PIPELINE
from payments.settings import SETTINGS_BY_FUNCTION

ROOT = Path(__file__).resolve().parents[2]


def test_the_declared_pipeline_has_no_problems() -> None:
    assert PIPELINE.validate() == []


def test_the_declaration_imports_neither_cdk_nor_boto3() -> None:
    tree = ast.parse((ROOT / "cascata" / "pipeline.py").read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m.split(".")[0] in {"aws_cdk", "boto3", "botocore"}}


@pytest.mark.parametrize("processor", [f.name for f in PIPELINE.functions])
def test_each_function_environment_is_exactly_what_its_settings_read(processor: str) -> None:
    env = PIPELINE.environment(processor, stage="dev", account="111122223333", region="eu-west-1")
    assert set(env) == SETTINGS_BY_FUNCTION[processor].required_variables()
    settings = SETTINGS_BY_FUNCTION[processor].from_env(env)
    assert settings.stage == "dev"  # type: ignore[attr-defined]


@pytest.mark.parametrize("processor", PIPELINE.functions, ids=lambda p: p.name)
def test_each_handler_module_follows_the_convention(processor: Function) -> None:
    module = importlib.import_module(processor.module)
    assert callable(getattr(module, processor.function))
    assert module.SETTINGS is SETTINGS_BY_FUNCTION[processor.name]
    assert callable(module.dependencies) and callable(module.make_handler)
    # mechanical names: module validate.py <-> function validate
    assert processor.module.rsplit(".", 1)[1] == processor.name.replace("-", "_")


def test_missing_environment_fails_naming_every_variable() -> None:
    from cascata_runtime.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="BALANCES_TABLE, QUARANTINE_BUCKET"):
        SETTINGS_BY_FUNCTION["balances"].from_env({"PIPELINE_STAGE": "dev"})


def test_physical_names_derive_from_the_declaration() -> None:
    assert PIPELINE.physical_name("payments-raw", stage="prod") == "cascata-prod-payments-raw"
    assert PIPELINE.physical_name("validate", stage="prod") == "cascata-prod-validate"
    assert (PIPELINE.physical_name("quarantine", stage="prod", account="111122223333",
                                   region="eu-west-1")
            == "cascata-prod-quarantine-111122223333-eu-west-1")
    with pytest.raises(KeyError, match="no resource named 'nope'"):
        PIPELINE.physical_name("nope", stage="prod")


def test_validation_catches_structural_mistakes() -> None:
    broken = Pipeline(
        app="cascata",
        streams=PIPELINE.streams,
        tables=PIPELINE.tables,
        buckets=PIPELINE.buckets,
        queues=(),
        topics=(),
        processors=(
            Processor(
                name="Bad_Name",
                handler="x.y.handler",
                description="",
                sources=(EventSource(stream="balances", batch_size=0, max_record_age_s=30,
                                     on_failure="payments-raw", filters=("{nope",)),),
                bindings=(Binding("OUT_STREAM", "missing", "write"),
                          Binding("OUT_STREAM", "payments-raw", "write")),
            ),
        ),
        scheduled=(ScheduledFunction("tick", "x.tick.handler", "", every_s=30, bindings=()),),
        apis=(
            ApiFunction("api-a", "x.a.handler", "", routes=(Route("GET", "/x"),), bindings=()),
            ApiFunction("api-b", "x.b.handler", "", routes=(Route("GET", "/x"),
                                                              Route("GET", "y")), bindings=()),
        ),
    )
    problems = "\n".join(broken.validate())
    for expected in ("'Bad_Name'", "source 'balances' is not a stream", "on_failure",
                     "batch_size 0", "max_record_age_s 30", "is not JSON",
                     "OUT_STREAM is bound twice", "unknown resource 'missing'",
                     "every_s 30", "'GET /x' belongs to more than one function",
                     "must start with /"):
        assert expected in problems


def test_each_processor_reading_an_origin_stream_gets_its_gate_policy() -> None:
    # Given the declared pipeline, in stage "test"
    env = PIPELINE.environment("validate", stage="test")
    # Then validate knows its origin stream's policy and the marker table
    assert json.loads(env["ORIGIN_STREAMS"]) == {"cascata-test-payments-raw": {
        "dedupe_horizon_s": 3600, "max_future_skew_s": 300, "earliest": "2000-01-01T00:00:00Z"}}
    assert env["DEDUPE_TABLE"] == "cascata-test-dedupe"
    # profiles reads one origin stream (customers) and one derived stream
    assert set(json.loads(PIPELINE.environment("profiles", stage="test")["ORIGIN_STREAMS"])) == {
        "cascata-test-customers"}
    # and a processor reading derived streams only has no gate
    assert "ORIGIN_STREAMS" not in PIPELINE.environment("balances", stage="test")


def test_validation_refuses_what_breaks_the_effectively_once_argument() -> None:
    validate = PIPELINE.processor("validate")
    postings = PIPELINE.processor("postings")
    # An emitting processor with concurrent lanes per shard (its low-water marks would lie)
    lanes = replace(postings, sources=(replace(postings.sources[0], parallelization_factor=2),))
    # A processor reading an origin stream without the duplicate gate's table
    ungated = replace(validate, bindings=tuple(
        b for b in validate.bindings if b.env != "DEDUPE_TABLE"))
    broken = replace(PIPELINE, processors=tuple(
        {"postings": lanes, "validate": ungated}.get(p.name, p) for p in PIPELINE.processors))
    problems = broken.validate()
    assert any("postings: parallelization_factor > 1" in p for p in problems)
    assert any("validate: reads origin stream 'payments-raw' without a DEDUPE_TABLE" in p
               for p in problems)
    # An origin stream's horizon is bounded
    streams = tuple(replace(s, dedupe_horizon_s=10) if s.name == "customers" else s
                    for s in PIPELINE.streams)
    assert any("dedupe_horizon_s" in p for p in replace(PIPELINE, streams=streams).validate())


@pytest.mark.parametrize("processor", [p for p in PIPELINE.processors if p.tunables],
                         ids=lambda p: p.name)
def test_a_processors_tunables_go_to_an_optional_setting_it_reads(processor: Processor) -> None:
    settings = SETTINGS_BY_FUNCTION[processor.name]
    assert processor.tunables is not None
    variable = processor.tunables.variable
    assert variable in settings.variables() - settings.required_variables()
