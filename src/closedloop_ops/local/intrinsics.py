"""CloudFormation intrinsic functions, evaluated against parameters, conditions and created resources."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from closedloop_ops.local.template import TemplateError

_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class Unresolved(Exception):
    """A reference to a resource that is not created yet (the caller orders resources by it)."""

    def __init__(self, logical_id: str) -> None:
        super().__init__(logical_id)
        self.logical_id = logical_id


class Resolver:
    """Evaluates intrinsics. `ref` and `get_att` look up created resources (raise Unresolved)."""

    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, str],
        mappings: Mapping[str, Any],
        conditions: Mapping[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
    ) -> None:
        self._parameters = dict(parameters)
        self._pseudo = dict(pseudo)
        self._mappings = mappings
        self._condition_defs = conditions
        self._conditions: dict[str, bool] = {}
        self._ref = ref
        self._get_att = get_att

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self._condition_defs:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(self._condition_defs[name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value if not _is_no_value(v)) if r is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key == "Condition" and isinstance(arg, str) and arg in self._condition_defs:
                return self.condition(arg)
        resolved = {k: self.resolve(v) for k, v in value.items() if not _is_no_value(v)}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def reference(self, name: str) -> Any:
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        return self._ref(name)

    # -- functions ---------------------------------------------------------------------------

    def _fn_ref(self, arg: Any) -> Any:
        return self.reference(arg)

    def _fn_get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical_id, attribute = self.resolve(arg[0]), self.resolve(arg[1])
        return self._get_att(logical_id, attribute)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] not in self._parameters:
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att(logical_id, attribute))
            return str(self.reference(name))

        return _SUB.sub(replace, text).replace("${!", "${")

    def _fn_if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        chosen = when_true if self.condition(name) else when_false
        return NO_VALUE if _is_no_value(chosen) else self.resolve(chosen)

    def _fn_equals(self, arg: Any) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return str(left) == str(right)

    def _fn_not(self, arg: Any) -> bool:
        return not self.resolve(arg[0])

    def _fn_and(self, arg: Any) -> bool:
        return all(self.resolve(a) for a in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self.resolve(a) for a in arg)

    def _fn_condition(self, arg: Any) -> bool:
        return self.condition(arg)

    def _fn_find_in_map(self, arg: Any) -> Any:
        name, top, second = (self.resolve(a) for a in arg[:3])
        try:
            return self._mappings[name][top][second]
        except KeyError:
            raise TemplateError(f"Fn::FindInMap: no {name}.{top}.{second}") from None

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = arg
        return str(delimiter).join(str(v) for v in self.resolve(items))

    def _fn_select(self, arg: Any) -> Any:
        index, items = self.resolve(arg[0]), self.resolve(arg[1])
        return items[int(index)]

    def _fn_split(self, arg: Any) -> list[str]:
        delimiter, text = arg[0], self.resolve(arg[1])
        return str(text).split(delimiter)

    def _fn_get_azs(self, arg: Any) -> list[str]:
        region = self._pseudo["AWS::Region"]
        return [f"{region}a", f"{region}b", f"{region}c"]


# what `Fn::If` gives for `!Ref AWS::NoValue`: the list item or property is left out
NO_VALUE: Any = object()


def _is_no_value(value: Any) -> bool:
    return isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}


_FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": Resolver._fn_ref,
    "Fn::GetAtt": Resolver._fn_get_att,
    "Fn::Sub": Resolver._fn_sub,
    "Fn::If": Resolver._fn_if,
    "Fn::Equals": Resolver._fn_equals,
    "Fn::Not": Resolver._fn_not,
    "Fn::And": Resolver._fn_and,
    "Fn::Or": Resolver._fn_or,
    "Condition": Resolver._fn_condition,
    "Fn::FindInMap": Resolver._fn_find_in_map,
    "Fn::Join": Resolver._fn_join,
    "Fn::Select": Resolver._fn_select,
    "Fn::Split": Resolver._fn_split,
    "Fn::GetAZs": Resolver._fn_get_azs,
}


def references(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, GetAtt, ${X} and ${X.Attr} in Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                found |= {m.group(1).split(".", 1)[0] for m in _SUB.finditer(text)}
                if isinstance(arg, list):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    return found
