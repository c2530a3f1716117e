"""Import a rendered model.py by path (the harness scripts run without llmspec installed)."""

from __future__ import annotations

import importlib.util
import sys


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
