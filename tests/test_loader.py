"""The model-file convention and --set parsing."""

from __future__ import annotations

import pytest

from archcost.errors import ModelFileError
from archcost.loader import load_model_file, parse_overrides, parse_value
from tests.conftest import DATA

M = DATA / "models"


@pytest.mark.parametrize(
    "text, expected",
    [("4", 4), ("1_000", 1000), ("-3", -3), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True),
     ("False", False), ("none", None), ("8b", "8b"), ("relu", "relu")],
)
def test_parse_value_types(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_overrides_rejects_missing_equals():
    with pytest.raises(ModelFileError, match="KEY=VALUE"):
        parse_overrides(["layers4"])


def test_unknown_key_names_the_nearest():
    with pytest.raises(ModelFileError, match="did you mean 'layers'"):
        load_model_file(str(M / "tiny_ok.py"), {"layer": 3})


def test_builder_config_passes_overrides():
    spec = load_model_file(str(M / "tiny_ok.py"), parse_overrides(["hidden=8", "layers=2"]))
    import torch

    with torch.device("meta"):
        model = spec.build(2, 4)
    assert model.layers[0].fc.weight.shape == (8, 8)
    assert len(model.layers) == 2


def test_other_builder_by_name():
    spec = load_model_file(f"{M / 'tiny_ok.py'}:other_builder", {"hidden": 8})
    assert spec.builder_name == "other_builder"


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.py", "not found"),
        ("no_builder.py", "defines no function build_model"),
        ("no_inputs.py", "defines no example_inputs"),
        ("syntax_error.py", "syntax error"),
        ("import_error.py", "importing it raised ModuleNotFoundError"),
    ],
)
def test_bad_model_files(name, message):
    with pytest.raises(ModelFileError, match=message):
        load_model_file(str(M / name))


def test_builder_that_raises_is_reported():
    spec = load_model_file(str(M / "builder_raises.py"))
    with pytest.raises(ModelFileError, match="raised ValueError: width must be even"):
        spec.build(1, 1)


TYPED = '''
from typing import Literal, Optional
from torch import nn


def build_model(*, flag: bool = False, n: int = 2, maybe_n: Optional[int] = None,
                rate: float = 0.5, name: str = "x", mode: Literal["a", "b"] = "a",
                untyped=3, anything=None):
    return nn.Linear(2, 2)


def example_inputs(batch_size, seq_len):
    return ()
'''


@pytest.mark.parametrize("text, key, expected", [
    ("flag=true", "flag", True), ("flag=off", "flag", False), ("n=7", "n", 7),
    ("maybe_n=none", "maybe_n", None), ("maybe_n=3", "maybe_n", 3),
    ("rate=2", "rate", 2.0),  # an int where a float is taken: the float
    ("name=70", "name", "70"), ("name=true", "name", "true"),  # str: the text as written
    ("mode=b", "mode", "b"), ("untyped=4", "untyped", 4), ("anything=words", "anything", "words"),
])
def test_set_values_are_typed_by_the_signature(tmp_path, text, key, expected):
    (tmp_path / "typed.py").write_text(TYPED)
    spec = load_model_file(str(tmp_path / "typed.py"), parse_overrides([text]))
    assert spec.config[key] == expected and type(spec.config[key]) is type(expected)


@pytest.mark.parametrize("text, message", [
    ("flag=maybe", "takes flag as true or false"), ("flag=1", "true or false"),
    ("n=2.5", "takes n as a whole number"), ("n=none", "a whole number"),
    ("maybe_n=x", "a whole number or none"), ("rate=fast", "takes rate as a number"),
    ("mode=c", "one of 'a', 'b'"), ("untyped=x", "a whole number"),
])
def test_set_values_of_the_wrong_type_are_refused(tmp_path, text, message):
    (tmp_path / "typed.py").write_text(TYPED)
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(")):
        load_model_file(str(tmp_path / "typed.py"), parse_overrides([text]))
