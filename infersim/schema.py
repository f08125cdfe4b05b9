"""Pydantic at the scenario file's boundary: number fields as YAML writes them, and pydantic's errors as
one line naming the key path, the value and what is allowed."""
from __future__ import annotations

import re
import sys
from typing import Annotated, get_args

from pydantic import BaseModel, BeforeValidator, ValidationError

from infersim.roofline.boundary import bound_text, whole_number
from infersim.roofline.errors import SpecError, closest_name


def number_from_text(value):
    """YAML 1.1 reads `37.4e12` (no dot, no signed exponent) as text: such text is the number it spells
    (a whole one of any length: see `whole_number`). true/false are not numbers (Python would take them as
    1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, str):
        for parse in (whole_number, float):
            try:
                return parse(value.strip())
            except ValueError:
                pass
    return value


def float_from_text(value):
    """A number as `number_from_text` reads it; a whole number beyond a float's range is not finite."""
    value = number_from_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max:
        raise ValueError("must be a finite number")
    return value


# Number fields of YAML files; models using them set allow_inf_nan=False, so every float is finite.
YamlFloat = Annotated[float, BeforeValidator(float_from_text)]
YamlInt = Annotated[int, BeforeValidator(number_from_text)]


# pydantic's errors for a value of the wrong type where a number, text, flag or list belongs
_VALUE_TYPES = ("int_parsing", "int_type", "float_parsing", "float_type", "bool_parsing", "bool_type", "string_type",
                "list_type", "tuple_type")


def _problem(err: dict) -> str:
    """What is wrong, in the words of a scenario file's reader."""
    ctx = err.get("ctx", {})
    kind = err["type"]
    bounds = {"greater_than": ("> ", "gt"), "greater_than_equal": (">= ", "ge"), "less_than": ("< ", "lt"),
              "less_than_equal": ("<= ", "le")}
    if kind in bounds:
        sign, key = bounds[kind]
        return "must be " + sign + bound_text(ctx[key])
    simple = {"extra_forbidden": "is not a known key (check its spelling and section)", "missing": "is required",
              "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
              "int_type": "must be a whole number", "int_parsing_size": "is too large a whole number",
              "float_parsing": "must be a number", "float_type": "must be a number",
              "finite_number": "must be a finite number", "bool_parsing": "must be true or false",
              "bool_type": "must be true or false", "string_type": "must be text",
              "model_type": "must be a mapping of keys", "dict_type": "must be a mapping of keys",
              "list_type": "must be a list", "tuple_type": "must be a list"}
    if kind in simple:
        return simple[kind]
    if kind == "literal_error":
        return "must be one of " + ctx.get("expected", "").replace("'", "")
    if kind in ("too_short", "too_long"):
        least, most = ctx.get("min_length"), ctx.get("max_length")
        if least is not None and least == most:
            return f"must hold {least} items"
        count = least if kind == "too_short" else most
        return f"must hold at {'least' if kind == 'too_short' else 'most'} {count} item{'' if count == 1 else 's'}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def _is_branch(part) -> bool:
    """Whether a pydantic error location part names a union branch (int, LengthSection, function-...)."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or part in ("int", "float", "str", "bool"))


def _names_a_class(branch: str) -> bool:
    """Whether a union branch is a mapping's class (`LengthSection`, `function-after[_check(), LengthSection]`)
    rather than a scalar type (`int`, `function-before[number_from_text(), int]`)."""
    return re.findall(r"[A-Za-z_]\w*", branch)[-1][0].isupper()


def spec_error(error: ValidationError, file: str | None = None, model: type[BaseModel] | None = None) -> SpecError:
    """The most specific of pydantic's errors as one line. A union (`prompt_tokens: 512` or a mapping)
    reports its branches separately; the branch matching the value's type is the one that explains it.
    An unknown key comes first: a misspelt key explains the missing one. Given the `model` validated, an
    unknown key close to one its section knows gets a suggestion."""
    errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")

    def wrong_branch(err) -> bool:
        loc = list(err["loc"])
        branch = next((i for i, p in enumerate(loc) if _is_branch(p)), None)
        if branch is None or len(errors) == 1:
            return False
        if _names_a_class(loc[branch]):  # a mapping branch: wrong if it only says "not a mapping"
            return branch == len(loc) - 1 and err["type"] in ("model_type", "dict_type")
        if loc[branch].startswith(("list[", "tuple[")):  # a list branch: wrong if it only says "not a list"
            return branch == len(loc) - 1 and err["type"] in ("list_type", "tuple_type")
        return isinstance(err.get("input"), (dict, list))  # a scalar branch given a mapping or a list

    err = next((e for e in errors if not wrong_branch(e)), errors[0])
    loc = err["loc"]
    key_last = err["type"] == "extra_forbidden"  # the unknown key itself ends the path, whatever its letters
    path = ".".join(str(p) for i, p in enumerate(loc) if not _is_branch(p) or (key_last and i == len(loc) - 1))
    got = err.get("input")
    show = not isinstance(got, dict) or err["type"] in ("dict_type", "model_type")
    problem = _problem(err)
    if not show and err["type"] in _VALUE_TYPES:  # a mapping where a value belongs: say which keys it held
        problem += f", not a mapping (got the keys {', '.join(str(k) for k in got)})"
    elif got is None and err["type"] != "missing":
        problem += ", got nothing (the key is left empty)"
    if err["type"] == "extra_forbidden" and model is not None and isinstance(err["loc"][-1], str):
        close = closest_name(err["loc"][-1], known_keys(model, err["loc"][:-1]), cutoff=0.6)
        problem = f"is not a known key (did you mean {close}?)" if close else problem
    return SpecError(path, problem, got if show and err["type"] != "missing" else None, file)


def known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys (field names and aliases) of the mapping at `loc`, a pydantic error location within `model`:
    a part naming a field leads to the models its type holds (in a list, a mapping, a union), a union
    branch part (`LengthSection`) keeps that model alone, a list index or a mapping's own key changes none."""
    models = [model]
    for part in loc:
        if _is_branch(part):
            if _names_a_class(part):
                models = [m for m in models if m.__name__ == re.findall(r"[A-Za-z_]\w*", part)[-1]]
            continue
        fields = [f for m in models for name, f in m.model_fields.items() if part in (name, f.alias)]
        if fields:
            models = [inner for f in fields for inner in _models_in(f.annotation)]
    return sorted({key for m in models for name, f in m.model_fields.items() for key in (name, f.alias) if key})


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models a type annotation holds, at any depth (Optional, Union, list, dict, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]
