"""What a result was measured on: package versions, device, threads.

Recorded with every run, because a metric is only reproducible on the same software and device
(CPU results repeat bit for bit; GPU kernels and other library versions need not).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

import torch

PACKAGES = ("linarch", "torch", "transformers", "numpy", "datasets", "tokenizers", "triton",
            "flash-linear-attention", "fla-core", "lm_eval")


@dataclass(frozen=True)
class Environment:
    python: str
    platform: str
    packages: dict[str, str]
    device: str
    device_name: str
    torch_threads: int
    cpu_count: int
    backend: str = "torch"  # compiled layers ran the fused Triton kernels, or the torch form

    def to_json(self) -> dict:
        return asdict(self)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def capture_environment(device: torch.device) -> Environment:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return Environment(
        python=sys.version.split()[0],
        platform=platform.platform(),
        packages=package_versions(),
        device=str(device),
        device_name=name,
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count() or 0,
        backend=_backend(device),
    )


def _backend(device: torch.device) -> str:
    """What compiled layers ran on this device: their target is linarch.default_target(), and
    a Triton file runs its kernels only where linarch.backend says they run."""
    import linarch

    if linarch.default_target() != "triton":
        return "torch"
    return linarch.backend(device.type)
