"""Delete each safety check once and run the test that guards it: every test must fail.
Shared by delete_checks.py (the cluster) and delete_diagram_checks.py (the diagrams)."""

import pathlib
import subprocess
import sys
from collections.abc import Sequence


def run_deletions(
    mutations: Sequence[tuple[str, str, str, str, str]], test_files: Sequence[str]
) -> int:
    """For each (what, path, old, new, test): replace old (found once) by new in path, run the
    test, restore the file. Exit status: 0 when every test failed, 1 when one passed."""
    ok = True
    for what, path, old, new, test in mutations:
        p = pathlib.Path(path)
        text = p.read_text()
        assert text.count(old) == 1, (what, text.count(old))
        p.write_text(text.replace(old, new))
        try:
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-o", "addopts=",
                 "-p", "no:cacheprovider", *test_files, "-k", test],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            p.write_text(text)
        failed = r.returncode == 1
        ok &= failed
        verdict = "FAILS (good)" if failed else "PASSES (BAD)"
        print(f"{verdict}  {what}  [{test}]  rc={r.returncode}")
    return 0 if ok else 1
