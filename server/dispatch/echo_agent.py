"""The `echo` agent: writes its task input to ``out/output.json`` (a runtime for tests and demos).

It reads the task payload (JSON) on stdin and looks at its ``input``:

- ``{"sleep_s": N}``: sleeps N seconds first (so tests can catch a run mid-way
  or push it past its timeout);
- ``{"fail": "retry"}``: exits 75 (``EX_TEMPFAIL``, a retryable failure);
- ``{"fail": "permanent"}``: exits 1 (a permanent failure).

Otherwise it writes the input to ``out/output.json`` and exits 0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from server.masking import mask

EX_TEMPFAIL = 75


def main(stdin: str) -> int:
    """Run once on the payload text; the exit code."""
    payload: Any = json.loads(stdin or "{}")
    given = payload.get("input") if isinstance(payload, dict) else None
    task_input: dict[str, Any] = given if isinstance(given, dict) else {}
    sleep_s = task_input.get("sleep_s")
    if isinstance(sleep_s, int | float) and sleep_s > 0:
        time.sleep(float(sleep_s))
    fail = task_input.get("fail")
    if fail == "retry":
        print("asked to fail (retryable)", file=sys.stderr)
        return EX_TEMPFAIL
    if fail == "permanent":
        print("asked to fail (permanent)", file=sys.stderr)
        return 1
    out = Path("out")
    out.mkdir(exist_ok=True)
    # Outputs are readable by every reader of the tenant's tasks: secrets stay masked.
    (out / "output.json").write_text(json.dumps(mask(given), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.stdin.read()))
