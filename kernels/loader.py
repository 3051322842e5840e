"""Load a rendered kernel module, once per (spec, options, interpreter mode).

Triton reads a kernel's source from its file (inspect.getsource), so the module text is written
to a file named by its hash under a cache folder and imported from there; the file is also what
a user reads or ships. Whether Triton interprets (TRITON_INTERPRET=1) is decided when the
kernels are decorated, i.e. here, so that mode is part of the in-process cache key.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
import types
from pathlib import Path

from .render import render_kernels
from .spec import KernelOptions, KernelSpec, spec_hash

_LOCK = threading.Lock()
_MODULES: dict[tuple[KernelSpec, KernelOptions, bool], types.ModuleType] = {}


def cache_dir() -> Path:
    """Folder of rendered modules (one per user, under the system temp folder)."""
    user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "user")
    return Path(tempfile.gettempdir()) / f"linarch-kernels-{user}"


def module_name(spec: KernelSpec, options: KernelOptions) -> str:
    return f"linarch_kernels_{spec.name}_{spec_hash(spec, options)}"


def write_kernels(spec: KernelSpec, options: KernelOptions, folder: Path | None = None) -> Path:
    """Render and write the module file (atomically; kept if already there); return its path."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module_name(spec, options)}.py"
    source = render_kernels(spec, options)
    if path.exists() and path.read_text() == source:
        return path
    handle, tmp = tempfile.mkstemp(dir=folder, suffix=".py.tmp")
    with os.fdopen(handle, "w") as out:
        out.write(source)
    os.replace(tmp, path)
    return path


def _interpreting() -> bool:
    import triton

    return bool(triton.knobs.runtime.interpret)


def load_kernels(spec: KernelSpec, options: KernelOptions | None = None) -> types.ModuleType:
    """Render + import the kernel module for (spec, options); cached in this process.

    The module's public entry point is `chunk_<spec.name>`. The same file runs compiled on a GPU
    (autotuned when options.autotune) and under TRITON_INTERPRET=1 (its fixed config): the module
    decides when it is imported, so that mode is part of the cache key.
    """
    options = options or KernelOptions()
    interpreting = _interpreting()
    key = (spec, options, interpreting)
    with _LOCK:
        if key in _MODULES:
            return _MODULES[key]
        path = write_kernels(spec, options)
        name = module_name(spec, options) + ("_interpreted" if interpreting else "")
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        _MODULES[key] = module
        return module
