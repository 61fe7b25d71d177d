"""The model: the DenseNet network, checkpoints, the named presets, datasets and preprocessing."""
