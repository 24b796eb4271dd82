"""Returns configuration dataclasses built from a dict or JSON, refusing keys they do not have.

Every setting of the package (canary settings and thresholds, a serving-volume push, a Cloud Run
push, a serving contract) arrives as a dataclass, a dict or a JSON string (a component's
execution parameter, a command-line flag). This module is the one place that turns those into
the dataclass, so that a misspelt key fails the same way everywhere: with the caller's exception
type, the unknown key(s), the keys that are accepted, and what to do.

It imports nothing from the package, so every layer can use it.

Usage:
    config = dataclass_from_mapping(
        CanaryConfig, '{"num_requests": 50}', what="canary settings", error=CanaryConfigError
    )
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def parse_json_object(
    value: Mapping[str, Any] | str | None, *, what: str, error: type[Exception] = ValueError
) -> dict[str, Any]:
    """Returns a dict from a mapping, a JSON object string, or None / blank text (empty).

    Args:
        value: the mapping or JSON text.
        what: what the keys are, as the error message names them (e.g. "canary settings").
        error: the exception type to raise.

    Raises:
        error: the text is not JSON, or the value is not an object / mapping.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            example = '{"name": value, ...}'
            raise error(
                f"{what}: not valid JSON ({exc}); give a JSON object like {example}"
            ) from exc
    if not isinstance(value, Mapping):
        raise error(
            f"{what} must be a JSON object (a dict of name: value), got "
            f"{type(value).__name__} {value!r}"
        )
    return dict(value)


def dataclass_from_mapping(
    cls: type[T],
    value: T | Mapping[str, Any] | str | None,
    *,
    what: str,
    error: type[Exception] = ValueError,
) -> T:
    """Returns an instance of the dataclass `cls` from itself, a dict, JSON, or None (defaults).

    An instance of `cls` is returned as it is. Otherwise every key must be a field of `cls`
    and every field without a default must be given; the dataclass's own `__post_init__`
    checks the values (its exceptions pass through; a TypeError becomes `error`).

    Args:
        cls: the dataclass.
        value: an instance, a mapping of field values, a JSON object string, or None / ""
            (all defaults).
        what: what the keys are, as the error message names them, e.g. "canary settings".
            The message reads "unknown <what> [...]"; a name that starts with a capital
            letter ("Cloud Run settings") starts the message with "Unknown".
        error: the exception type to raise (each caller keeps its own).

    Raises:
        error: not JSON, not an object, unknown keys, missing required keys, or values of a
            type the dataclass cannot take.
    """
    if isinstance(value, cls):
        return value
    data = parse_json_object(value, what=what, error=error)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = sorted(f.name for f in fields)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise error(_unknown_keys_message(unknown, known, what))
    missing = [
        f.name
        for f in fields
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise error(f"{what}: {_list(missing)} required but not given; set them")
    try:
        return cls(**data)
    except TypeError as exc:
        raise error(f"{_sentence('invalid', what)} {what}: {exc}") from exc


def _unknown_keys_message(unknown: list[str], known: list[str], what: str) -> str:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            hints.append(f"'{key}' -> '{close[0]}'?")
    advice = "remove them or correct their spelling"
    if hints:
        advice += " (did you mean " + ", ".join(hints) + ")"
    return (
        f"{_sentence('unknown', what)} {what} {unknown}; the accepted keys are {_list(known)}: "
        f"{advice}"
    )


def _sentence(word: str, what: str) -> str:
    """Returns `word` capitalised when `what` is (the message then follows the caller's style)."""
    return word.capitalize() if what[:1].isupper() else word


def _list(names: list[str]) -> str:
    return ", ".join(names)
