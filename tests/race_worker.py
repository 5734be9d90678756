"""A ``pipeline`` process for start-race tests: imports everything, then runs the CLI once
per round, each round released by the test at one instant for all workers.

``python -m tests.race_worker DIR INDEX``: reads ``DIR/rounds.json`` (a list of argument
lists); for round ``r`` writes ``DIR/ready_r_INDEX``, waits for ``DIR/go_r``, runs
``pipeline <args>`` in this process and writes its exit status to ``DIR/done_r_INDEX``.
Imports (torch, MLflow, Optuna: seconds) happen before the first ``ready``, so the rounds
race on the stores, not on the interpreter's start.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def main(folder: Path, index: int) -> int:
    import mlflow.tracking  # noqa: F401  (imported before the race, as said above)
    import optuna  # noqa: F401
    import torch  # noqa: F401

    from pipeline.cli.commands import main as cli

    worst = 0
    for r, args in enumerate(json.loads((folder / "rounds.json").read_text())):
        (folder / f"ready_{r}_{index}").touch()
        while not (folder / f"go_{r}").exists():
            time.sleep(0.001)
        try:
            returned = cli.main(args, prog_name="pipeline", standalone_mode=False)
            code = returned if isinstance(returned, int) else 0  # click returns Exit's code
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            print(f"worker {index} round {r} failed:", flush=True)
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        (folder / f"done_{r}_{index}").write_text(str(code))
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
