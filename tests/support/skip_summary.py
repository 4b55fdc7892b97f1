"""A closing block that groups the session's skips by reason (a plugin registered in
tests/conftest.py): "12 skipped: redis-server not installed: ...".

``pytest -ra`` lists every skipped test on its own line; a newcomer whose machine lacks a service
(redis-server, promtool, the shared photos) wants to see once what was missing and how to get it.
Every skip in the suite names its reason, so the groups read as a to-do list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator

import pytest

TITLE = "skipped, by reason"
_PREFIX = "Skipped: "  # pytest's own prefix on a reason given to pytest.skip


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skip report carries (pytest stores it as (path, line, message))."""
    longrepr = report.longrepr
    message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return message.removeprefix(_PREFIX).strip() or "(no reason given)"


# The outermost wrapper: its block comes after pytest's own summaries (-ra's list included), just
# above the final "N passed, M skipped" line, where it is read.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    yield
    reports = terminalreporter.stats.get("skipped", [])
    if not reports:
        return
    counts = Counter(skip_reason(report) for report in reports)
    terminalreporter.write_sep("=", TITLE)
    for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"{count} skipped: {reason}")
