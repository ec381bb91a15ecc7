"""One progress bar for a run: jobs done out of jobs planned so far, the round in its label.

Rate control asks for jobs in rounds (the first sweep, then a bisection round at a time)
and does not know how many rounds it will need, so the bar's total grows as each round is
planned. Log lines go above the bar instead of through it.
"""

from __future__ import annotations

from collections.abc import Callable


class RunProgress:
    """``plan(n, what)`` starts a round of n jobs; ``done()`` after each one; ``close()`` at the end."""

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.name, self.enabled = name, enabled
        self.rounds = 0
        self._bar = None

    def plan(self, jobs: int, what: str) -> None:
        if not jobs:
            return
        self.rounds += 1
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="job", dynamic_ncols=True, leave=False)
        self._bar.total += jobs
        self._bar.set_description(f"{self.name}: round {self.rounds} ({what})")
        self._bar.refresh()

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def write(self, line: str, log: Callable[[str], None]) -> None:
        """``log(line)`` without breaking the bar (tqdm clears it, prints, draws it again)."""
        if self._bar is not None and log is print:
            self._bar.write(line)
        else:
            log(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
