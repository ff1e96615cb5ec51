"""Command-line flags derived from a request model, so a setting is declared once (its pydantic
field: type, bounds, default, description) and reaches the API and every command alike.

A field ``n_splits`` becomes ``--n-splits``; a nested model's fields are prefixed with its name
(``budget.examples``: ``--budget-examples``); :data:`ALIASES` keeps the short and historical
spellings. A flag not given is left out, so the model's own default applies, and what a user
typed is checked by the model itself: an error names the field as the API would.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from grace_engine.errors import InvalidInput
from grace_engine.models.data import SFT_FORMS

ALIASES: Mapping[str, tuple[str, ...]] = {
    "responses_per_prompt": ("-m",),
    "proj_dim": ("-d",),
    "n_splits": ("--splits",),
    "budget.initial_prompts": ("--initial-prompts",),
    "distill.method": ("--method",),
    "distill.epochs": ("--epochs",),
    "distill.max_steps": ("--steps",),
    "distill.batch_size": ("--batch-size",),
    "distill.learning_rate": ("--lr",),
}
M = TypeVar("M", bound=BaseModel)
SEP = "__"  # joins a nested field's parts in its argparse dest


def _flag(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


def _plain(annotation: Any) -> Any:
    """The annotation without ``Annotated`` and ``None`` (a tuple where a union of several is left)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return tuple(args)
            annotation = args[0]
        else:
            return annotation


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo, Any]]:
    """Each setting of ``model`` as ``(dotted key, field, plain type)``, nested models opened."""
    for name, info in model.model_fields.items():
        kind = _plain(info.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _leaves(kind, prefix + name + ".")
        else:
            yield prefix + name, info, kind


def _number_or_word(text: str) -> int | str:
    """An ``int | str`` field (``proj_dim``: a number or ``auto``)."""
    return int(text) if text.lstrip("-").isdigit() else text


def _text(text: str) -> str:
    r"""A text field; ``\n`` typed on a command line is a newline (templates span lines)."""
    return text.replace("\\n", "\n")


def _help(info: FieldInfo, default: Any) -> str:
    shown = "" if default is None else f" (default: {default!r})"
    return (info.description or "") + shown


def add_model_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per setting of ``model`` (nested models flattened); see the module docstring."""
    for key, info, kind in _leaves(model):
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        spec: dict[str, Any] = {"dest": key.replace(".", SEP), "default": None, "help": _help(info, default)}
        if kind is not bool and get_origin(kind) is not Literal:  # choices show themselves
            spec["metavar"] = key.rsplit(".", 1)[-1].upper()
        if kind is bool:
            spec["action"] = argparse.BooleanOptionalAction
        elif get_origin(kind) is Literal:
            spec["choices"] = get_args(kind)
        elif get_origin(kind) is list:
            item = _plain(get_args(kind)[0])
            spec["nargs"] = "+"
            spec["type"] = item if item in (int, float) else _text
        elif kind in (int, float):
            spec["type"] = kind
        elif kind == (int, str):
            spec["type"] = _number_or_word
        elif kind is str:
            spec["type"] = _text
        else:
            raise TypeError(f"{model.__name__}.{key}: no command-line form for {kind!r}")
        parser.add_argument(_flag(key), *ALIASES.get(key, ()), **spec)


def given(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The settings of ``model`` the command line set (:func:`add_model_flags`), nested as the
    model is."""
    out: dict[str, Any] = {}
    for key, _info, _kind in _leaves(model):
        value = getattr(args, key.replace(".", SEP))
        if value is not None:
            *parents, name = key.split(".")
            node = out
            for parent in parents:
                node = node.setdefault(parent, {})
            node[name] = value
    return out


def from_args(args: argparse.Namespace, model: type[M], *, field: str) -> M:
    """``model`` from the flags given; a bad value is an :class:`InvalidInput` naming
    ``field.<path>``, as the API names it."""
    try:
        return model.model_validate(given(args, model))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in (field, *first["loc"]))
        raise InvalidInput(first["msg"], field=path) from exc


def add_form_option(parser: argparse.ArgumentParser) -> None:
    """``--format`` of an exported training set (``grace export``, ``grace jobs dataset``)."""
    parser.add_argument(
        "--format",
        choices=SFT_FORMS,
        default="chat",
        help="chat: the teacher's conversation (instruction + prompt, then the response); "
        "prompt_completion: the exact text the student was scored on (its template around the "
        "prompt, then the response). Default: %(default)s",
    )
