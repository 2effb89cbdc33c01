"""What a route leaves behind, under its one name: its decisions, its notifications, its guards.

Every service writes through the `RouteOutput` of its route (`closedloop.routes`): a decision's
`route` in the ledger, a notification's `route`, and the key prefix of the idempotency guard of a
side effect (`<route>.<action>`) are the route table's name, written in one place. A service that
works for one model line (settings bound by `closedloop.line.bind_line`) says so in every
decision's details and every notification, as `line`; the service of no line adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from closedloop.idempotency import ModelT, Once
from closedloop.ledger import Decision, Ledger, RecordedDecision
from closedloop.notify import Notifier, Severity

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from closedloop.routes import Route
    from closedloop.settings import Settings


class RouteOutput:
    """One route's ledger decisions, notifications and idempotency guards, for one model line.

    Args:
        route: the route (its `name` is what the ledger, notifications and guards say).
        ledger: where decisions are recorded.
        notifier: where notifications go (routes that notify nobody pass none).
        settings: the service's settings: their `line` (empty: no line) and the idempotency TTL.
    """

    def __init__(
        self, route: Route, ledger: Ledger, notifier: Notifier | None = None, *, settings: Settings | None = None
    ) -> None:
        self.route = route.name
        self.line = settings.line if settings is not None else ""
        self._ledger = ledger
        self._notifier = notifier
        self._idempotency_ttl_s = settings.idempotency_ttl_s if settings is not None else None
        self._guards: list[Once[Any]] = []

    # -- decisions ---------------------------------------------------------------------------------

    def decision(
        self,
        *,
        event_id: str,
        business_key: str,
        action: str,
        result: str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        omit_none: bool = False,
    ) -> Decision:
        """A decision of this route (not yet recorded: for an intent, or to cite its id first).

        `omit_none` leaves out the details whose value is None (facts the decision did not learn).
        """
        facts = {key: value for key, value in (details or {}).items() if not (omit_none and value is None)}
        if self.line:
            facts["line"] = self.line
        return Decision(
            route=self.route,
            event_id=event_id,
            business_key=business_key,
            action=action,
            result=result,
            reason=reason,
            details=facts,
        )

    def record(
        self,
        *,
        event_id: str,
        business_key: str,
        action: str,
        result: str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        omit_none: bool = False,
    ) -> RecordedDecision:
        """Record a decision of this route (see `decision`); returns it as recorded.

        Raises:
            AwsServiceError / ThrottledError: the ledger could not be written.
        """
        return self._ledger.record(
            self.decision(
                event_id=event_id,
                business_key=business_key,
                action=action,
                result=result,
                reason=reason,
                details=details,
                omit_none=omit_none,
            )
        )

    # -- notifications -----------------------------------------------------------------------------

    def notify(self, subject: str, *, severity: Severity = "INFO", **facts: Any) -> str:
        """Publish a notification of this route; returns the SNS message id.

        Raises:
            TypeError: the route was given no notifier.
            AwsServiceError / ThrottledError: the topic could not be published to.
        """
        if self._notifier is None:
            raise TypeError(f"route {self.route} notifies nobody: it was given no notifier")
        if self.line:
            facts["line"] = self.line
        return self._notifier.send(route=self.route, subject=subject, severity=severity, **facts)

    # -- idempotency -------------------------------------------------------------------------------

    def once(
        self,
        func: Callable[..., ModelT],
        *,
        action: str,
        key: str,
        data_argument: str,
        output: type[ModelT],
        store: BasePersistenceLayer | Callable[[], BasePersistenceLayer],
    ) -> Once[ModelT]:
        """`func` guarded to run once per business key, under the key prefix `<route>.<action>`.

        Raises:
            TypeError: the route was given no settings (they hold the idempotency TTL).
        """
        if self._idempotency_ttl_s is None:
            raise TypeError(f"route {self.route} was given no settings: its guards have no TTL")
        guard = Once(
            func,
            key=key,
            data_argument=data_argument,
            output=output,
            store=store,
            ttl_seconds=self._idempotency_ttl_s,
            key_prefix=f"{self.route}.{action}",
        )
        self._guards.append(guard)
        return guard

    def register_lambda_context(self, context: LambdaContext | None) -> None:
        """Tie every guard's in-progress records to this invocation (see `Once.register_lambda_context`)."""
        for guard in self._guards:
            guard.register_lambda_context(context)
