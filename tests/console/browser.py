"""The browser of the console's tests: headless Chromium (Debian's ``chromium``, ``make setup``
installs it) driven by Playwright; the fixtures are in ``conftest.py``."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from local import REPO_ROOT

#: Debian's package; never a browser downloaded by Playwright. CHROMIUM overrides the path.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / ".local" / "test-artifacts"
#: Every wait of the tests (a loaded 2-core machine); each test takes a few seconds.
TIMEOUT_MS = 10_000


@dataclass
class Tab:
    page: Any
    #: Requests to anywhere but the gateway (refused) and the page's uncaught JavaScript errors.
    elsewhere: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
