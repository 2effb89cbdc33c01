"""The whole loop on one machine: a moto server is the AWS, provisioned from `template.yaml` itself.

- `template`: load and transform the SAM template (aws-sam-translator, offline).
- `intrinsics`: evaluate CloudFormation intrinsic functions against parameters and created resources.
- `provision`: create what the template declares in the moto server; functions become local ones.
- `dispatcher`: deliver queued events to the real handlers in-process, with the template's
  event-source, retry and dead-letter behaviour.
"""
