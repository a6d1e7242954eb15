#!/usr/bin/env python3
"""Splits a LeakSanitizer report into the leaks of our code and the others (issue 9).

    scripts/sanitizers/lsan_ours.py LOG [REPO_ROOT]

XCTest keeps its whole test tree (every test-case instance, its name, the runs and
suites) until the process exits, and hangs it from a weak-reference side table that
LeakSanitizer cannot see a pointer to (the object's refcount field holds it encoded),
so LeakSanitizer reports that tree as leaked at exit. A suppression cannot single it
out: every test's stack also passes through XCTest, so any pattern naming an XCTest
frame could hide a leak of ours too.

So nothing of XCTest is suppressed (suppressing the side table hides only that block:
LeakSanitizer still reports the tree under it); this reads every leak reported and
counts one as ours when:
  - a direct leak (nothing points to it: a retain never released, an object whose
    closure holds itself) has a frame in our code: a source file under REPO_ROOT/Sources/
    or REPO_ROOT/Tests/, or a symbol of one of our modules (frames without a file);
  - an indirect leak (held only by other leaked blocks: a retain cycle, or XCTest's tree)
    has a frame in our library code (REPO_ROOT/Sources/ or a library module's symbol).
    What test code alone allocated and stored in its XCTestCase instance (setUp's
    temporary URLs, teardown blocks, helper objects) hangs from XCTest's tree, which keeps
    it until exit: counted, not failed.
A frame that is the generated `init(name:testClosure:)` of a test class (how XCTest builds
its test list at start, one instance per test) is not ours.
Only the report of the test process itself is read (the last one in the log): a child
process (the CLI run by a test) that leaks exits with LeakSanitizer's status 23, which
fails the test that checks its exit status.
Prints every leak of ours in full and a one-line count of the others; exit status 1
when there is a leak of ours.
"""
import re
import sys

LIBRARY_MODULES = ["LoraModel", "LoraOps", "LoraText", "LoraTrain", "OpenCLRuntime", "KernelBench", "LoraGPUCLI"]
TEST_MODULES = ["LoraModelTests", "LoraOpsTests", "LoraTextTests", "LoraTrainTests"]
# Swift mangling: $s<length><ModuleName>…
def prefixes(modules):
    return tuple("$s%d%s" % (len(m), m) for m in modules)
LIBRARY_PREFIXES = prefixes(LIBRARY_MODULES)
ALL_PREFIXES = prefixes(LIBRARY_MODULES + TEST_MODULES)
TEST_LIST_INIT = re.compile(r"C4name11testClosure\w*ctcf[Cc]\b")

HEADER = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) allocated from:")
# A frame: "#3 0x… in function file:line" or, unsymbolized, "#3 0x…  (module+0x…)" (no function);
# the latter must not end the block, or the frames of ours after it would be lost.
FRAME = re.compile(r"^\s+#(\d+) 0x[0-9a-f]+(?: in (\S+))?(?: +(.*))?$")


def leaks(lines):
    """Yields (header line, [frame lines]) for every leak block."""
    current = None
    for line in lines:
        line = line.rstrip("\n")
        m = HEADER.match(line)
        if m:
            if current:
                yield current
            current = (line, [])
            continue
        if current is not None:
            if FRAME.match(line):
                current[1].append(line)
            else:
                yield current
                current = None
    if current:
        yield current


def ours(frames, root, library_only=False):
    """The frames of a leak's stack that are in our code (none: not ours); with
    library_only, only frames of the library (Sources/), not of the tests."""
    hits = []
    dirs = [root + "/Sources/"] + ([] if library_only else [root + "/Tests/"])
    names = LIBRARY_PREFIXES if library_only else ALL_PREFIXES
    for f in frames:
        m = FRAME.match(f)
        function, where = m.group(2) or "", m.group(3) or ""
        if TEST_LIST_INIT.search(function):
            continue
        if any(d in where for d in dirs) or function.startswith(names):
            hits.append(f)
    return hits


def last_report(lines):
    """The lines of the last LeakSanitizer report in the log (the test process's own, at exit)."""
    starts = [i for i, l in enumerate(lines) if "ERROR: LeakSanitizer: detected memory leaks" in l]
    return lines[starts[-1]:] if starts else []


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    log = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else "."
    with open(log, errors="replace") as fh:
        lines = fh.readlines()
    children = sum("ERROR: LeakSanitizer: detected memory leaks" in l for l in lines) - 1
    lines = last_report(lines)
    mine, others, other_bytes = [], 0, 0
    for header, frames in leaks(lines):
        if ours(frames, root, library_only=header.startswith("Indirect")):
            mine.append((header, frames))
        else:
            others += 1
            other_bytes += int(HEADER.match(header).group(2))
    if children > 0:
        print("lsan_ours: %d earlier report(s) in the log are child processes' (their tests see exit status 23)" % children)
    if lines and not mine and others == 0:
        print("lsan_ours: LeakSanitizer reported leaks but no leak block could be read from %s" % log)
        return 1
    for header, frames in mine:
        print(header)
        print("\n".join(frames))
        print()
    print("lsan_ours: %d leak(s) of ours; %d other leak(s) (%d bytes: XCTest's test tree with what the tests "
          "stored in it, runtime and library allocations)" % (len(mine), others, other_bytes))
    return 1 if mine else 0


if __name__ == "__main__":
    sys.exit(main())
