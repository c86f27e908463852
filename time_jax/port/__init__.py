"""Porting pretrained PyTorch / NumPy weights into time_jax's Flax models.

One module per weight source (timm, torchvision, big_vision, videomae, hf), each with
``convert(state_dict, model_name, num_classes) -> variables``, ``build`` (the model it
fills) and ``verify`` (a layer-by-layer comparison with the PyTorch original,
`compare`); `common` reads weight files safely and writes the Orbax checkpoint a config
names in ``init_from``.
"""
