"""The single list of fine-tuning methods: a method registers itself with :func:`register`.

Config validation, :func:`build_method`, the Hydra ``method/`` group test and the table vocabulary all read
:data:`REGISTRY`; nothing else in the repository lists method names. A new method is its module (decorated with
``@register``), its ``conf/method/<name>.yaml`` and one row of the contract test (tests/methods/test_contract.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spectune.methods.base import Method


@dataclass(frozen=True)
class MethodEntry:
    """One registered method: its name (``method=<name>``), class, hyper-parameter dataclass and a description.

    ``display``: the name tables print (e.g. "LoRA-Dash").
    """

    name: str
    cls: type[Method]
    spec: type | None
    description: str
    display: str

    def make_spec(self, **kwargs: Any) -> Any:
        """The spec dataclass built from ``kwargs``; unknown keys raise ``ValueError`` naming the known ones."""
        if self.spec is None:
            if kwargs:
                raise ValueError(f"method={self.name} takes no hyper-parameters; got {sorted(kwargs)}. Remove them "
                                 f"from conf/method/{self.name}.yaml or the command line.")
            return None
        known = {f.name for f in dataclasses.fields(self.spec)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"method={self.name} has no option(s) {unknown}; its options are {sorted(known)} "
                             f"(conf/method/{self.name}.yaml).")
        return self.spec(**kwargs)


REGISTRY: dict[str, MethodEntry] = {}


def register(name: str, *, description: str, display: str, spec: type | None = None) -> Callable[[type], type]:
    """Class decorator: add a :class:`~spectune.methods.base.Method` subclass to :data:`REGISTRY` as ``name``."""

    def wrap(cls: type) -> type:
        if name in REGISTRY and REGISTRY[name].cls is not cls:
            raise ValueError(f"Method name '{name}' is registered twice ({REGISTRY[name].cls.__name__}, "
                             f"{cls.__name__}).")
        cls.name = name
        REGISTRY[name] = MethodEntry(name=name, cls=cls, spec=spec, description=description, display=display)
        return cls

    return wrap


def method_names() -> list[str]:
    """The registered method names, in registration order."""
    return list(REGISTRY)


def entry(name: str) -> MethodEntry:
    """The registry entry of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown method '{name}'. Known methods: {method_names()} (choose with method=<name>).")
    return REGISTRY[name]


def build_method(name: str, **kwargs: Any) -> Method:
    """Build a method by name from keyword hyper-parameters (its spec's fields)."""
    e = entry(name)
    spec = e.make_spec(**kwargs)
    return e.cls() if e.spec is None else e.cls(spec)
