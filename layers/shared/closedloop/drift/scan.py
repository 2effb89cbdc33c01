"""The capture files written since the watermark, read per production variant in key order.

File by file and line by line (`CapturedTraffic.count`). Files younger than the settle time are
left for the next run (SageMaker may still be uploading older ones), and so is everything once the
invocation nears its deadline. Files captured before the live configuration took over are passed
over: they were served by the previous model. A file that cannot be used is skipped with its reason
in the ledger; a file that could not be read to the end is unread data: the watermark of its
variant stays before it.

The watermark (the last key read or skipped for good, per variant) is kept in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from closedloop import ledger_keys, routes
from closedloop.drift.live import LiveModel
from closedloop.drift.sample import RowSample
from closedloop.drift.sketch import CaptureSketch, DriftPlan
from closedloop.drift.traffic import CapturedTraffic, CaptureFile, SkippedFile
from closedloop.ledger import Clock, Ledger
from closedloop.observability import logger
from closedloop.route_output import RouteOutput

DEADLINE_MARGIN_S = 60.0


@dataclass
class CaptureScan:
    """What one scan counted, and where each variant's reading stopped."""

    sketch: CaptureSketch
    positions: dict[str, str]
    files_read: int = 0
    passed_over: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    stopped_early: list[str] = field(default_factory=list)
    sample: RowSample | None = None  # the rows kept for the explainability analysis, when asked for


class CaptureScanner:
    """Reads the live model's captured traffic from the watermark on, and keeps the watermark.

    A skipped file is recorded through `output` (the drift monitor's, with its line), else as a
    decision of route 7 for no line.
    """

    def __init__(
        self,
        traffic: CapturedTraffic,
        ledger: Ledger,
        *,
        clock: Clock,
        settle: timedelta,
        output: RouteOutput | None = None,
    ) -> None:
        self._traffic = traffic
        self._ledger = ledger
        self._output = output or RouteOutput(routes.DRIFT_MONITOR, ledger)
        self._clock = clock
        self._settle = settle

    def watermark(self, endpoint: str) -> dict[str, str]:
        """The last key read (or skipped for good) of each variant; {} before the first measurement."""
        state = self._ledger.get_state(ledger_keys.capture_watermark(endpoint)) or {}
        return {str(k): str(v) for k, v in (state.get("variants") or {}).items()}

    def move_watermark(self, live: LiveModel, positions: dict[str, str], at: datetime) -> None:
        """Record that every file up to `positions` was measured (or skipped for good)."""
        self._ledger.put_state(
            ledger_keys.capture_watermark(live.endpoint),
            {
                "last_key": max(positions.values()),
                "variants": positions,
                "updated_at": at.isoformat(),
                "model_package_arn": live.model_package_arn,
            },
        )

    def scan(
        self,
        live: LiveModel,
        plan: DriftPlan,
        since: dict[str, str],
        remaining_s: Callable[[], float] | None,
        sample: RowSample | None = None,
    ) -> CaptureScan:
        """Count the files after `since` (a watermark) into one sketch.

        Args:
            live: the live model, whose capture root is read.
            plan: the drift plan the sketches are counted for.
            since: the watermark to start from (not changed).
            remaining_s: seconds the invocation has left; reading stops `DEADLINE_MARGIN_S` before.
            sample: keeps a sample of the rows of the files counted (None: no rows are kept).

        Raises:
            ClosedloopError: the capture files could not be listed.
        """
        scan = CaptureScan(sketch=plan.new_sketch(), positions=dict(since), sample=sample)
        positions = scan.positions
        newest = self._clock() - self._settle
        for variant in self._traffic.variants(live):
            for file in self._traffic.files(live, variant, positions.get(variant, "")):
                at = file.started_at
                if at > newest:
                    break  # younger files (and all after them) are read next run
                if remaining_s is not None and remaining_s() < DEADLINE_MARGIN_S:
                    scan.stopped_early.append("deadline: the rest is read next run")
                    return scan
                if live.serving_since is not None and at < live.serving_since:
                    scan.passed_over += 1
                    positions[variant] = file.key
                    continue
                rows = sample.for_file(file.key) if sample is not None else None
                outcome = self._traffic.count(live, file, plan, rows)
                if isinstance(outcome, SkippedFile):
                    self._record_skipped(live, file, outcome)
                    scan.skipped.append(outcome)
                elif isinstance(outcome, CaptureSketch):
                    scan.sketch.merge(outcome)
                    if sample is not None and rows is not None:
                        sample.merge(rows)
                    scan.files_read += 1
                else:
                    scan.stopped_early.append(f"{file.key} was not read to the end ({outcome}); read again next run")
                    break
                positions[variant] = file.key
        return scan

    def _record_skipped(self, live: LiveModel, file: CaptureFile, skipped: SkippedFile) -> None:
        logger.warning("capture file skipped", key=skipped.key, reason=skipped.reason, detail=skipped.detail)
        self._output.record(
            event_id=file.etag or skipped.key,
            business_key=f"capture:{live.capture_bucket}/{skipped.key}"[:1400],
            action="read_capture_file",
            result="skipped",
            reason=f"{skipped.reason}: {skipped.detail}",
            details={"reason": skipped.reason, "bytes": file.size, "endpoint": live.endpoint},
        )
