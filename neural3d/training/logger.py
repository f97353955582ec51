"""Training logs: CSV always, TensorBoard when installed."""

from __future__ import annotations

import csv
from pathlib import Path


class MetricsLogger:
    """Append scalar rows to ``logs/metrics.csv`` (columns grow as new keys appear) and TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "logs" / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: list[dict] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self._rows = list(csv.DictReader(f))
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = None

    def log(self, step: int, values: dict[str, float], prefix: str | None = None) -> None:
        row = {"step": step, **{(f"{prefix}/{k}" if prefix else k): float(v) for k, v in values.items()}}
        self._rows.append(row)
        keys: list[str] = []
        for r in self._rows:
            keys += [k for k in r if k not in keys]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self._rows)
        tmp.replace(self.path)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step":
                    self._tb.add_scalar(k, v, step)

    def truncate(self, step: int) -> None:
        """Drop rows after ``step`` (when resuming from an earlier checkpoint)."""
        self._rows = [r for r in self._rows if int(float(r["step"])) <= step]

    def close(self) -> None:
        """Close the TensorBoard writer (the CSV stays writable)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
