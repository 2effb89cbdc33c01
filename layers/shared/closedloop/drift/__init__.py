"""Route 7: the built-in drift monitor — captured traffic against the training baseline.

`stats` holds the statistics (plain Python: the Lambda layer has no numpy), `baseline` the
baseline and bias-report formats the pipeline writes, `capture` the streaming reader of SageMaker
data capture, `sketch` the bounded per-run accumulators, `monitor` the scheduled service.
"""
