"""The base of the domain models: frozen pydantic models read from store rows / API JSON.

Rows leave the store as JSON objects with camelCase names; a model is parsed once from such a
row (:meth:`Row.from_row`) and then passed around typed. Unknown fields are ignored, and a
``null`` where a field has a default means the default (rows written by older versions, or
PATCHed with explicit nulls, stay readable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from fluxfunc_common.userjson import JSONObject


def _none_as_empty_dict(value: object) -> object:
    return {} if value is None else value


def _none_as_empty_list(value: object) -> object:
    return [] if value is None else value


def _none_as_false(value: object) -> object:
    return False if value is None else value


UserKwargs = Annotated[JSONObject, BeforeValidator(_none_as_empty_dict)]
Tags = Annotated[tuple[str, ...], BeforeValidator(_none_as_empty_list)]
Flag = Annotated[bool, BeforeValidator(_none_as_false)]
Stamp = int | float | str | None  # createTime/updateTime as stored (epoch seconds, or ISO text)


class Row(BaseModel):
    """camelCase in rows and JSON, snake_case in Python; frozen once parsed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              frozen=True)

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Self:
        """The model of a store row (or API JSON)."""
        return cls.model_validate(row)

    def to_row(self) -> dict[str, object]:
        """The camelCase JSON object of this model."""
        return self.model_dump(by_alias=True, mode="json")
