"""Jobs run for as long as their work takes (moto 5.2.x finishes them the moment they are created).

AWS: a Processing job is `InProgress` from CreateProcessingJob until its container exits; a Glue
job run is `RUNNING` until its script ends. moto reports both finished at once, so a state-change
event could never be "the job finished" in the local loop. Here jobs stay running until the local
job runner, which really runs their scripts, finishes them with `finish_processing_job` /
`finish_glue_run`.
"""

from __future__ import annotations

from typing import Any

from moto.core.utils import utcnow
from moto.glue.models import glue_backends
from moto.moto_api import state_manager
from moto.sagemaker import models as sm_models

_original_processing_init = sm_models.FakeProcessingJob.__init__


def _processing_init(self: sm_models.FakeProcessingJob, *args: Any, **kwargs: Any) -> None:
    _original_processing_init(self, *args, **kwargs)
    self.processing_job_status = "InProgress"
    self.processing_end_time = None
    self.processing_start_time = utcnow()


def finish_processing_job(account: str, region: str, name: str, status: str, failure_reason: str = "") -> None:
    """Mark a Processing job Completed / Failed / Stopped (the container has exited)."""
    job = sm_models.sagemaker_backends[account][region].processing_jobs[name]
    job.processing_job_status = status
    job.processing_end_time = utcnow()
    job.last_modified_time = job.processing_end_time
    if failure_reason:
        job.failure_reason = failure_reason
        job.exit_message = failure_reason


def finish_glue_run(account: str, region: str, job_name: str, run_id: str, state: str, message: str = "") -> None:
    """Mark a Glue job run SUCCEEDED / FAILED / TIMEOUT / STOPPED."""
    job = glue_backends[account][region].jobs[job_name]
    run = (
        job.job_runs[run_id]
        if isinstance(job.job_runs, dict)
        else next(r for r in job.job_runs if r.job_run_id == run_id)
    )
    run._status = state
    run.completed_on = utcnow()
    run.modified_on = run.completed_on
    if message:
        run.error_message = message


def install() -> None:
    sm_models.FakeProcessingJob.__init__ = _processing_init  # type: ignore[method-assign]
    state_manager.set_transition(model_name="glue::job_run", transition={"progression": "manual", "times": 10**9})
