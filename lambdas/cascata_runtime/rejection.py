"""Why an input cannot be accepted: the value every parser returns instead of raising.

Its own module so that the input policy (`cascata_runtime.policy`) and the envelope
(`cascata_runtime.envelope`, which re-exports it) can both use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input cannot be accepted: the offending field, a stable code, and a sentence."""

    field: str
    code: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "reason": self.reason}
