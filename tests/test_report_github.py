"""GitHub workflow-command renderer: one annotation per unsuppressed finding, escaped like actions/toolkit."""

from __future__ import annotations

import re

import pytest

from lossdiag.models import Finding, LoadError, Location, LossResult, Report
from lossdiag.report import github

FILE = "fixtures/seed_losses.py"


def finding(code="LD101", severity="error", message="batch summed", line=7, hint="", suppressed=False, file=FILE):
    return Finding(code, severity, message, file, line, hint=hint, suppressed=suppressed)


def loss(name="loss2", findings=(), status="fail", file=FILE, line=12):
    return LossResult(f"{file}::{name}", name, file, line, status, findings=tuple(findings))


def _unescape(text: str) -> str:
    # The inverse of actions/toolkit's escaping (what the runner does when it reads the command).
    return (
        text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")
    )


_COMMAND = re.compile(r"^::(?P<level>error|warning|notice) (?P<props>[^:]*)::(?P<data>.*)$")


def parse(output: str) -> list[tuple[str, dict[str, str], str]]:
    """Split rendered output back into (level, properties, message), as the Actions runner would."""
    commands = []
    for line in output.splitlines():
        match = _COMMAND.match(line)
        assert match, f"not a workflow command: {line!r}"
        props = dict(part.split("=", 1) for part in match["props"].split(","))
        commands.append((match["level"], {k: _unescape(v) for k, v in props.items()}, _unescape(match["data"])))
    return commands


def test_finding_becomes_one_error_command_with_greppable_message():
    report = Report(results=(loss(findings=[finding(hint="keep the axis")]),))
    assert github.render(report) == (
        "::error file=fixtures/seed_losses.py,line=7,title=LD101 batch-sum::"
        "fixtures/seed_losses.py:7: LD101 batch summed — fix: keep the axis\n"
    )


def test_warning_severity_uses_warning_command_and_rule_name_in_title():
    report = Report(results=(loss(findings=[finding("LD105", "warning", "coupled", line=3)], status="warn"),))
    [(level, props, message)] = parse(github.render(report))
    assert level == "warning"
    assert props == {"file": FILE, "line": "3", "title": "LD105 coupled"}
    assert message == f"{FILE}:3: LD105 coupled"


def test_no_hint_means_no_fix_suffix():
    out = github.render(Report(results=(loss(findings=[finding(hint="")]),)))
    assert "fix:" not in out
    assert out.endswith("LD101 batch summed\n")


def test_load_error_without_line_is_anchored_on_line_1():
    report = Report(errors=(LoadError("broken.py", "LD001", "SyntaxError: invalid syntax"),))
    [(level, props, message)] = parse(github.render(report))
    assert level == "error"
    assert props == {"file": "broken.py", "line": "1", "title": "LD001 load-error"}
    assert message == "broken.py:1: LD001 SyntaxError: invalid syntax"


def test_load_error_keeps_its_line():
    report = Report(errors=(LoadError("broken.py", "LD001", "SyntaxError", line=4),))
    [(_, props, message)] = parse(github.render(report))
    assert props["line"] == "4"
    assert message.startswith("broken.py:4: LD001 ")


def test_one_command_per_finding_in_report_order():
    report = Report(
        results=(
            loss("a", [finding("LD101", line=5), finding("LD201", "warning", "nan", line=6)]),
            loss("b", [finding("LD104", message="b x b", line=9, file="z.py")], file="z.py"),
        ),
        errors=(LoadError("broken.py", "LD001", "ImportError"),),
    )
    commands = parse(github.render(report))
    assert [(p["title"].split()[0], p["file"], p["line"]) for _, p, _ in commands] == [
        ("LD001", "broken.py", "1"),
        ("LD101", FILE, "5"),
        ("LD201", FILE, "6"),
        ("LD104", "z.py", "9"),
    ]
    assert [level for level, _, _ in commands] == ["error", "error", "warning", "error"]


def test_finding_location_wins_over_loss_location():
    report = Report(results=(loss(findings=[finding(file="helpers.py", line=40)], line=12),))
    [(_, props, message)] = parse(github.render(report))
    assert (props["file"], props["line"]) == ("helpers.py", "40")
    assert message.startswith("helpers.py:40: ")


def test_message_data_escapes_percent_and_newlines_but_not_colon_or_comma():
    message = "ratio 3200%: sum, then\r\nmean\nend"
    out = github.render(Report(results=(loss(findings=[finding(message=message, hint="use a:b, c%")]),)))
    data = out.split("::", 2)[2]
    assert data == f"{FILE}:7: LD101 ratio 3200%25: sum, then%0D%0Amean%0Aend — fix: use a:b, c%25\n"
    assert out.count("\n") == 1  # one command stays on one line


def test_property_values_escape_colon_comma_percent_and_newline():
    path = "we,ird/100%/c:d\n.py"
    report = Report(results=(loss(findings=[finding(file=path, line=2)], file=path),))
    out = github.render(report)
    assert out.startswith("::error file=we%2Cird/100%25/c%3Ad%0A.py,line=2,title=LD101 batch-sum::")
    [(_, props, message)] = parse(out)
    assert props["file"] == path  # survives the runner's parsing
    assert message.startswith(path + ":2: LD101 ")


@pytest.mark.parametrize("hostile", ["::error::injected", "a\n::error file=x::forged", "%0A already escaped"])
def test_messages_cannot_forge_or_break_commands(hostile):
    report = Report(results=(loss(findings=[finding(message=hostile)]),))
    [(level, props, message)] = parse(github.render(report))
    assert props["file"] == FILE
    assert message == f"{FILE}:7: LD101 {hostile}"


def test_suppressed_findings_and_load_errors_are_not_emitted():
    report = Report(
        results=(loss(findings=[finding(suppressed=True), finding("LD105", "warning", "kept", line=8)]),),
        errors=(LoadError("broken.py", "LD001", "SyntaxError", suppressed=True),),
    )
    commands = parse(github.render(report))
    assert [p["title"] for _, p, _ in commands] == ["LD105 coupled"]


def test_only_suppressed_or_passing_gives_empty_output():
    report = Report(
        results=(loss(findings=[finding(suppressed=True)], status="pass"), loss("ok", status="pass")),
        errors=(LoadError("broken.py", "LD001", "x", suppressed=True),),
    )
    assert github.render(report) == ""


def test_empty_report_renders_empty_string():
    assert github.render(Report()) == ""


def test_related_locations_do_not_add_commands():
    f = Finding("LD101", "error", "m", FILE, 7, related=(Location(FILE, 12, "here"), Location(FILE, 3, "there")))
    assert len(parse(github.render(Report(results=(loss(findings=[f]),))))) == 1


def test_deterministic():
    report = Report(results=(loss(findings=[finding(hint="h"), finding("LD202", "warning", "no grad")]),))
    assert github.render(report) == github.render(report)
    assert github.render(report) == github.render(Report(results=report.results, log=("noise",)))


# --- GitHub shows at most 10 errors and 10 warnings per step ------------------------------------


def test_annotations_are_capped_per_level_and_the_rest_are_counted_in_a_notice():
    errors = [finding(line=n, message=f"error {n}") for n in range(1, 14)]
    warnings = [finding("LD102", "warning", f"warning {n}", line=100 + n) for n in range(1, 12)]
    report = Report(results=(loss(findings=errors + warnings),))
    lines = github.render(report).splitlines()
    commands = [line for line in lines if line.startswith("::")]
    levels = [line.split(" ", 1)[0] for line in commands]
    assert levels.count("::error") == 10 and levels.count("::warning") == 10
    plain = [line for line in lines if not line.startswith("::")]
    assert plain == [f"{FILE}:{n}:1: LD101 error {n}" for n in (11, 12, 13)] + [f"{FILE}:111:1: LD102 warning 11"]
    [(level, props, message)] = parse(lines[-1])
    assert level == "notice" and lines[-1] == commands[-1]
    assert message.startswith("4 more findings not annotated")


def test_no_notice_at_the_cap_exactly():
    report = Report(results=(loss(findings=[finding(line=n) for n in range(1, 11)]),))
    assert all(level == "error" for level, _, _ in parse(github.render(report)))
