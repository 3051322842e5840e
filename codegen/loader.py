"""Turn generated source into a live class, cached by (source, target, options).

Generated code is exec'd into a fresh module registered in ``sys.modules`` under a name derived
from its hash, so tracebacks show the generated file's lines and ``inspect.getsource`` works.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import types

_CACHE: dict[str, type] = {}


def load_class(source: str, class_name: str, label: str) -> type:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    if digest in _CACHE:
        return _CACHE[digest]
    module_name = f"linarch_generated_{digest}"
    filename = f"<linarch:{label}:{digest}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    sys.modules[module_name] = module
    cls = getattr(module, class_name)
    cls.__linarch_source__ = source
    cls.__linarch_digest__ = digest
    _CACHE[digest] = cls
    return cls
