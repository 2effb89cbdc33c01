"""Route 7: the built-in drift monitor — captured traffic against the training baseline.

`stats` holds the statistics (plain Python: the Lambda layer has no numpy), `baseline` the
baseline and bias-report formats the pipeline writes, `capture` the streaming reader of SageMaker
data capture, `sketch` the bounded per-run accumulators, `monitor` the scheduled service. The
service's pieces: `run_lock` (one run per endpoint), `live` (what is live, over the `serving`
adapter), `plans` (the plan of the live evidence, read by the `evidence` adapter, kept per warm
container), `scan` (the files since the watermark, over the `traffic` adapter), `publisher` (the
CloudWatch metrics) and `reasons` (why nothing was measured). Feature attribution drift:
`attributions` (SageMaker's nDCG of an attribution ranking against the baseline's, pure), `sample`
(the window's rows kept for it) and `explain` (the window's Clarify explainability job, started and
read). Only the adapters call AWS.
"""
