"""The route table (closedloop.routes) against the code, the template, events/ and the docs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from closedloop import routes
from closedloop_ops.local.template import read_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = read_yaml(ROOT / "template.yaml")


def _resolve(dotted: str) -> object:
    module, _, attribute = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError:  # Class.method
        owner = _resolve(module)
        return getattr(owner, attribute)


def _models(route: routes.Route) -> list[type]:
    module, _, names = route.event_model.rpartition(".")
    first, *others = [name.strip() for name in names.split("|")]
    found = [getattr(importlib.import_module(module), first)]
    found += [getattr(importlib.import_module(module), name) for name in others]
    return found


def test_the_routes_are_numbered_one_to_eight_and_named_once() -> None:
    assert [r.number for r in routes.ROUTES] == list(range(1, 9))
    assert len({r.name for r in routes.ROUTES}) == len({r.function for r in routes.ROUTES}) == 8


@pytest.mark.parametrize("route", routes.ROUTES, ids=lambda r: r.function)
def test_each_route_is_a_function_of_the_template_with_its_handler(route: routes.Route) -> None:
    # Given the route's function directory and the template's function resource
    app = ROOT / "functions" / route.function / "app.py"
    resource = TEMPLATE["Resources"][route.logical_id]
    # Then the template builds that directory, and the handler says which route it is
    assert resource["Type"] == "AWS::Serverless::Function"
    assert resource["Properties"]["CodeUri"].rstrip("/") == f"functions/{route.function}"
    assert app.read_text().lstrip('"').startswith(f"Route {route.number}:")
    assert routes.by_function(route.function) is routes.by_function(route.logical_id) is route


def test_every_route_enters_its_service_the_same_way() -> None:
    # one entry point name: a handler parses its event and calls the service's `handle`
    assert {r.service.rsplit(".", 1)[1] for r in routes.ROUTES} == {"handle"}
    for route in routes.ROUTES:
        app = (ROOT / "functions" / route.function / "app.py").read_text()
        assert ".handle(" in app, route.function


@pytest.mark.parametrize("route", routes.ROUTES, ids=lambda r: r.function)
def test_each_routes_service_records_under_the_routes_name(route: routes.Route) -> None:
    # Given the domain entry point the handler calls
    entry = _resolve(route.service)
    # Then it exists, and its module's ledger route is the table's name (the service's own modules
    # take it from the table; a route behind a queue names it in the module the queue hands to)
    assert callable(entry)
    owners = {
        "data-arrival": "closedloop.dataprep.service",
        "model-approval": "closedloop.deploy.rollout",
    }
    module = owners.get(route.name, route.service.rsplit(".", 2)[0])
    assert route.name == importlib.import_module(module).ROUTE


@pytest.mark.parametrize("route", routes.ROUTES, ids=lambda r: r.function)
def test_each_routes_sample_parses_with_its_event_model(route: routes.Route) -> None:
    models = _models(route)
    for sample in route.samples:
        event = json.loads((ROOT / "events" / sample).read_text())
        bodies = [json.loads(r["body"]) for r in event["Records"]] if "Records" in event else [event]
        for body in bodies:
            parsed = []
            for model in models:
                try:
                    parsed.append(model.model_validate(body))  # type: ignore[attr-defined]
                except ValueError:
                    continue
            assert parsed, f"{sample} parses with none of {route.event_model}"


def test_the_architecture_docs_route_table_is_the_tables() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert routes.markdown_table() in text, (
        "regenerate: python -c 'from closedloop import routes; print(routes.markdown_table())'"
    )
