"""Name -> component registries: the only place config strings become objects."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: the object and the dataclass its config parses into.

    ``config`` is ``None`` when the object is itself a dataclass built straight from its config
    (schedules are).
    """

    name: str
    obj: T
    config: type | None


class Registry(Generic[T]):
    """A named family of components (schedules, methods, networks, data sets, samplers)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, config: type | None = None):
        """Decorator registering ``obj`` under ``name`` with an optional config dataclass."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, obj, config)
            return obj

        return deco

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise KeyError(self.unknown_message(name))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def name_of(self, obj: Any) -> str:
        """Reverse lookup: the registered name of ``obj`` (or of its type)."""
        for entry in self._entries.values():
            if entry.obj is obj or entry.obj is type(obj):
                return entry.name
        raise KeyError(f"{obj!r} is not a registered {self.kind}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def unknown_message(self, name: str) -> str:
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown {self.kind} {name!r}{extra}; allowed: {', '.join(self.names())}"
