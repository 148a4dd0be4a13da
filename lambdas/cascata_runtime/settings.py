"""A function's settings from its environment, with the variable names derived in one place.

A settings class is a frozen dataclass whose fields are the function's bindings and knobs; the
environment variable of each field is its name in capitals (`counts_table` -> `COUNTS_TABLE`),
except `stage`, which is `PIPELINE_STAGE`. The declaration binds a resource to a function by
the same variable name, so the two cannot drift apart without a test noticing
(`Pipeline.environment` gives exactly `variables()`). Fields with a default are optional:
absent or empty means the default. `from_env()` fails fast, naming every missing variable.

    @dataclass(frozen=True, slots=True)
    class CountSettings(FunctionSettings):
        counts_table: str
        quarantine_bucket: str
        stage: str
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Self

from cascata_runtime.errors import ConfigurationError

STAGE_VARIABLE = "PIPELINE_STAGE"


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    return STAGE_VARIABLE if field == "stage" else field.upper()


class FunctionSettings:
    """Base of a function's settings dataclass (see the module docstring)."""

    __slots__ = ()

    @classmethod
    def _fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass")
        return dataclasses.fields(cls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        missing: list[str] = []
        for field in cls._fields():
            name = variable(field.name)
            value = environ.get(name)
            required = (field.default is dataclasses.MISSING
                        and field.default_factory is dataclasses.MISSING)
            if value:
                values[field.name] = value
            elif required:
                missing.append(name)
        if missing:
            raise ConfigurationError(
                f"{cls.__name__}: missing environment variable(s): {', '.join(sorted(missing))}"
            )
        return cls(**values)

    @classmethod
    def variables(cls) -> frozenset[str]:
        """Every variable the settings read, required or optional."""
        return frozenset(variable(f.name) for f in cls._fields())

    @classmethod
    def required_variables(cls) -> frozenset[str]:
        return frozenset(
            variable(f.name) for f in cls._fields()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
