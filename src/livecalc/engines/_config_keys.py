"""Messages for unknown config keys: the block's known keys and the closest one.

Every engine refuses a key it does not know, at any depth, so a misspelt option is never
ignored silently. ``unknown_key`` words the message for raw dicts (the ESG's);
``unknown_key_in_model`` finds the block of a pydantic model (the solver's nested blocks).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["unknown_key", "unknown_key_in_model"]


def unknown_key(where: str, key: str, known: Iterable[str]) -> str:
    """``"<where>: unknown key (did you mean 'x'?); known keys here: a, b"``."""
    names = list(known)
    close = difflib.get_close_matches(key, names, 1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown key{hint}; known keys here: {', '.join(names)}"


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``list[X] | None`` gives ``[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested_models(arg)]


def unknown_key_in_model(root: type[BaseModel], loc: Sequence[int | str], where: str) -> str:
    """The message for pydantic's ``extra_forbidden`` error at ``loc`` under ``root``."""
    model = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list index: the same block type
        field = model.model_fields.get(str(part))
        nested = _nested_models(field.annotation) if field is not None else []
        if not nested:
            break
        model = nested[0]
    return unknown_key(where, str(loc[-1]), model.model_fields)
