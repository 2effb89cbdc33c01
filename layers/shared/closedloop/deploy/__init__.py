"""Routes 4 and 5: an approved model version rolled out blue/green with automatic rollback, and the
outcome of every deployment recorded.

* `requests` — pure builders of the exact CreateModel / CreateEndpointConfig / CreateEndpoint /
  UpdateEndpoint payloads, and the checks of the rollout settings;
* `policy` — pure rules: approver verification, version ordering, endpoint statuses, backoff;
* `packages`, `hosting` — adapters over the Model Registry, SageMaker hosting and CloudWatch;
* `state` — the ledger's endpoint state, rolled-back marks and the endpoint's rollout lock;
* `rollout` + `queue` — route 4 (approval → deployment, rejection of the live version → rollback);
* `outcome` — route 5 (endpoint events → live / rolled back / failed).
"""
