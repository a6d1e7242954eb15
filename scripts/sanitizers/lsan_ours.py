#!/usr/bin/env python3
"""Splits a LeakSanitizer report into the leaks of our code and the others (issue 9).

    scripts/sanitizers/lsan_ours.py LOG [REPO_ROOT]

XCTest keeps its whole test tree (every test-case instance, its name, the runs and
suites) until the process exits, and hangs it from a weak-reference side table that
LeakSanitizer cannot see a pointer to (the object's refcount field holds it encoded),
so LeakSanitizer reports that tree as leaked at exit. A suppression cannot single it
out: every test's stack also passes through XCTest, so any pattern naming an XCTest
frame could hide a leak of ours too.

So nothing of XCTest is suppressed; this reads every leak LeakSanitizer reports and
counts a leak as ours when its allocation stack has a frame in our code:
  - a source file under REPO_ROOT/Sources/ or REPO_ROOT/Tests/, or
  - a symbol of one of our modules (for frames without a file: thunks, specializations),
except a frame that is the generated `init(name:testClosure:)` of a test class, which
is how XCTest builds its test list at start (one instance per test, kept until exit):
an allocation whose only frames of ours are such an init is XCTest's.
Prints every leak of ours in full and a one-line count of the others; exit status 1
when there is a leak of ours (or the log has no report but says it should).
"""
import re
import sys

OUR_MODULES = ["LoraModel", "LoraOps", "LoraText", "LoraTrain", "OpenCLRuntime", "KernelBench", "LoraGPUCLI",
               "LoraModelTests", "LoraOpsTests", "LoraTextTests", "LoraTrainTests", "COpenCL", "CBLAS"]
# Swift mangling: $s<length><ModuleName>…
OUR_PREFIXES = tuple("$s%d%s" % (len(m), m) for m in OUR_MODULES)
TEST_LIST_INIT = re.compile(r"C4name11testClosure\w*ctcf[Cc]\b")

HEADER = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) allocated from:")
FRAME = re.compile(r"^\s+#(\d+) 0x[0-9a-f]+ in (\S+)(?: (.*))?$")


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


def ours(frames, root):
    """The frames of a leak's stack that are in our code (none: not ours)."""
    hits = []
    for f in frames:
        m = FRAME.match(f)
        function, where = m.group(2), m.group(3) or ""
        if TEST_LIST_INIT.search(function):
            continue
        in_source = (root + "/Sources/") in where or (root + "/Tests/") in where
        if in_source or function.startswith(OUR_PREFIXES):
            hits.append(f)
    return hits


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    log = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else "."
    with open(log, errors="replace") as fh:
        lines = fh.readlines()
    mine, others, other_bytes = [], 0, 0
    for header, frames in leaks(lines):
        if ours(frames, root):
            mine.append((header, frames))
        else:
            others += 1
            other_bytes += int(HEADER.match(header).group(2))
    reported = any("ERROR: LeakSanitizer: detected memory leaks" in l for l in lines)
    if reported and not mine and others == 0:
        print("lsan_ours: LeakSanitizer reported leaks but no leak block could be read from %s" % log)
        return 1
    for header, frames in mine:
        print(header)
        print("\n".join(frames))
        print()
    print("lsan_ours: %d leak(s) with a frame in our code; %d other leak(s) (%d bytes: XCTest's test tree, "
          "runtime and library allocations with no frame of ours)" % (len(mine), others, other_bytes))
    return 1 if mine else 0


if __name__ == "__main__":
    sys.exit(main())
