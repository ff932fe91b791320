import pytest

from helpers.params import Choice, Integer, ListOf, Number, ParameterError, check_parameters


def check(value, spec):
    namespace = {"x": value}
    check_parameters(namespace, x=spec)
    return namespace["x"]


@pytest.mark.parametrize("given, expected", [(5, 5), ("5", 5), (" 7 ", 7), (5.0, 5), ("5.0", 5)])
def test_integer_accepts_ints_and_papermill_raw_strings(given, expected):
    assert check(given, Integer(1, 10)) == expected


@pytest.mark.parametrize("bad", ["abc", 5.5, True, None, 0, 11, [3]])
def test_integer_rejects_with_name_value_and_allowed(bad):
    with pytest.raises(ParameterError) as error:
        check(bad, Integer(1, 10))
    message = str(error.value)
    assert "'x'" in message
    assert repr(bad) in message
    assert "an integer from 1 to 10" in message


@pytest.mark.parametrize("bad", [0, -0.1, "nan", float("inf"), "fast", False])
def test_number_with_exclusive_minimum(bad):
    with pytest.raises(ParameterError, match=r"'x'.*a number > 0 and <= 1"):
        check(bad, Number(0, 1, exclusive_min=True))


def test_number_converts_strings():
    assert check("1e-3", Number(0, 1, exclusive_min=True)) == pytest.approx(0.001)


def test_choice_lists_allowed_values():
    with pytest.raises(ParameterError) as error:
        check("swish", Choice(["relu", "elu"]))
    assert "'swish'" in str(error.value)
    assert "one of 'relu', 'elu'" in str(error.value)
    assert check("elu", Choice(["relu", "elu"])) == "elu"


def test_list_of_accepts_lists_and_comma_strings():
    spec = ListOf(Choice(["sgd", "adam"]))
    assert check("sgd,adam", spec) == ["sgd", "adam"]
    assert check(["adam"], spec) == ["adam"]


@pytest.mark.parametrize("bad", [[], "", ["sgd", "lion"]])
def test_list_of_rejects_empty_and_bad_items(bad):
    with pytest.raises(ParameterError, match="'x'"):
        check(bad, ListOf(Choice(["sgd", "adam"])))


def test_list_of_names_the_refused_item():
    with pytest.raises(ParameterError) as error:
        check("sgd,lion", ListOf(Choice(["sgd", "adam"])))
    message = str(error.value)
    assert "got 'sgd,lion' (str) (item 'lion' is refused)" in message
    assert "each one of 'sgd', 'adam'" in message
    with pytest.raises(ParameterError) as error:
        check([0.1, -1], ListOf(Number(0, exclusive_min=True)))
    assert "(item -1 is refused)" in str(error.value)


def test_all_problems_reported_in_one_error_and_nothing_written():
    namespace = {"depth": "deep", "seed": -1, "lr": 0.1}
    with pytest.raises(ParameterError) as error:
        check_parameters(namespace, depth=Integer(2), seed=Integer(min=0), lr=Number(0))
    message = str(error.value)
    assert "'depth'" in message and "'seed'" in message and "'lr'" not in message
    assert namespace["depth"] == "deep"


def test_declared_but_undefined_parameter_is_reported():
    with pytest.raises(ParameterError, match="'depth' is declared but not defined"):
        check_parameters({}, depth=Integer())


def test_values_written_back_converted():
    namespace = {"depth": "12", "rate": "0.5"}
    check_parameters(namespace, depth=Integer(), rate=Number())
    assert namespace == {"depth": 12, "rate": 0.5}
