"""Command-line plumbing shared by the lcc example tools.

A tool script imports it after putting ``examples/`` on ``sys.path``::

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from _common import cli

Importing this package also lets the tools run from a source checkout in which
lcc is not installed (``sudo python3 examples/<tool>/<tool>.py``): when ``lcc``
cannot be imported, the checkout's ``client/`` and ``compile_server/`` are
added to ``sys.path``.
"""

from __future__ import annotations

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:  # (not importlib.util.find_spec: importing importlib.util is start time too)
    import lcc  # noqa: F401  the tool imports it next anyway
except ModuleNotFoundError as e:  # a checkout without `pip install -e .`
    if e.name != "lcc":
        raise
    for sub in ("client", "compile_server"):
        path = os.path.join(_REPO, sub)
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)
