"""Model builders for sweeps. Each notebook writes its first model in plain
Keras; later comparisons call these builders with the same structure."""

from __future__ import annotations

from typing import Literal

import keras

BatchNormPlacement = Literal["before", "after"] | None


def own_copy(initializer: str | keras.initializers.Initializer):
    """A new initializer with `initializer`'s configuration (a name is returned
    as it is: Keras makes a new initializer from it for every layer).

    In Keras 3 an initializer object created without a seed draws its seed
    once, when it is created: the same object given to twenty layers gives
    all twenty the *same* weights. Each layer needs its own.
    """
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer


def build_mlp(
    depth: int,
    width: int,
    activation: str = "relu",
    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
    batch_norm: BatchNormPlacement = None,
    batch_norm_momentum: float = 0.99,
    n_inputs: int = 64,
    n_classes: int = 10,
    name: str | None = None,
    kernel_regularizer: keras.regularizers.Regularizer | None = None,
) -> keras.Sequential:
    """A deep MLP: `depth` hidden Dense layers of `width` units, softmax output.

    `batch_norm` places a `BatchNormalization` layer in every hidden block:
    ``"before"`` the activation (Dense without bias -> BN -> Activation; BN's
    beta replaces the bias) or ``"after"`` it (Dense -> BN). ``None``: no BN.
    `batch_norm_momentum` is the BN layers' moving-average momentum (Keras's
    default 0.99 suits long trainings; a few hundred steps want about 0.9).
    `kernel_regularizer` penalizes every Dense kernel, the output's too.
    """
    if batch_norm not in ("before", "after", None):
        raise ValueError(f"batch_norm must be 'before', 'after' or None, not {batch_norm!r}")
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_inputs,))]
    for _ in range(depth):
        kernel_initializer = own_copy(kernel_initializer)
        if batch_norm == "before":
            layers += [
                keras.layers.Dense(
                    width,
                    use_bias=False,
                    kernel_initializer=kernel_initializer,
                    kernel_regularizer=kernel_regularizer,
                ),
                keras.layers.BatchNormalization(momentum=batch_norm_momentum),
                keras.layers.Activation(activation),
            ]
        else:
            layers.append(
                keras.layers.Dense(
                    width,
                    activation=activation,
                    kernel_initializer=kernel_initializer,
                    kernel_regularizer=kernel_regularizer,
                )
            )
            if batch_norm == "after":
                layers.append(keras.layers.BatchNormalization(momentum=batch_norm_momentum))
    layers.append(
        keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=kernel_regularizer)
    )
    return keras.Sequential(layers, name=name)
