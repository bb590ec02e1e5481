"""Security regression tests run like the integration tests: real kernel, the real `pycontain` command.

The integration suite's fixtures (pc, no_leaks, assert_leak_free, busybox_tarball, ...) and its root
check are re-used as they are, not copied: tests/integration/conftest.py is loaded under a name of its
own (two modules called `conftest` cannot share sys.modules), and tests/integration is put on sys.path so
tests here import `support`, `leaks` and `images_support` the way the integration tests do.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

_spec = importlib.util.spec_from_file_location("integration_conftest", _INTEGRATION / "conftest.py")
assert _spec is not None and _spec.loader is not None
_integration = importlib.util.module_from_spec(_spec)
sys.modules["integration_conftest"] = _integration
_spec.loader.exec_module(_integration)

# Every public name: the fixtures and the pytest_configure root check become this directory's too.
globals().update({k: v for k, v in vars(_integration).items() if not k.startswith("_") and k != "annotations"})
