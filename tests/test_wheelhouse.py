"""The offline wheelhouse for a GPU box: what it asks for, and what it leaves behind."""

from repro.driver import wheelhouse


def test_it_asks_for_the_runtime_and_never_for_a_framework():
    needed = wheelhouse.needed()
    assert {"papermill", "nbconvert", "ipykernel", "codecarbon", "nvidia-ml-py", "flax"} <= needed
    assert not needed & {"torch", "jax", "tensorflow-cpu", "pip-tools"}


def test_what_the_target_has_is_read_from_its_pip_freeze(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("Flax==0.12.10\nnvidia_ml_py==13.580.82\nrepro @ file:///work/main\n\n")
    assert wheelhouse.have(freeze) == {"flax", "nvidia-ml-py", "repro"}
    assert wheelhouse.have(None) == set()


def test_an_unreadable_freeze_is_one_line_naming_it(tmp_path):
    import pytest

    from repro.errors import UserError

    with pytest.raises(UserError, match="cannot read --have"):
        wheelhouse.have(tmp_path / "missing.txt")
