"""Route 6: an alarm entering ALARM starts a retraining — once, and never as a storm.

`mapping` decides which model group and pipeline an alarm stands for; `service` runs the guards
(transition, cooldown, prepared data, single-flight lock, running executions) and starts the
pipeline on the latest prepared data.
"""
