"""Package exports imported on first use (PEP 562), for packages whose modules are costly to import.

Loading the Dagster definitions reads settings models from such packages (Splink, scipy); with lazy
exports that costs nothing until a run actually matches records or fits a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each exported name from the module ``exports`` maps it to."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    return __getattr__
