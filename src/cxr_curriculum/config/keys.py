"""Reading a TOML table key by key, with errors that name the key at fault.

Every value read from a config file goes through :class:`Table`: a wrong type says
``stages[1].method.temperature: expected a number, got 'x'``, and a key nobody read is
refused with the closest allowed key suggested (``difflib``), so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ConfigError", "Table", "check_type"]

_KINDS = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "table": "a table",
    "list": "a list",
}


class ConfigError(ValueError):
    """A config file is invalid; the message starts with the file and the key path."""


def _is(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, Mapping)
    if kind == "list":
        return isinstance(value, list)
    raise ValueError(f"unknown kind {kind!r}")


def check_type(path: str, value: Any, kinds: str | Sequence[str]) -> Any:
    """Return ``value`` if it is one of ``kinds`` (``"int"``, ``"number"``, ...), else raise.

    Raises:
        ConfigError: ``"<path>: expected a number, got 'x'"``.
    """
    options = [kinds] if isinstance(kinds, str) else list(kinds)
    if any(_is(k, value) for k in options):
        return float(value) if options == ["number"] else value
    wanted = " or ".join(_KINDS[k] for k in options)
    raise ConfigError(f"{path}: expected {wanted}, got {value!r}")


class Table:
    """A TOML table being read; remembers which keys were used.

    Args:
        data: The table.
        path: Its key path in the file (``""`` for the top level).
    """

    def __init__(self, data: Mapping[str, Any], path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'file'}: expected a table, got {data!r}")
        self.data, self.path = dict(data), path
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        """The full path of ``name`` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def get(
        self,
        name: str,
        kinds: str | Sequence[str],
        default: Any = None,
        *,
        required: bool = False,
        choices: Iterable[Any] | None = None,
    ) -> Any:
        """Read ``name`` (checked against ``kinds`` and ``choices``) or return ``default``.

        Raises:
            ConfigError: If missing while ``required`` (when an unread key looks like a
                typo of ``name``, that key is named: ``tasks[0].kindd: unknown key; did
                you mean 'kind'?``), of the wrong type, or not a choice.
        """
        self._used.add(name)
        if name not in self.data:
            if required:
                typo = self._typo_of(name)
                if typo is not None:
                    raise ConfigError(f"{self.key(typo)}: unknown key; did you mean {name!r}?")
                raise ConfigError(f"{self.key(name)}: required key is missing")
            return default
        value = check_type(self.key(name), self.data[name], kinds)
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise ConfigError(f"{self.key(name)}: expected one of {allowed}, got {value!r}")
        return value

    def _typo_of(self, name: str) -> str | None:
        """A key of the table that is not read yet and looks like a misspelt ``name``."""
        unread = [k for k in self.data if k not in self._used]
        close = difflib.get_close_matches(name, unread, n=1, cutoff=0.75)
        return close[0] if close else None

    def at_least(self, name: str, minimum: int, default: int | None = None) -> int | None:
        """An integer ``name`` that must be ``>= minimum`` (or ``default`` if absent).

        Raises:
            ConfigError: ``"threads: expected an integer >= 1, got 0"``.
        """
        value = self.get(name, "int", default)
        if value is not None and value < minimum:
            raise ConfigError(f"{self.key(name)}: expected an integer >= {minimum}, got {value}")
        return value

    def table(self, name: str, *, required: bool = False) -> Table:
        """The sub-table ``name`` (empty if absent and not required)."""
        value = self.get(name, "table", {}, required=required)
        return Table(value, self.key(name))

    def tables(self, name: str, *, required: bool = False) -> list[Table]:
        """An array of tables (``[[name]]``), each with its index in the path."""
        value = self.get(name, "list", [], required=required)
        return [Table(v, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def list_of(self, name: str, kinds: str, default: Any = None, *, required: bool = False) -> Any:
        """A list whose every element is of ``kinds``."""
        value = self.get(name, "list", default, required=required)
        if value is None:
            return None
        return [check_type(f"{self.key(name)}[{i}]", v, kinds) for i, v in enumerate(value)]

    def finish(self, allowed: Iterable[str] = ()) -> None:
        """Refuse keys that were never read (and are not in ``allowed``), with a suggestion.

        Raises:
            ConfigError: ``"stages[0].setps: unknown key; did you mean 'steps'?"``.
        """
        known = self._used | set(allowed)
        for name in self.data:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {sorted(known)}"
                raise ConfigError(f"{self.key(name)}: unknown key{hint}")
