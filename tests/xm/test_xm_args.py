"""Argument rendering (a golden table), merging and argument errors."""

from __future__ import annotations

import enum
import pathlib
import warnings
from typing import Any

import pytest

from xmanager import xm


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast-mode"


# Each row: an id, what a launch script passes as args, and the exact argv tokens.
GOLDEN: list[tuple[str, Any, list[str]]] = [
    ("plain_str", {"name": "value"}, ["--name=value"]),
    ("spaces", {"msg": "hello world"}, ["--msg=hello world"]),
    ("single_quotes", {"q": "it's 'quoted'"}, ["--q=it's 'quoted'"]),
    ("double_quotes", {"q": 'say "hi"'}, ['--q=say "hi"']),
    ("dollar_home", {"path": "$HOME/data"}, ["--path=$HOME/data"]),
    ("dollar_braces", {"v": "${USER:-x}"}, ["--v=${USER:-x}"]),
    (
        "shell_metacharacters",
        {"cmd": "a; rm -rf / && echo `id` | tee > out &"},
        ["--cmd=a; rm -rf / && echo `id` | tee > out &"],
    ),
    ("backslashes", {"re": r"\d+\n\\"}, [r"--re=\d+\n\\"]),
    ("newline", {"text": "line1\nline2\n"}, ["--text=line1\nline2\n"]),
    ("tab_and_cr", {"t": "a\tb\r\n"}, ["--t=a\tb\r\n"]),
    ("json", {"config": '{"a": [1, 2]}'}, ['--config={"a": [1, 2]}']),
    ("json_nested_quotes", {"j": '{"s": "it\'s \\"x\\""}'}, ['--j={"s": "it\'s \\"x\\""}']),
    (
        "unicode",
        {"name": "h\u00e9llo w\u00f6rld \u65e5\u672c \U0001f680"},
        ["--name=h\u00e9llo w\u00f6rld \u65e5\u672c \U0001f680"],
    ),
    ("empty_string", {"e": ""}, ["--e="]),
    ("only_spaces", {"s": "  "}, ["--s=  "]),
    ("equals_in_value", {"kv": "a=b=c"}, ["--kv=a=b=c"]),
    ("dash_value", {"x": "-1"}, ["--x=-1"]),
    ("true", {"debug": True}, ["--debug"]),
    ("false", {"debug": False}, ["--nodebug"]),
    ("none_dropped", {"x": None, "y": 1}, ["--y=1"]),
    ("list_repeats", {"k": ["a", "b c"]}, ["--k=a", "--k=b c"]),
    ("tuple_repeats", {"k": (1, 2.5, Color.GREEN)}, ["--k=1", "--k=2.5", "--k=GREEN"]),
    ("empty_list", {"k": [], "z": 0}, ["--z=0"]),
    ("enum", {"color": Color.RED}, ["--color=RED"]),
    ("int_enum", {"level": Level.HIGH}, ["--level=HIGH"]),
    ("str_enum", {"mode": Mode.FAST}, ["--mode=FAST"]),
    ("int", {"steps": 1000}, ["--steps=1000"]),
    ("zero", {"n": 0}, ["--n=0"]),
    ("negative_int", {"n": -3}, ["--n=-3"]),
    ("big_int", {"n": 10**20}, ["--n=100000000000000000000"]),
    ("float_small", {"lr": 0.001}, ["--lr=0.001"]),
    ("float_exponent", {"lr": 1e-05}, ["--lr=1e-05"]),
    ("float_big", {"x": 1e20}, ["--x=1e+20"]),
    ("float_whole", {"x": 2.0}, ["--x=2.0"]),
    ("float_repr", {"x": 0.1 + 0.2}, ["--x=0.30000000000000004"]),
    ("dotted_flag", {"config.model.lr": 0.1}, ["--config.model.lr=0.1"]),
    ("dashed_flag", {"batch-size": 8}, ["--batch-size=8"]),
    ("shell_safe_arg", {"v": xm.ShellSafeArg("$HOME")}, ["--v=$HOME"]),
    ("path", {"out": pathlib.PurePosixPath("/tmp/out dir")}, ["--out=/tmp/out dir"]),
    ("insertion_order", {"b": 1, "a": 2, "c": 3}, ["--b=1", "--a=2", "--c=3"]),
    (
        "positional_list",
        ["train", 3, 0.5, True, Color.RED, "a b", "", "$HOME", "--flag=x y"],
        ["train", "3", "0.5", "True", "RED", "a b", "", "$HOME", "--flag=x y"],
    ),
    ("positional_tuple", ("a", 1), ["a", "1"]),
    ("empty_mapping", {}, []),
    ("empty_list_args", [], []),
    ("none_args", None, []),
    (
        "mixed_sequential_args",
        xm.merge_args(["train"], {"lr": 0.1, "debug": True}, ["extra arg"], {"lr": 0.2}),
        ["train", "--lr=0.2", "--debug", "extra arg"],
    ),
]


@pytest.mark.parametrize(
    ("value", "tokens"), [row[1:] for row in GOLDEN], ids=[r[0] for r in GOLDEN]
)
def test_golden_rendering(value: Any, tokens: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rendered = xm.SequentialArgs.from_collection(value).to_list()
    assert rendered == tokens
    # Plain str tokens, not str subclasses such as ShellSafeArg.
    assert all(type(token) is str for token in rendered)


def test_none_value_warns_naming_the_key() -> None:
    args = xm.SequentialArgs.from_collection({"checkpoint": None})
    with pytest.warns(UserWarning, match="'checkpoint'"):
        assert args.to_list() == []


def test_job_args_render_executable_args_first() -> None:
    executable = xm.BinaryArtifact(
        "b", "/bin/b", args=xm.SequentialArgs.from_collection({"batch_size": 64, "lr": 1})
    )
    job = xm.Job(executable, _Executor(), args={"lr": 0.1, "name": "x y"})
    assert xm.job_args(job).to_list() == ["--batch_size=64", "--lr=0.1", "--name=x y"]


class _Executor(xm.Executor):
    Spec = xm.ExecutorSpec


# ----- Merging -----------------------------------------------------------------------------------

MERGES: list[tuple[str, list[Any], list[str]]] = [
    ("keyword_replaced_in_place", [{"a": 1, "b": 2}, {"a": 3}], ["--a=3", "--b=2"]),
    ("new_keyword_appended", [{"a": 1}, {"c": 3}], ["--a=1", "--c=3"]),
    ("positionals_appended", [["x"], ["y", "z"]], ["x", "y", "z"]),
    (
        "mixed",
        [xm.merge_args(["cmd"], {"a": 1}), {"a": 2, "b": 1}, ["tail"]],
        ["cmd", "--a=2", "--b=1", "tail"],
    ),
    ("bool_flipped", [{"debug": True}, {"debug": False}], ["--nodebug"]),
    ("list_replaced_not_concatenated", [{"k": [1, 2]}, {"k": [3]}], ["--k=3"]),
    ("none_removes_flag", [{"a": 1, "b": 2}, {"a": None}], ["--b=2"]),
    ("none_then_value", [{"a": None, "b": 2}, {"a": 5}], ["--a=5", "--b=2"]),
    ("none_inputs_ignored", [None, {"a": 1}, None], ["--a=1"]),
    ("nothing", [], []),
]


@pytest.mark.parametrize(
    ("inputs", "tokens"), [row[1:] for row in MERGES], ids=[r[0] for r in MERGES]
)
def test_merge(inputs: list[Any], tokens: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert xm.merge_args(*inputs).to_list() == tokens


def test_merge_leaves_inputs_unchanged() -> None:
    first_dict = {"a": 1, "k": [1, 2]}
    first = xm.SequentialArgs.from_collection(first_dict)
    second = xm.SequentialArgs.from_collection({"a": 2, "k": [3]})
    merged = xm.merge_args(first, second, ["p"])
    assert merged.to_list() == ["--a=2", "--k=3", "p"]
    assert first.to_list() == ["--a=1", "--k=1", "--k=2"]
    assert second.to_list() == ["--a=2", "--k=3"]
    assert first_dict == {"a": 1, "k": [1, 2]}
    assert merged is not first


def test_later_changes_to_a_list_do_not_leak_in() -> None:
    values = [1, 2]
    args = xm.SequentialArgs.from_collection({"k": values})
    values.append(3)
    assert args.to_list() == ["--k=1", "--k=2"]


def test_add_operator_merges() -> None:
    args = xm.SequentialArgs.from_collection({"a": 1}) + {"a": 2, "b": 3}
    assert args.to_list() == ["--a=2", "--b=3"]


def test_from_collection_returns_sequential_args_unchanged() -> None:
    args = xm.SequentialArgs.from_collection(["a"])
    assert xm.SequentialArgs.from_collection(args) is args


# ----- to_dict, equality, repr -------------------------------------------------------------------


def test_to_dict() -> None:
    args = xm.merge_args(["a"], {"k": 1}, ["b"], {"flag": True})
    assert args.to_dict() == {"0": "a", "k": 1, "1": "b", "flag": True}
    assert list(args.to_dict()) == ["0", "k", "1", "flag"]
    assert args.to_dict(kwargs_only=True) == {"k": 1, "flag": True}


def test_equality_is_by_content_and_order() -> None:
    assert xm.SequentialArgs.from_collection({"a": 1, "b": 2}) == xm.merge_args({"a": 1}, {"b": 2})
    assert xm.SequentialArgs.from_collection({"a": 1, "b": 2}) != xm.SequentialArgs.from_collection(
        {"b": 2, "a": 1}
    )
    assert xm.SequentialArgs.from_collection(["a"]) != xm.SequentialArgs.from_collection({"0": "a"})
    assert xm.SequentialArgs() == xm.SequentialArgs.from_collection(None)
    assert xm.SequentialArgs() != []


def test_repr() -> None:
    args = xm.merge_args(["train"], {"lr": 0.1, "name": "a b"})
    assert repr(args) == "xm.SequentialArgs(['train', lr=0.1, name='a b'])"
    assert len(args) == 3


# ----- Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["--lr=0.1 --steps=3", b"--lr=1", bytearray(b"x")])
def test_bare_string_args_are_rejected(bad: Any) -> None:
    with pytest.raises(TypeError, match="list"):
        xm.SequentialArgs.from_collection(bad)


def test_unsupported_collection_is_rejected() -> None:
    with pytest.raises(TypeError, match="set"):
        xm.SequentialArgs.from_collection({"a", "b"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({"nested": 1}, "dict"),
        ({1, 2}, "set"),
        (object(), "object"),
        (b"bytes", "bytes"),
        (1 + 2j, "complex"),
        ([[1, 2]], "list"),
        ([None], "NoneType"),
    ],
)
def test_unsupported_flag_values_name_key_and_type(value: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=rf"'opt'.*{type_name}"):
        xm.SequentialArgs.from_collection({"opt": value})


@pytest.mark.parametrize("value", [None, ["a"], {"a": 1}])
def test_unsupported_positional_values(value: Any) -> None:
    with pytest.raises(TypeError, match="Positional argument 1"):
        xm.SequentialArgs.from_collection(["ok", value])


@pytest.mark.parametrize("name", ["--lr", "-x", "a=b", "a b", "", "tab\t"])
def test_bad_flag_names(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid argument name"):
        xm.SequentialArgs.from_collection({name: 1})


def test_non_str_flag_name() -> None:
    with pytest.raises(TypeError, match="must be str"):
        xm.SequentialArgs.from_collection({1: "x"})  # type: ignore[dict-item]


@pytest.mark.parametrize("args", [{"a": "x\x00y"}, ["x\x00"], {"a": ["ok", "\x00"]}])
def test_nul_characters_are_rejected(args: Any) -> None:
    with pytest.raises(ValueError, match="NUL"):
        xm.SequentialArgs.from_collection(args)


def test_shell_safe_arg_is_a_str() -> None:
    value = xm.ShellSafeArg("$HOME")
    assert isinstance(value, str)
    assert value == "$HOME"
