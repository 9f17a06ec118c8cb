"""Checked access to a parsed YAML/TOML mapping: every failure is one ``ExperimentConfigError`` naming its key.

``Section(data, key, ctx, allowed)`` wraps one mapping of the config. Unknown keys are refused with the
closest valid key; each accessor (``integer``, ``string``, ``choice``, ...) states what it expects, so
the error says what was wrong and what would be right, e.g.
``experiment.yaml: budget.epochs: expected an integer >= 1, got 'ten'``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from kt_nnunet.errors import KtNnunetError, did_you_mean

MISSING = object()


class ExperimentConfigError(KtNnunetError, ValueError):
    """An experiment config is invalid; the message names the file, the key and the fix."""

    def __init__(self, message: str, key: str = "", source: str = ""):
        super().__init__(message)
        self.key = key
        self.source = source


@dataclass(frozen=True)
class Context:
    """Where a config came from, for messages: ``experiment.yaml`` or ``experiment config``."""

    source: str = "experiment config"

    def error(self, key: str, problem: str) -> ExperimentConfigError:
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        return ExperimentConfigError(where + problem, key=key, source=self.source)


def join_key(parent: str, child: str | int) -> str:
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else str(child)


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Section:
    """One mapping of the config, read key by key; ``finish()`` is implied (unknown keys fail at once)."""

    def __init__(self, data: Any, key: str, ctx: Context, allowed: Sequence[str]):
        if not isinstance(data, dict):
            raise ctx.error(key, f"expected a mapping with keys {', '.join(allowed)}, got {describe(data)}")
        for name in data:
            if not isinstance(name, str) or name not in allowed:
                hint = did_you_mean(str(name), allowed)
                raise ctx.error(join_key(key, str(name)), f"unknown key{hint or '.'} Valid keys here: "
                                                          f"{', '.join(allowed)}")
        self.data, self.key, self.ctx = data, key, ctx

    def key_of(self, name: str | int) -> str:
        return join_key(self.key, name)

    def error(self, name: str, problem: str) -> ExperimentConfigError:
        return self.ctx.error(self.key_of(name), problem)

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def raw(self, name: str, default: Any = MISSING) -> Any:
        if not self.has(name):
            if default is MISSING:
                raise self.error(name, "is required")
            return default
        return self.data[name]

    def integer(self, name: str, default: Any = MISSING, minimum: Optional[int] = None,
                maximum: Optional[int] = None) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        return check_integer(value, self.key_of(name), self.ctx, minimum, maximum)

    def number(self, name: str, default: Any = MISSING, minimum: Optional[float] = None,
               maximum: Optional[float] = None) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        return check_number(value, self.key_of(name), self.ctx, minimum, maximum)

    def boolean(self, name: str, default: Any = MISSING) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {describe(value)}")
        return value

    def string(self, name: str, default: Any = MISSING, pattern_help: Optional[str] = None,
               pattern: Optional[str] = None) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        return check_string(value, self.key_of(name), self.ctx, pattern, pattern_help)

    def choice(self, name: str, choices: Sequence[str], default: Any = MISSING) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        return check_choice(value, self.key_of(name), self.ctx, choices)

    def mapping(self, name: str, default: Any = MISSING) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        if not isinstance(value, dict):
            raise self.error(name, f"expected a mapping, got {describe(value)}")
        return value

    def sequence(self, name: str, default: Any = MISSING, allow_single: bool = False) -> Any:
        if not self.has(name):
            return self.raw(name, default)
        value = self.data[name]
        if isinstance(value, (list, tuple)):
            return list(value)
        if allow_single:
            return [value]
        raise self.error(name, f"expected a list, got {describe(value)}")


def check_integer(value: Any, key: str, ctx: Context, minimum: Optional[int] = None,
                  maximum: Optional[int] = None) -> int:
    bounds = _bounds(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(key, f"expected an integer{bounds}, got {describe(value)}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ctx.error(key, f"expected an integer{bounds}, got {value}")
    return int(value)


def check_number(value: Any, key: str, ctx: Context, minimum: Optional[float] = None,
                 maximum: Optional[float] = None) -> float:
    bounds = _bounds(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ctx.error(key, f"expected a number{bounds}, got {describe(value)}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ctx.error(key, f"expected a number{bounds}, got {value}")
    return float(value)


def check_string(value: Any, key: str, ctx: Context, pattern: Optional[str] = None,
                 pattern_help: Optional[str] = None) -> str:
    import re

    if not isinstance(value, str) or not value:
        raise ctx.error(key, f"expected a non-empty string, got {describe(value)}")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ctx.error(key, f"{value!r} is not valid: {pattern_help or 'must match ' + pattern}")
    return value


def check_choice(value: Any, key: str, ctx: Context, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        raise ctx.error(key, f"unknown value {describe(value)}{hint or ';'} choose one of {', '.join(choices)}")
    return value


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
