"""The PyTorch reference models that ``--verify`` and the tests compare ours with.

timm imports torchvision at start (transforms, datasets, ``FrozenBatchNorm2d``), but the
forward passes of its ResNet-50 and ViT use plain ``torch.nn``. PyPI's torchvision
wheels are built against CUDA torch and fail with the CPU torch
("operator torchvision::nms does not exist"), and installing them drags a CUDA torch in.
So when torchvision is not importable, `timm()` installs an import hook that provides
empty ``torchvision.*`` modules whose every name is a placeholder: importing succeeds,
and *using* a placeholder (calling or instantiating it) raises, naming the torchvision
attribute. A reference computation therefore either runs on timm's own code or fails
loudly; it can never silently run a stand-in. With a working torchvision installed, the
real one is used and no hook is installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


class MissingTorchvision(RuntimeError):
  """A torchvision name was used, but torchvision is not installed (see module doc)."""


class _Placeholder(type):
  """Placeholder classes: attribute access gives more placeholders, calling raises."""

  def __getattr__(cls, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return _Placeholder(f"{cls.__name__}.{name}", (), {})

  def __call__(cls, *args, **kwargs):
    raise MissingTorchvision(
        f"{cls.__name__} is torchvision's, which is not installed; time_jax only runs "
        "timm models whose forward pass does not need torchvision.")


class _StubModule(types.ModuleType):
  __path__: list = []  # a package, so submodules import

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return _Placeholder(f"{self.__name__}.{name}", (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Finds ``torchvision`` and its submodules as `_StubModule`s."""

  def find_spec(self, fullname, path, target=None):
    del path, target
    if fullname == "torchvision" or fullname.startswith("torchvision."):
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    return _StubModule(spec.name)

  def exec_module(self, module):
    del module


def _torchvision_works() -> bool:
  if importlib.util.find_spec("torchvision") is None:
    return False
  try:
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
    return not isinstance(torchvision, _StubModule)
  except Exception:  # pylint: disable=broad-except
    # A broken install (e.g. a CUDA wheel against the CPU torch): forget it.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
    return False


def _settle_transformers() -> None:
  """Lets transformers decide, before the stand-in exists, that torchvision is absent.

  transformers asks once whether torchvision is importable (and caches the answer); if
  it first asks while the stand-in is installed, it takes it for an install and fails
  parsing its (missing) version.
  """
  try:
    from transformers.utils import import_utils  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  import_utils.is_torchvision_available()


def timm():
  """The ``timm`` module, importable without torchvision (see the module docstring)."""
  if "timm" not in sys.modules and not _torchvision_works():
    _settle_transformers()
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
      sys.meta_path.insert(0, _StubFinder())
  import timm as timm_module  # pylint: disable=g-import-not-at-top
  return timm_module
