"""The concise format (`path:line:col: CODE [loss] message`) and `--statistics`."""

from __future__ import annotations

import re

from lossdiag.models import Finding, LoadError, LossResult, Report
from lossdiag.report import concise

LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>LD\d{3}) (?:\[(?P<loss>[^\]]+)\] )?(?P<msg>.+)$")


def _report() -> Report:
    bug = Finding("LD101", "error", "summed\nover the batch", "a.py", 7)
    mean = Finding("LD102", "warning", "averaged", "a.py", 12)
    hidden = Finding("LD105", "warning", "coupled", "a.py", 20, suppressed=True)
    return Report(
        results=(
            LossResult("a.py::loss2", "loss2", "a.py", 5, "fail", findings=(bug,)),
            LossResult("a.py::m", "m", "a.py", 11, "warn", findings=(mean,)),
            LossResult("a.py::m2", "m2", "a.py", 15, "warn", findings=(Finding("LD102", "warning", "x", "a.py", 16),)),
            LossResult("a.py::c", "c", "a.py", 19, "pass", findings=(hidden,)),
        ),
        errors=(LoadError("broken.py", "LD001", "SyntaxError: invalid syntax"),),
    )


def test_one_line_per_unsuppressed_finding_with_a_column():
    lines = concise.render(_report()).splitlines()
    assert lines == [
        "broken.py:1:1: LD001 SyntaxError: invalid syntax",
        "a.py:7:1: LD101 [loss2] summed over the batch",
        "a.py:12:1: LD102 [m] averaged",
        "a.py:16:1: LD102 [m2] x",
    ]
    assert all(LINE.match(line) for line in lines)


def test_statistics_sorted_by_count_then_code():
    assert concise.render_statistics(_report()).splitlines() == [
        "2  LD102  batch-mean",
        "1  LD001  load-error",
        "1  LD101  batch-sum",
    ]
    assert concise.render_statistics(Report()) == ""
