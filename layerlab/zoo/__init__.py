"""Model zoo built from layerlab layers: the families ``layerlab compare`` trains (``mlp``, ``cnn``,
``lcn``, ``tiled``, ``allconv``, ``logistic``) and named architectures (LeNet-5, the TensorFlow
CIFAR-10 net, cuda-convnet's conv+local net, DCGAN, a small U-Net). See ``docs/zoo.md``.

Examples:
    >>> from layerlab.zoo import build, count_params
    >>> count_params(build("dcgan_discriminator", (3, 64, 64), 1))
    2765568
"""

from layerlab.zoo.registry import MODELS, build, count_params, model_options, width_for_params

__all__ = ["MODELS", "build", "count_params", "model_options", "width_for_params"]
