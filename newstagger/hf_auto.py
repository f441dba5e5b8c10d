"""Registration with transformers' Auto classes, done when transformers loads them.

After ``import newstagger``, ``AutoConfig.from_pretrained(folder)`` and ``AutoModel.from_pretrained(folder)``
load a saved newstagger folder. Registering at import time would cost every ``import newstagger`` torch and
transformers (2-5 s, 250-370 MB), which the ONNX runtime and the CLI's light commands never need; so a
meta-path finder waits for transformers' own auto modules and registers right after each has loaded:
the config class once ``configuration_auto`` is in, the model class once ``modeling_auto`` is. This is the
import-hook mechanism of PEP 451 (``importlib.abc.MetaPathFinder``); nothing of transformers is patched.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

_CONFIG_AUTO = "transformers.models.auto.configuration_auto"
_MODELING_AUTO = "transformers.models.auto.modeling_auto"


def _register_config() -> None:
    importlib.import_module("newstagger.configuration")  # registers NewsTaggerConfig with AutoConfig


def _register_model() -> None:
    importlib.import_module("newstagger.model")  # registers NewsTaggerModel with AutoModel


_REGISTER = {_CONFIG_AUTO: _register_config, _MODELING_AUTO: _register_model}


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for the two auto modules it asks the other finders for the real spec and runs
    the registration after the module's own code has run."""

    def __init__(self) -> None:
        self.pending = dict(_REGISTER)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        register = self.pending.pop(fullname)
        if not self.pending:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, run_module = spec.loader, spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            register()

        loader.exec_module = exec_module  # this spec's own loader instance
        return spec


def install() -> None:
    """Register now what transformers has already loaded; for the rest, register as it loads. Idempotent;
    does nothing when transformers is not installed (the torch-free runtime)."""
    if any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        return
    try:
        if importlib.util.find_spec("transformers") is None:
            return
    except (ImportError, ValueError):
        return
    hook = _RegisterAfterImport()
    for name in list(hook.pending):
        if name in sys.modules:
            hook.pending.pop(name)()
    if hook.pending:
        sys.meta_path.insert(0, hook)
