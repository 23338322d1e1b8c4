"""How training works: labelled data dirs → the model plugin's own optimiser → weights, curves
and accuracy on real images.

- :mod:`.data`: the reader interface over labelled data dirs, and the split by image number;
- :mod:`.settings`: the ``train`` config node, checked;
- :mod:`.loop`: epochs, batches, checkpoints (resume after a kill), NaN losses;
- :mod:`.evaluation`: real images in class subfolders, preprocessed as the data was;
- :mod:`.plots`: ``curves.png`` and ``confusion.png``;
- :mod:`.job`: one job from checks to outputs (``ailusion train`` and the one-job mode);
- :mod:`.apps`: the ``ailusion train`` and ``ailusion evaluate`` Hydra apps.

The model trains through the contract of :class:`ailusion.stages.TrainableModel`; Python decides
the batches and their order, so every backend sees the same data.
"""

from .job import train

__all__ = ["train"]
