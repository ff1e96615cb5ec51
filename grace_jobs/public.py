"""Public models the job kinds share with the API's other response bodies (pydantic)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WarningPublic(BaseModel):
    """A condition that qualifies a result (design §2.10): a stable ``code``, a ``message`` that
    says what to change, and the numbers behind it as further fields."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
