"""Declare and check a notebook's papermill parameters.

The validation cell right after the parameters cell calls `check_parameters`
with one spec per parameter. Each value is converted to its declared type
(papermill passes ``-p depth 5`` as an int but ``-r depth 5`` as the string
``"5"``; both are accepted) and written back; any bad value stops the notebook
with one `ParameterError` naming the parameter, the value given and what is
allowed, before anything is trained.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A notebook parameter has a value the notebook cannot use."""


class _Invalid(Exception):
    """Raised by a spec with the reason a value is refused."""


def _describe_range(low: float | None, high: float | None, exclusive_low: bool) -> str:
    if low is not None and high is not None and not exclusive_low:
        return f" from {low} to {high}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if exclusive_low else '>='} {low}")
    if high is not None:
        parts.append(f"<= {high}")
    return " " + " and ".join(parts) if parts else ""


@dataclass(frozen=True)
class Integer:
    """A whole number, optionally bounded (both bounds inclusive)."""

    min: int | None = None
    max: int | None = None

    def allowed(self) -> str:
        return "an integer" + _describe_range(self.min, self.max, False)

    def convert(self, value: Any) -> int:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, str):
            try:
                value = float(value.strip()) if "." in value else int(value.strip())
            except ValueError:
                raise _Invalid from None
        if isinstance(value, float):
            if not value.is_integer():
                raise _Invalid
            value = int(value)
        if not isinstance(value, int):
            raise _Invalid
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise _Invalid
        return value


@dataclass(frozen=True)
class Number:
    """A finite real number; `min` is exclusive when `exclusive_min` is set."""

    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    def allowed(self) -> str:
        return "a number" + _describe_range(self.min, self.max, self.exclusive_min)

    def convert(self, value: Any) -> float:
        if isinstance(value, bool):
            raise _Invalid
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise _Invalid from None
        if not math.isfinite(number):
            raise _Invalid
        too_low = self.min is not None and (
            number <= self.min if self.exclusive_min else number < self.min
        )
        if too_low or (self.max is not None and number > self.max):
            raise _Invalid
        return number


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of names."""

    options: Sequence[str]

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(option) for option in self.options)

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or value.strip() not in self.options:
            raise _Invalid
        return value.strip()


@dataclass(frozen=True)
class ListOf:
    """A non-empty list whose items all satisfy `item`.

    Accepts a list (``-y``/YAML, or a notebook edit) or a comma-separated
    string (``-p optimizers sgd,adam``).
    """

    item: Integer | Number | Choice
    min_length: int = 1

    def allowed(self) -> str:
        return f"a list of at least {self.min_length} items, each {self.item.allowed()}"

    def convert(self, value: Any) -> list:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            raise _Invalid
        converted = []
        for item in value:
            try:
                converted.append(self.item.convert(item))
            except _Invalid:
                raise _Invalid(f"item {item!r} is refused") from None
        return converted


Spec = Integer | Number | Choice | ListOf


def check_parameters(namespace: MutableMapping[str, Any], **specs: Spec) -> None:
    """Check the parameters named in `specs`, found in `namespace`.

    Call it as ``check_parameters(globals(), depth=Integer(2, 60), ...)`` in
    the cell after the parameters cell. Converted values are written back into
    `namespace`. Every bad value is reported in one
    `ParameterError`; a parameter missing from `namespace` is a bug in the
    notebook and is reported too.
    """
    problems = []
    checked = {}
    for name, spec in specs.items():
        if name not in namespace:
            problems.append(f"parameter {name!r} is declared but not defined")
            continue
        value = namespace[name]
        try:
            checked[name] = spec.convert(value)
        except _Invalid as invalid:
            which = f" ({invalid})" if str(invalid) else ""
            problems.append(
                f"parameter {name!r} got {value!r} ({type(value).__name__}){which}; "
                f"allowed: {spec.allowed()}"
            )
    if problems:
        raise ParameterError("Bad notebook parameter. " + "; ".join(problems))
    namespace.update(checked)
