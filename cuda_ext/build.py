"""Compiling the kernels: CPU always, CUDA where torch has CUDA and nvcc exists, cached per source hash.

The library is built with `torch.utils.cpp_extension.load` into a cache folder keyed by the sources,
the torch version and the CUDA architectures, so it compiles once per machine and loads in
milliseconds afterwards. Environment:
  AVS_EXT_CACHE          cache folder (default: ~/.cache/avs-cuda-ext)
  AVS_EXT_BUILD=0        never compile; use a cached build or fall back to the reference
  AVS_EXT_CUDA=0         build the CPU kernel only
  TORCH_CUDA_ARCH_LIST   CUDA architectures (default "8.0;9.0": A100 and H100)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
DEFAULT_ARCHS = "8.0;9.0"


def cache_root() -> Path:
    """The folder holding every cached build."""
    return Path(os.environ.get("AVS_EXT_CACHE", Path.home() / ".cache" / "avs-cuda-ext"))


def cuda_home() -> Path | None:
    """The CUDA toolkit folder (holding bin/nvcc and include/cuda_runtime.h), or None.

    CUDA_HOME / CUDA_PATH win; otherwise /usr/local/cuda, then the folder above the nvcc on PATH. An
    nvcc that is a wrapper script (as in some images) would make torch guess /usr/local, so every
    candidate must also hold the CUDA headers.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for candidate in filter(None, candidates):
        home = Path(candidate)
        if (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists():
            return home
    return None


def cuda_buildable() -> bool:
    """Whether this machine can compile the CUDA kernels: torch built with CUDA and a CUDA toolkit found."""
    if os.environ.get("AVS_EXT_CUDA", "1") == "0" or torch.version.cuda is None:
        return False
    return cuda_home() is not None


def sources(with_cuda: bool) -> list[Path]:
    """The C++ (and, with CUDA, .cu) files of the extension."""
    files = sorted(CSRC.glob("*.cpp"))
    return files + sorted(CSRC.glob("*.cu")) if with_cuda else files


def build_name(with_cuda: bool) -> str:
    """A library name that changes whenever anything that shapes the binary changes."""
    digest = hashlib.sha256()
    for path in sorted(CSRC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(torch.__version__.encode())
    if with_cuda:
        digest.update(str(torch.version.cuda).encode() + arch_list().encode())
    return f"avs_msda_{'cuda' if with_cuda else 'cpu'}_{digest.hexdigest()[:12]}"


def arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST, defaulting to A100 + H100."""
    return os.environ.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_ARCHS


def library_path(with_cuda: bool) -> Path:
    """Where the built shared library of this configuration lives (it may not exist yet)."""
    name = build_name(with_cuda)
    return cache_root() / name / f"{name}.so"


def build(with_cuda: bool | None = None, verbose: bool = False) -> Path:
    """Compile (if not cached) and return the shared library path. Raises on compiler errors."""
    with_cuda = cuda_buildable() if with_cuda is None else with_cuda
    home = cuda_home()
    if with_cuda and home is not None:
        os.environ["CUDA_HOME"] = str(home)
    import torch.utils.cpp_extension as cpp_extension

    if with_cuda:
        cpp_extension.CUDA_HOME = str(home)  # in case the module was imported before CUDA_HOME was set
    path = library_path(with_cuda)
    if path.is_file():
        return path
    if shutil.which("c++") is None and shutil.which("g++") is None:
        raise RuntimeError("no C++ compiler (c++/g++) on PATH")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", arch_list())
    cpp_extension.load(
        name=path.stem,
        sources=[str(s) for s in sources(with_cuda)],
        extra_cflags=["-O3", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3"],
        build_directory=str(path.parent),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    return path
