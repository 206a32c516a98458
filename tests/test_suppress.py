"""Inline suppressions: `# lossdiag: ignore[CODES]` / `# lossdiag: ignore`, on the def line or the finding's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli_many, write

from lossdiag import suppress


@pytest.mark.parametrize(
    "line, expected",
    [
        ("def loss(y_true, y_pred):  # lossdiag: ignore", frozenset()),
        ("def loss(y_true, y_pred):  # lossdiag: ignore[LD105]", frozenset({"LD105"})),
        ("x = 1  # lossdiag: ignore[LD101, LD2]", frozenset({"LD101", "LD2"})),
        ("x = 1  # lossdiag: ignore[LD101,LD2]", frozenset({"LD101", "LD2"})),
        ("x = 1  # lossdiag: ignore[LD101 LD2]", frozenset({"LD101", "LD2"})),
        ("x = 1  # LossDiag: IGNORE[ld101]", frozenset({"LD101"})),
        ("x = 1  #lossdiag:ignore", frozenset()),
        ("x = 1  # noqa: E501  # lossdiag: ignore[LD102]", frozenset({"LD102"})),
        ("x = 1  # lossdiag: ignore[ LD101 ] and why", frozenset({"LD101"})),
    ],
)
def test_parse_directive(line: str, expected: frozenset[str]):
    assert suppress.parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "def loss(y_true, y_pred):",
        "x = 1  # noqa: LD101",
        "x = 1  # lossdiag ignore",
        "x = 1  # lossdiag: ignored for now, see issue 12",  # prose, not a blanket directive
        "x = 1  # lossdiag: check",
        "",
    ],
)
def test_no_directive(line: str):
    assert suppress.parse(line) is None


def test_blanket_and_listed_codes_match_by_prefix(tmp_path: Path):
    path = write(
        tmp_path / "losses.py",
        """\
        def a(y_true, y_pred):  # lossdiag: ignore
            pass
        def b(y_true, y_pred):  # lossdiag: ignore[LD1]
            pass
        def c(y_true, y_pred):  # lossdiag: ignore[LD105]
            pass
        """,
    )
    file = str(path)
    assert suppress.is_suppressed("LD201", [(file, 1)])
    assert suppress.is_suppressed("LD101", [(file, 3)]) and suppress.is_suppressed("LD105", [(file, 3)])
    assert not suppress.is_suppressed("LD201", [(file, 3)])
    assert suppress.is_suppressed("LD105", [(file, 5)])
    assert not suppress.is_suppressed("LD101", [(file, 5)])
    assert not suppress.is_suppressed("LD101", [(file, 2)])  # a line without a directive
    assert suppress.is_suppressed("LD101", [(file, 2), (file, 1)])  # any of the places counts
    assert not suppress.is_suppressed("LD101", [(file, 0), (file, 99), (str(tmp_path / "gone.py"), 1)])


def test_an_edited_file_is_read_again(tmp_path: Path):
    path = tmp_path / "losses.py"
    path.write_text("def a(y_true, y_pred):\n    pass\n", encoding="utf-8")
    assert not suppress.is_suppressed("LD101", [(str(path), 1)])
    path.write_text("def a(y_true, y_pred):  # lossdiag: ignore[LD101]\n    pass\n", encoding="utf-8")
    assert suppress.is_suppressed("LD101", [(str(path), 1)])


# --- end to end: the JSON report marks the finding, and the exit status ignores it ---------------

# Line numbers matter: the def lines are 4, 9, 14, 19; the `sum` lines are 6, 11, 16, 21.
SUPPRESSED = """\
from keras import ops


def on_def(yz, yzhat):  # lossdiag: ignore[LD101]
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)


def on_sum_line(yz, yzhat):
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)  # lossdiag: ignore[LD101]


def other_code(yz, yzhat):  # lossdiag: ignore[LD105]
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)


def blanket(yz, yzhat):  # LossDiag: Ignore
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("suppress")
    write(root / "losses.py", SUPPRESSED)
    both = ["losses.py::on_def", "losses.py::on_sum_line", "losses.py::blanket"]
    whole, only_suppressed = run_cli_many(
        [(["check", "losses.py", "--format", "json"], root), (["check", *both, "--format", "json"], root)]
    )
    return whole, only_suppressed


def test_fixture_lines_are_where_the_comments_say():
    lines = SUPPRESSED.splitlines()
    assert lines[3].startswith("def on_def") and lines[8].startswith("def on_sum_line")
    assert "ops.sum" in lines[10] and "ignore[LD101]" in lines[10]
    assert lines[13].startswith("def other_code") and lines[18].startswith("def blanket")


@pytest.mark.tf
def test_suppressed_findings_are_reported_as_suppressed(runs):
    rc, out, err = runs[0]
    report = json.loads(out)
    by_name = {r["name"]: r for r in report["results"]}
    for name in ("on_def", "on_sum_line", "blanket"):
        findings = by_name[name]["findings"]
        assert [(f["code"], f["suppressed"]) for f in findings] == [("LD101", True)], name
        assert by_name[name]["status"] == "pass"
    # the finding points at the `sum` line, which is where the second directive sits
    assert by_name["on_sum_line"]["findings"][0]["line"] == 11
    assert report["summary"]["suppressed"] >= 3


@pytest.mark.tf
def test_a_directive_for_another_code_does_not_suppress(runs):
    rc, out, err = runs[0]
    report = json.loads(out)
    other = next(r for r in report["results"] if r["name"] == "other_code")
    # and as it suppressed nothing (the loss is not coupled), it is itself reported: LD003
    assert [(f["code"], f["suppressed"]) for f in other["findings"]] == [("LD003", False), ("LD101", False)]
    assert other["status"] == "fail"
    assert rc == 1, err


@pytest.mark.tf
def test_only_suppressed_findings_exit_0(runs):
    rc, out, err = runs[1]
    assert rc == 0, out + err
    report = json.loads(out)
    assert {r["name"] for r in report["results"]} == {"on_def", "on_sum_line", "blanket"}
    assert report["summary"]["suppressed"] == 3
    assert report["summary"]["fail"] == 0


# --- several directives on one line, and suppress.apply (selection, suppression, LD003) in-process ---

from lossdiag.models import Finding, LossResult, Probe  # noqa: E402


def test_directives_on_one_line_add_up():
    assert suppress.parse("def f(a, b):  # lossdiag: ignore[LD101]  # lossdiag: ignore[LD003]") == {"LD101", "LD003"}
    assert suppress.parse("x  # lossdiag: ignore[LD101]  # lossdiag: ignore") == frozenset()


def _everything(file: str):
    return lambda code: True


def _loss(file: Path, name: str, line: int, *findings: Finding, status: str = "pass") -> LossResult:
    probe = Probe(32, (32, 2), (32, 2), "binary")
    return LossResult(f"{file.name}::{name}", name, file.name, line, status, probe, (32,), 1.0, 1.0, 1.0, findings)


LD003_SOURCE = """\
def used(y_true, y_pred):  # lossdiag: ignore[LD101]
    pass
def stale(y_true, y_pred):  # lossdiag: ignore[LD101, LD105]
    pass
def blanket(y_true, y_pred):  # lossdiag: ignore
    pass
def not_selected(y_true, y_pred):  # lossdiag: ignore[LD201]
    pass
def silenced(y_true, y_pred):  # lossdiag: ignore[LD101, LD003]
    pass
def clean(y_true, y_pred):
    pass
"""


def test_apply_marks_suppressed_findings_and_reports_unused_directives(tmp_path: Path):
    path = write(tmp_path / "losses.py", LD003_SOURCE)
    bug = lambda line: Finding("LD101", "error", "summed", "losses.py", line)  # noqa: E731
    results = (
        _loss(path, "used", 1, bug(1), status="fail"),
        _loss(path, "stale", 3, bug(3), status="fail"),
        _loss(path, "blanket", 5),
        _loss(path, "not_selected", 7),
        _loss(path, "silenced", 9),
        _loss(path, "clean", 11),
    )
    selected = lambda file: (lambda code: code != "LD201")  # noqa: E731
    by_name = {r.name: r for r in suppress.apply(results, selected, tmp_path)}
    used = by_name["used"]
    assert [(f.code, f.suppressed) for f in used.findings] == [("LD101", True)] and used.status == "pass"

    stale = by_name["stale"]  # LD101 was used, LD105 was not
    assert [(f.code, f.suppressed) for f in stale.findings] == [("LD003", False), ("LD101", True)]
    assert "LD105" in stale.findings[0].message and "LD101" not in stale.findings[0].message.split("lists")[1]
    assert stale.findings[0].line == 3 and stale.status == "warn"

    blanket = by_name["blanket"]  # a blanket that covered nothing does not silence its own LD003 (ruff's RUF100)
    assert [(f.code, f.suppressed) for f in blanket.findings] == [("LD003", False)] and blanket.status == "warn"
    assert by_name["not_selected"].findings == ()  # LD201 did not run: its directive is not judged
    silenced = by_name["silenced"]  # the directive names LD003 itself: reported, and suppressed
    assert [(f.code, f.suppressed) for f in silenced.findings] == [("LD003", True)] and silenced.status == "pass"
    assert by_name["clean"].findings == () and by_name["clean"].status == "pass"


def test_ld003_is_not_reported_when_deselected_or_for_unchecked_losses(tmp_path: Path):
    path = write(tmp_path / "losses.py", LD003_SOURCE)
    no_ld003 = lambda file: (lambda code: code != "LD003")  # noqa: E731
    [blanket] = suppress.apply((_loss(path, "blanket", 5),), no_ld003, tmp_path)
    assert blanket.findings == ()
    not_probed = LossResult("losses.py::blanket", "blanket", "losses.py", 5, "error",
                            findings=(Finding("LD002", "warning", "raised", "losses.py", 5),))
    [result] = suppress.apply((not_probed,), _everything, tmp_path)
    assert [(f.code, f.suppressed) for f in result.findings] == [("LD002", True)]  # used: no LD003


def test_a_deselected_not_probed_finding_makes_the_loss_skipped(tmp_path: Path):
    write(tmp_path / "losses.py", "def f(a, b):\n    pass\n")
    result = LossResult("losses.py::f", "f", "losses.py", 1, "error",
                        findings=(Finding("LD002", "warning", "every probe raised", "losses.py", 1),))
    [out] = suppress.apply((result,), lambda file: (lambda code: code != "LD002"), tmp_path)
    assert out.status == "skipped" and out.note == "not probed: every probe raised" and out.findings == ()


def test_a_shared_helper_line_is_judged_across_losses(tmp_path: Path):
    write(tmp_path / "losses.py", "def a(y, p):\n    pass\ndef b(y, p):\n    pass\n")
    helper = write(tmp_path / "helper.py", "def h(x):\n    return x  # lossdiag: ignore[LD101]\n")
    at_helper = Finding("LD101", "error", "summed", "helper.py", 2)
    other = Finding("LD105", "warning", "coupled", "helper.py", 2)
    a = _loss(tmp_path / "losses.py", "a", 1, at_helper, status="fail")
    b = _loss(tmp_path / "losses.py", "b", 3, other, status="warn")
    out = suppress.apply((a, b), _everything, tmp_path)
    assert all(f.code != "LD003" for r in out for f in r.findings), out  # used by a, so not unused for b
    assert helper.exists()


# --- --add-ignore ---------------------------------------------------------------------------------


def test_add_ignore_keeps_crlf_line_endings(tmp_path: Path):
    path = tmp_path / "losses.py"
    path.write_bytes(b"from keras import ops\r\n\r\ndef loss2(yz, yzhat):\r\n    return ops.sum(yz)\r\n")
    bug = Finding("LD101", "error", "summed", "losses.py", 4)
    result = _loss(path, "loss2", 3, bug, Finding("LD201", "warning", "nan", "losses.py", 4), status="fail")
    added = suppress.add_ignores((result,), tmp_path)
    assert (added.comments, added.files, added.skipped) == (1, 1, ())
    assert path.read_bytes() == (
        b"from keras import ops\r\n\r\ndef loss2(yz, yzhat):  # lossdiag: ignore[LD101, LD201]\r\n"
        b"    return ops.sum(yz)\r\n"
    )
    [again] = suppress.apply((result,), _everything, tmp_path)
    assert again.active_findings == () and again.status == "pass"


def test_add_ignore_keeps_a_latin1_file_latin1(tmp_path: Path):
    path = tmp_path / "losses.py"
    source = "# -*- coding: latin-1 -*-\n# perte à la française\ndef perte(y, p):  # déjà vu\n    return y\n"
    path.write_bytes(source.encode("latin-1"))
    result = _loss(path, "perte", 3, Finding("LD102", "warning", "mean", "losses.py", 3), status="warn")
    assert suppress.add_ignores((result,), tmp_path).comments == 1
    data = path.read_bytes()
    assert data.decode("latin-1") == source.replace("# déjà vu", "# déjà vu  # lossdiag: ignore[LD102]")
    assert "é".encode() not in data
    assert suppress.is_suppressed("LD102", [(str(path), 3)])  # read back through its coding line


def test_add_ignore_keeps_a_bom_and_skips_lines_that_cannot_hold_a_comment(tmp_path: Path):
    path = tmp_path / "losses.py"
    source = 'def a(y, p):\n    pass\nb = make(\n    """\nnot code\n""")\nc = \\\n    make()\n'
    path.write_bytes(b"\xef\xbb\xbf" + source.encode())
    findings = Finding("LD102", "warning", "mean", "losses.py", 1)
    results = (
        _loss(path, "a", 1, findings, status="warn"),
        _loss(path, "inside_string", 5, Finding("LD102", "warning", "m", "losses.py", 5), status="warn"),
        _loss(path, "continued", 7, Finding("LD102", "warning", "m", "losses.py", 7), status="warn"),
    )
    added = suppress.add_ignores(results, tmp_path)
    assert added.comments == 1 and added.skipped == ("losses.py:5", "losses.py:7")
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfdef a(y, p):  # lossdiag: ignore[LD102]\n")
    compile(data, str(path), "exec")  # still valid Python


def test_add_ignore_leaves_files_without_findings_untouched(tmp_path: Path):
    path = write(tmp_path / "losses.py", "def a(y, p):\n    pass\n")
    before = path.stat().st_mtime_ns
    added = suppress.add_ignores((_loss(path, "a", 1),), tmp_path)
    assert (added.comments, added.files) == (0, 0) and path.stat().st_mtime_ns == before


# --- end to end: --add-ignore, then a clean run; LD003 on a stale directive ----------------------

ADOPT = (
    "from keras import ops\r\n\r\n\r\n"
    "def loss2(yz, yzhat):\r\n"
    "    return ops.sum(ops.square(yz[:, 1] - yzhat[:, 1]), axis=-1)\r\n\r\n\r\n"
    "def batch_mean(y_true, y_pred):\r\n"
    "    return ops.mean(ops.square(y_true - y_pred))\r\n\r\n\r\n"
    "def fine(y_true, y_pred):  # lossdiag: ignore[LD101]\r\n"
    "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\r\n"
)


@pytest.fixture(scope="module")
def adoption(tmp_path_factory: pytest.TempPathFactory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("adopt")
    path = root / "losses.py"
    path.write_bytes(ADOPT.encode())
    before = run_cli(["check", "losses.py", "--format", "json"], root)
    added = run_cli(["check", "losses.py", "--add-ignore"], root)
    after = run_cli(["check", "losses.py", "--format", "json", "--fail-on", "warning"], root)
    return root, before, added, after


@pytest.mark.tf
def test_a_stale_directive_is_ld003(adoption):
    root, (rc, out, err), _, _ = adoption
    fine = next(r for r in json.loads(out)["results"] if r["name"] == "fine")
    [finding] = fine["findings"]
    assert (finding["code"], finding["line"], finding["severity"]) == ("LD003", 12, "warning")
    assert "LD101" in finding["message"] and fine["status"] == "warn"
    assert rc == 1  # loss2's LD101; LD003 alone would not fail by default


@pytest.mark.tf
def test_add_ignore_then_the_next_run_is_clean(adoption):
    root, _, (rc, out, err), (rc2, out2, err2) = adoption
    assert rc == 0, out + err
    assert out.strip() == "Added 3 `# lossdiag: ignore` comments to 1 file."
    data = (root / "losses.py").read_bytes()
    assert b"def loss2(yz, yzhat):  # lossdiag: ignore[LD101]\r\n" in data
    assert b"def batch_mean(y_true, y_pred):  # lossdiag: ignore[LD102]\r\n" in data
    assert b"def fine(y_true, y_pred):  # lossdiag: ignore[LD101]  # lossdiag: ignore[LD003]\r\n" in data
    assert data.count(b"\r\n") == ADOPT.count("\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    assert rc2 == 0, out2 + err2  # even with --fail-on warning
    report = json.loads(out2)
    assert all(f["suppressed"] for r in report["results"] for f in r["findings"])
    assert report["summary"]["suppressed"] == 3
