"""Parsing the suite's `go test -test.v=test2json` output (pure: lines in, results out).

Invariant: only top-level tests (TestConformance/<ShortName>) get outcomes; a
subtest's failure is recorded under its test, and a line belongs to the test
the latest `=== RUN/CONT/NAME/PAUSE` header names.
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
    # test short name -> when it started or resumed (the caller's clock)
    _started: dict[str, float] = attrs.field(factory=dict)

    def feed(self, line: str, now: float) -> str | None:
        """Take one output line seen at `now`; return a progress message for it, if any."""
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
