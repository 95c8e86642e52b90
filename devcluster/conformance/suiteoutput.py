"""Parsing the suite's `go test -test.v=test2json` output (pure: lines in, results out).

Invariant: only top-level tests (TestConformance/<ShortName>) get outcomes; a
subtest's failure is recorded under its test, and a line belongs to the test
the latest `=== RUN/CONT/NAME/PAUSE` header names.

TestConformance itself fails when one of its tests fails, and also when its own
code does: the suite's setup, the writing of the report and the deletion of the
base resources (cleanups of TestConformance) fail through testify's require,
whose report (`Error Trace:`, `Error:`, `Test: TestConformance`) is written
under TestConformance's own header. Those reports are kept apart
(`own_errors`), so that a verdict can tell a failing test from a failing suite.
A plain `t.Error` leaves no such mark: in v1.6.1 the suite's own code has them
only in its setup (a Gateway or Pod list that failed while waiting for the base
namespaces, a CA certificate that could not be made); the exit code and the
TestConformance line still show such a failure when no test failed.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

# result lines of the suite's tests (TestConformance/<ShortName>), not of their
# subtests (one more path element)
_RESULT = re.compile(r"^--- (PASS|FAIL|SKIP): TestConformance/([^/\s]+) \((\d+(?:\.\d+)?)s\)$")
# a top-level test starting, or resuming after a pause (parallel tests)
_STARTED = re.compile(r"^=== (?:RUN|CONT)\s+TestConformance/([^/\s]+)$")
_CASE_FAILED = re.compile(r"^--- FAIL: TestConformance/([^/\s]+)/(\S+) \(")
# any header naming a test (or one of its subtests) as the owner of the lines below
_ANY_HEADER = re.compile(r"^=== (?:RUN|CONT|NAME|PAUSE)\s+TestConformance/([^/\s]+)")
_EXPLICITLY_SKIPPED = re.compile(r"Skipping (\S+): test explicitly skipped")
_NOT_SUPPORTED = re.compile(r"Skipping (\S+): suite does not support (\S+)")
_SUITE_RESULT = re.compile(r"^--- (PASS|FAIL): TestConformance \((\d+(?:\.\d+)?)s\)$")
# any header: the test it names (empty for go test's closing `=== NAME`) owns the lines below
_OWNER = re.compile(r"^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S*)")
_SUITE = "TestConformance"
# testify's failure report: `<spaces>\t<Label>:<padding>\t<text>`, continued by lines
# with spaces for a label; its first label is `Error Trace`
_TESTIFY_LINE = re.compile(r"^ +\t(?:([A-Z][A-Za-z ]*):)? *\t(.*)$")


@attrs.define
class SuiteResults:
    """What the suite's `go test -v` output says, test by test.

    Durations are wall time from the test's start (or its resumption, for a test
    that paused to run in parallel) to its result line: the suite's tests run
    their cases as parallel subtests, and `go test` reports a parent's duration
    without the time it waits for them.
    """

    # test short name -> (PASS|FAIL|SKIP, seconds), in completion order
    outcomes: dict[str, tuple[str, float]] = attrs.field(factory=dict)
    # tests skipped because the GatewayClass does not claim a feature they need -> feature
    not_supported: dict[str, str] = attrs.field(factory=dict)
    # tests skipped by -run-test or -skip-tests
    explicitly_skipped: set[str] = attrs.field(factory=set)
    # failed test -> its failed subtests (path below the test), in order
    failed_cases: dict[str, list[str]] = attrs.field(factory=dict)
    # the TestConformance line (PASS|FAIL), absent if the binary died first
    suite_outcome: str | None = None
    # lines that say the binary died: a panic, the -test.timeout alarm
    fatal: list[str] = attrs.field(factory=list)
    # testify failure reports TestConformance wrote itself (not one of its tests):
    # `Error:` and `Messages:` text, one string per report
    own_errors: list[str] = attrs.field(factory=list)
    # test short name -> when it started or resumed (the caller's clock)
    _started: dict[str, float] = attrs.field(factory=dict)
    # the test the latest header named: the owner of the lines that follow
    _owner: str = ""
    # the label of the testify report TestConformance is writing (a continuation
    # line keeps it), None outside such a report
    _report_label: str | None = None

    def feed(self, line: str, now: float) -> str | None:
        """Take one output line seen at `now`; return a progress message for it, if any."""
        if m := _OWNER.match(line):
            self._owner = m.group(1)
        self._take_own_error(line)
        if m := _RESULT.match(line):
            outcome, name = m.group(1), m.group(2)
            seconds = max(float(m.group(3)), now - self._started.get(name, now))
            self.outcomes[name] = (outcome, seconds)
            quiet = name in self.not_supported or name in self.explicitly_skipped
            if outcome == "SKIP" and quiet:
                return None
            return f"{outcome:4} {name} ({seconds:.1f}s)"
        if m := _STARTED.match(line):
            self._started[m.group(1)] = now
        elif m := _CASE_FAILED.match(line):
            self.failed_cases.setdefault(m.group(1), []).append(m.group(2))
        elif m := _NOT_SUPPORTED.search(line):
            self.not_supported[m.group(1)] = m.group(2)
        elif m := _EXPLICITLY_SKIPPED.search(line):
            self.explicitly_skipped.add(m.group(1))
        elif m := _SUITE_RESULT.match(line):
            self.suite_outcome = m.group(1)
        elif line.startswith(("panic:", "fatal error:")):
            self.fatal.append(line)
        return None

    def _take_own_error(self, line: str) -> None:
        m = _TESTIFY_LINE.match(line) if self._owner == _SUITE else None
        if m is None:
            self._report_label = None
            return
        label, text = m.group(1), m.group(2).strip()
        if label == "Error Trace":
            self.own_errors.append("")
        elif self._report_label is None:
            return  # not inside a report: a log line that happens to look like one
        if label is not None:
            self._report_label = label
        if self._report_label == "Error":
            self.own_errors[-1] = f"{self.own_errors[-1]} {text}".strip()
        elif label == "Messages":
            self.own_errors[-1] += f" ({text})"

    def named(self, outcome: str) -> list[str]:
        return sorted(n for n, (o, _) in self.outcomes.items() if o == outcome)

    @property
    def skipped(self) -> list[str]:
        """Skipped for another reason than an unclaimed feature or -run-test."""
        return [
            n
            for n in self.named("SKIP")
            if n not in self.not_supported and n not in self.explicitly_skipped
        ]


def output_by_test(log: Path) -> dict[str, list[str]]:
    """The suite's output split by test: `go test` names the test before output that
    belongs to another one than the previous line's (=== RUN/CONT/NAME/PAUSE)."""
    by_test: dict[str, list[str]] = {}
    current: str | None = None
    with log.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("=== "):
                m = _ANY_HEADER.match(line)
                current = m.group(1) if m else None
            if current is not None:
                by_test.setdefault(current, []).append(line)
    return by_test
