"""Turn generated source into a live class.

Generated code is compiled and executed into a fresh module registered in ``sys.modules`` under
a name derived from its hash, so tracebacks show the generated file's lines (through
``linecache``) and the class pickles by reference. Reuse is the compile cache's job
(``linarch.codegen.build``): this module keeps no state of its own.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import types


def load_class(source: str, class_name: str, label: str) -> type:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"linarch_generated_{digest}"
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__linarch_source__", None) != source:
        filename = f"<linarch:{ascii(label)}:{digest}>"
        module = types.ModuleType(module_name)
        module.__file__ = filename
        module.__linarch_source__ = source
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own code
        sys.modules[module_name] = module
    cls = getattr(module, class_name)
    cls.__linarch_source__ = source
    cls.__linarch_digest__ = digest
    return cls
