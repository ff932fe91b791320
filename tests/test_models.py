import keras
import pytest

from helpers.models import build_mlp


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_plain_mlp_structure():
    model = build_mlp(depth=3, width=8, activation="elu", kernel_initializer="he_normal")
    assert layer_types(model) == ["Dense"] * 4
    assert model.layers[0].kernel.shape == (64, 8)
    assert model.layers[1].activation.__name__ == "elu"
    assert model.output_shape == (None, 10)


def test_batch_norm_before_activation_drops_the_bias():
    model = build_mlp(2, 8, "relu", batch_norm="before", n_inputs=5, n_classes=3)
    assert layer_types(model) == ["Dense", "BatchNormalization", "Activation"] * 2 + ["Dense"]
    assert model.layers[0].use_bias is False


def test_batch_norm_after_activation():
    model = build_mlp(2, 8, "relu", batch_norm="after", n_inputs=5, n_classes=3)
    assert layer_types(model) == ["Dense", "BatchNormalization"] * 2 + ["Dense"]


def test_initializer_is_used():
    model = build_mlp(1, 4, kernel_initializer=keras.initializers.Constant(0.5))
    assert float(model.layers[0].kernel[0, 0]) == 0.5


def test_bad_placement_is_refused():
    with pytest.raises(ValueError, match="batch_norm"):
        build_mlp(2, 8, batch_norm="middle")


def test_batch_norm_momentum_is_passed_on():
    model = build_mlp(depth=3, width=4, batch_norm="after", batch_norm_momentum=0.9)
    momenta = [layer.momentum for layer in model.layers if "batch_norm" in layer.name]
    assert momenta == [0.9, 0.9, 0.9]


def test_an_initializer_object_gives_every_layer_its_own_weights():
    """Keras 3 draws an unseeded initializer's seed once: reused as it is, it
    would give every layer the same kernel."""
    init = keras.initializers.RandomNormal(stddev=0.5)
    shared = keras.Sequential(
        [keras.Input((8,))] + [keras.layers.Dense(8, kernel_initializer=init) for _ in range(2)]
    )
    assert (shared.layers[0].kernel.numpy() == shared.layers[1].kernel.numpy()).all()
    model = build_mlp(depth=3, width=8, kernel_initializer=init, n_inputs=8)
    kernels = [layer.kernel.numpy() for layer in model.layers[1:3]]
    assert not (kernels[0] == kernels[1]).all()
    assert abs(kernels[0].std() - 0.5) < 0.1


def test_build_mlp_penalizes_every_kernel_when_asked():
    plain = build_mlp(2, 8)
    penalized = build_mlp(2, 8, kernel_regularizer=keras.regularizers.l2(0.1))
    assert plain.losses == []
    assert len(penalized.losses) == 3  # two hidden kernels and the output's
