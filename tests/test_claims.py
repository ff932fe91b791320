from helpers.claims import claim, count_claims


def test_holding_claim_prints_check_mark_only(capsys):
    claim("the net learns", True, "93 %")
    assert capsys.readouterr().out == "✔ the net learns\n"


def test_failing_claim_prints_cross_and_measurement(capsys):
    claim("the net learns", False, "12 %")
    assert capsys.readouterr().out == "✘ the net learns: measured 12 %\n"


def test_claim_accepts_numpy_bools(capsys):
    import numpy as np

    claim("x", np.bool_(True), "")
    assert capsys.readouterr().out.startswith("✔")


def test_count_claims():
    text = "✔ a\nsome output ✔ not at start\n  ✘ b: measured 1\n✔ c\n"
    assert count_claims(text) == (2, 1)
