"""The ledger: one DynamoDB table for every automated decision, lock, cooldown and watermark.

Item layout (partition key `pk`, sort key `sk`):

| item | pk | sk |
|---|---|---|
| decision | `KEY#<business key>` | `DECISION#<route>#<decision id>` |
| intent (a decision written before its side effect) | `KEY#<business key>` | `INTENT#<route>#<action>` |
| lock | `LOCK#<name>` | `LOCK` |
| state (cooldown, watermark, live version…) | `STATE#<name>` | `STATE` |
| consumed raw object | `OBJECT#<bucket>/<key>#<version>` | `CONSUMED` |

Decisions also carry `gsi1pk = MONTH#<yyyy-mm>` and `gsi1sk = <iso time>#<decision id>`, so the
`by_day` index answers "what did automation decide since DATE" (the audit report) with one query
per month, starting from the month of the ledger's first decision.
A decision id is derived from route, business key, action, result and event id: recording the
same outcome of the same event twice writes one item, so a retried event never doubles the audit.

A route whose side effect can outlive a crash (a job started, an endpoint changed, and then the
function dies before writing the decision down) writes the decision as an *intent* first
(`intend`). The next decision recorded for the same business key, route and action settles it:
when that decision is the intended one, the intent is simply removed; when it is anything else
(a retry that finds the side effect already done and would say "duplicate" or "already live"),
the intended decision is recorded first, with its original time, reason and details and
`recovered: true`, so the audit always shows the decision behind every side effect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ConfigDict, Field

from closedloop.aws import aws_errors, error_code
from closedloop.errors import LockHeldError
from closedloop.model import Model

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Clock = Callable[[], datetime]

DAY_INDEX = "by_day"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Decision(Model):
    """One automated decision: what event, what rule, what action, what result."""

    model_config = ConfigDict(frozen=True)

    route: str
    event_id: str
    business_key: str = Field(max_length=1400)
    action: str
    result: str
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime | None = None

    @property
    def decision_id(self) -> str:
        digest = hashlib.sha256(
            "\x1f".join((self.route, self.business_key, self.action, self.result, self.event_id)).encode()
        )
        return digest.hexdigest()[:20]


class RecordedDecision(Decision):
    at: datetime


class Lock(Model):
    model_config = ConfigDict(frozen=True)

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    reason: str = ""
    execution_arn: str = ""


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


class Ledger:
    """Adapter over the ledger table; every method says what it writes and what it raises."""

    def __init__(self, table_name: str, client: DynamoDBClient, clock: Clock = utcnow) -> None:
        self.table_name = table_name
        self._client = client
        self._clock = clock
        self._first_known = False

    # -- decisions ---------------------------------------------------------------------------------

    def record(self, decision: Decision) -> RecordedDecision:
        """Write a decision (idempotent for the same route, key, action, result and event).

        A pending intent of the same business key, route and action is settled by it: removed after
        the write, and first recorded itself when its result differs (see the module docstring).

        Raises:
            AwsServiceError / ThrottledError: the table could not be written.
        """
        key = {"pk": _s(f"KEY#{decision.business_key}"), "sk": _s(_intent_sk(decision.route, decision.action))}
        pending = self._get(key["pk"]["S"], key["sk"]["S"])
        if pending is not None and pending["result"]["S"] != decision.result:
            self._put_recovered(pending)
        recorded = self._put(decision)
        if pending is not None:
            self._delete(key)
        return recorded

    def intend(self, decision: Decision) -> None:
        """Write `decision` as the intent of a side effect about to be made (before making it).

        Raises:
            AwsServiceError / ThrottledError: the table could not be written (make no side effect).
        """
        item = self._item(decision)
        item["sk"] = _s(_intent_sk(decision.route, decision.action))
        item["kind"] = _s("intent")
        del item["gsi1pk"], item["gsi1sk"]
        with aws_errors("dynamodb:PutItem(intent)"):
            self._client.put_item(TableName=self.table_name, Item=item)

    @contextmanager
    def intent(
        self, decision: Decision, *, withdraw_on: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> Iterator[None]:
        """`intend` the decision, make the side effect in the block; withdraw the intent if it raised
        `withdraw_on` (the side effect was not made). A crash (no exception seen) leaves it to be settled.
        """
        self.intend(decision)
        try:
            yield
        except withdraw_on:
            self.withdraw_intent(decision.business_key, decision.route, decision.action)
            raise

    def settle_intent(self, business_key: str, route: str, action: str) -> bool:
        """Record the pending intent of (business key, route, action) as a decision, and remove it.

        For a retry that learns another way that the side effect was made (the objects are
        already taken by a run). Returns whether there was an intent to settle.
        """
        key = {"pk": _s(f"KEY#{business_key}"), "sk": _s(_intent_sk(route, action))}
        pending = self._get(key["pk"]["S"], key["sk"]["S"])
        if pending is None:
            return False
        self._put_recovered(pending)
        self._delete(key)
        return True

    def withdraw_intent(self, business_key: str, route: str, action: str) -> None:
        """Remove the intent of (business key, route, action): its side effect was not made."""
        self._delete({"pk": _s(f"KEY#{business_key}"), "sk": _s(_intent_sk(route, action))})

    def _put_recovered(self, intent_item: Mapping[str, Any]) -> None:
        intended = _decision(intent_item)
        note = "recorded on retry: the side effect was made and the function stopped before writing it down"
        self._put(
            intended.model_copy(
                update={
                    "reason": f"{intended.reason}; {note}" if intended.reason else note,
                    "details": {**intended.details, "recovered": True},
                }
            )
        )

    def _delete(self, key: dict[str, Any]) -> None:
        with aws_errors("dynamodb:DeleteItem(intent)"):
            self._client.delete_item(TableName=self.table_name, Key=key)

    def open_intents(self) -> list[RecordedDecision]:
        """Intents no decision has settled yet (a side effect whose outcome nobody wrote down)."""
        items = self._scan_kind("intent")
        return sorted((_decision(item) for item in items), key=lambda d: d.at)

    def _item(self, decision: Decision) -> dict[str, Any]:
        at = (decision.at or self._clock()).astimezone(UTC)
        iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "pk": _s(f"KEY#{decision.business_key}"),
            "sk": _s(f"DECISION#{decision.route}#{decision.decision_id}"),
            "gsi1pk": _s(f"MONTH#{iso[:7]}"),
            "gsi1sk": _s(f"{iso}#{decision.decision_id}"),
            "kind": _s("decision"),
            "route": _s(decision.route),
            "event_id": _s(decision.event_id),
            "business_key": _s(decision.business_key),
            "action": _s(decision.action),
            "result": _s(decision.result),
            "reason": _s(decision.reason),
            "details": _s(json.dumps(decision.details, sort_keys=True, default=str)),
            "at": _s(iso),
        }

    def _put(self, decision: Decision) -> RecordedDecision:
        at = (decision.at or self._clock()).astimezone(UTC)
        recorded = RecordedDecision(**{**decision.model_dump(), "at": at})
        item = self._item(recorded)
        with aws_errors("dynamodb:PutItem(decision)"):
            self._client.put_item(TableName=self.table_name, Item=item)
        self._remember_first(item["at"]["S"])
        return recorded

    def _remember_first(self, iso: str) -> None:
        """Keep the time of the ledger's first decision (where an audit can start), once per process."""
        if self._first_known:
            return
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "pk": _s("STATE#ledger-first-decision"),
                    "sk": _s("STATE"),
                    "kind": _s("state"),
                    "values": _s(json.dumps({"at": iso})),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                with aws_errors("dynamodb:PutItem(first decision)"):
                    raise
        self._first_known = True

    def decisions_for(self, business_key: str) -> list[RecordedDecision]:
        """Every decision recorded for one business key, oldest first."""
        items = self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
            ExpressionAttributeValues={":pk": _s(f"KEY#{business_key}"), ":sk": _s("DECISION#")},
        )
        return sorted((_decision(item) for item in items), key=lambda d: d.at)

    def decisions_since(self, since: datetime, until: datetime | None = None) -> list[RecordedDecision]:
        """Every decision recorded in [since, until) (until: now, inclusive), oldest first.

        One query of the by-month index per month, from the later of `since` and the ledger's
        first decision.
        """
        first = self.get_state("ledger-first-decision")
        start = since.astimezone(UTC)
        if first is not None:
            start = max(
                start,
                datetime.fromisoformat(first["at"].replace("Z", "+00:00")).replace(
                    day=1, hour=0, minute=0, second=0, microsecond=0
                ),
            )
        end = (until or self._clock()).astimezone(UTC)
        low = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        found: list[RecordedDecision] = []
        year, month = start.year, start.month
        while (year, month) <= (end.year, end.month):
            items = self._query(
                IndexName=DAY_INDEX,
                KeyConditionExpression="gsi1pk = :month AND gsi1sk >= :low",
                ExpressionAttributeValues={":month": _s(f"MONTH#{year:04d}-{month:02d}"), ":low": _s(low)},
            )
            found.extend(d for d in map(_decision, items) if since <= d.at and (until is None or d.at < until))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return sorted(found, key=lambda d: d.at)

    # -- locks -------------------------------------------------------------------------------------

    def acquire_lock(self, name: str, holder: str, lease: timedelta, reason: str = "") -> Lock:
        """Take a single-flight lock, or re-take one this holder already has.

        A lease that has run out (its holder died) can be taken by anyone.

        Raises:
            LockHeldError: another holder's lease is still running (context: holder, expires_at).
        """
        now = self._clock()
        lock = Lock(name=name, holder=holder, acquired_at=now, expires_at=now + lease, reason=reason)
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "pk": _s(f"LOCK#{name}"),
                    "sk": _s("LOCK"),
                    "kind": _s("lock"),
                    "holder": _s(holder),
                    "reason": _s(reason),
                    "acquired_at": _s(now.isoformat()),
                    "expires_at": _n(_epoch(lock.expires_at)),
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR holder = :holder",
                ExpressionAttributeValues={":now": _n(_epoch(now)), ":holder": _s(holder)},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                with aws_errors("dynamodb:PutItem(lock)"):
                    raise
            current = self.get_lock(name)
            raise LockHeldError(
                f"lock {name} is held",
                lock=name,
                holder=current.holder if current else "",
                expires_at=current.expires_at.isoformat() if current else "",
            ) from None
        return lock

    def release_lock(self, name: str, holder: str) -> bool:
        """Release a lock this holder has; returns False when it was not (or no longer) theirs."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key={"pk": _s(f"LOCK#{name}"), "sk": _s("LOCK")},
                ConditionExpression="holder = :holder",
                ExpressionAttributeValues={":holder": _s(holder)},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            with aws_errors("dynamodb:DeleteItem(lock)"):
                raise
        return True

    def bind_lock(self, name: str, holder: str, execution_arn: str) -> None:
        """Record which pipeline execution a held lock stands for (so its end can release it).

        Raises:
            LockHeldError: the lock is not (or no longer) held by `holder`.
        """
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key={"pk": _s(f"LOCK#{name}"), "sk": _s("LOCK")},
                UpdateExpression="SET execution_arn = :arn",
                ConditionExpression="holder = :holder",
                ExpressionAttributeValues={":arn": _s(execution_arn), ":holder": _s(holder)},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                with aws_errors("dynamodb:UpdateItem(lock)"):
                    raise
            raise LockHeldError(f"lock {name} is not held by {holder}", lock=name) from None

    def get_lock(self, name: str) -> Lock | None:
        item = self._get(f"LOCK#{name}", "LOCK")
        if item is None:
            return None
        return Lock(
            name=name,
            holder=item["holder"]["S"],
            reason=item.get("reason", {}).get("S", ""),
            acquired_at=datetime.fromisoformat(item["acquired_at"]["S"]),
            expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), UTC),
            execution_arn=item.get("execution_arn", {}).get("S", ""),
        )

    # -- named state (cooldowns, watermarks, live versions) ---------------------------------------

    def put_state(self, name: str, values: Mapping[str, Any]) -> None:
        """Overwrite a named state item with JSON-serialisable values."""
        with aws_errors("dynamodb:PutItem(state)"):
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "pk": _s(f"STATE#{name}"),
                    "sk": _s("STATE"),
                    "kind": _s("state"),
                    "values": _s(json.dumps(dict(values), sort_keys=True, default=str)),
                    "updated_at": _s(self._clock().isoformat()),
                },
            )

    def get_state(self, name: str) -> dict[str, Any] | None:
        item = self._get(f"STATE#{name}", "STATE")
        if item is None:
            return None
        values: dict[str, Any] = json.loads(item["values"]["S"])
        return values

    # -- raw objects consumed by a preparation run ---------------------------------------------------

    def consumed_objects(self, identities: Iterable[str]) -> dict[str, str]:
        """Which of these raw-object identities a preparation run already took: identity → run id."""
        wanted = list(dict.fromkeys(identities))
        found: dict[str, str] = {}
        for chunk in _chunks(wanted, 100):
            request: Any = {
                self.table_name: {
                    "Keys": [{"pk": _s(f"OBJECT#{i}"), "sk": _s("CONSUMED")} for i in chunk],
                    "ConsistentRead": True,
                }
            }
            while request:
                with aws_errors("dynamodb:BatchGetItem(objects)"):
                    response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[item["pk"]["S"].removeprefix("OBJECT#")] = item["run_id"]["S"]
                request = response.get("UnprocessedKeys") or None
        return found

    def mark_consumed(self, identities: Iterable[str], run_id: str) -> None:
        """Record that a preparation run took these raw objects (idempotent)."""
        at = self._clock().isoformat()
        for chunk in _chunks(list(dict.fromkeys(identities)), 25):
            request: Any = {
                self.table_name: [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": _s(f"OBJECT#{i}"),
                                "sk": _s("CONSUMED"),
                                "kind": _s("object"),
                                "run_id": _s(run_id),
                                "at": _s(at),
                            }
                        }
                    }
                    for i in chunk
                ]
            }
            while request:
                with aws_errors("dynamodb:BatchWriteItem(objects)"):
                    response = self._client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or None

    # -- helpers -----------------------------------------------------------------------------------

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        with aws_errors("dynamodb:GetItem"):
            response = self._client.get_item(
                TableName=self.table_name, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True
            )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _scan_kind(self, kind: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("scan")
        with aws_errors("dynamodb:Scan"):
            for page in paginator.paginate(
                TableName=self.table_name,
                FilterExpression="#kind = :kind",
                ExpressionAttributeNames={"#kind": "kind"},
                ExpressionAttributeValues={":kind": _s(kind)},
            ):
                yield from page.get("Items", [])

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("query")
        with aws_errors("dynamodb:Query"):
            for page in paginator.paginate(TableName=self.table_name, **kwargs):
                yield from page.get("Items", [])


def _decision(item: Mapping[str, Any]) -> RecordedDecision:
    return RecordedDecision(
        route=item["route"]["S"],
        event_id=item["event_id"]["S"],
        business_key=item["business_key"]["S"],
        action=item["action"]["S"],
        result=item["result"]["S"],
        reason=item.get("reason", {}).get("S", ""),
        details=json.loads(item.get("details", {}).get("S", "{}")),
        at=datetime.fromisoformat(item["at"]["S"].replace("Z", "+00:00")),
    )


def _intent_sk(route: str, action: str) -> str:
    return f"INTENT#{route}#{action}"


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
