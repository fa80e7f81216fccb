"""Cross-task interaction architectures; importing this package registers them in ``ARCHITECTURES``
(``model/registry.py``). ``model/network.py`` imports it, so the registry is full after importing that.

- ``cross_stitch``: per-task encoders mixed by cross-stitch units (Misra et al. 2016).
- ``padnet``: intermediate predictions and multi-modal distillation (Xu et al. 2018).
- ``mti``: multi-scale distillation with feature propagation (Vandenhende et al. 2020).
- ``pap``: pattern-affinitive propagation (Zhang et al. 2019).
See docs/architectures.md for the designs, their options and how to choose.
"""
from mtl_perception.model.interaction.cross_stitch import CrossStitchNet, CrossStitchUnit
from mtl_perception.model.interaction.mti import MTINet
from mtl_perception.model.interaction.padnet import PADNet
from mtl_perception.model.interaction.pap import PAPNet

__all__ = ["CrossStitchNet", "CrossStitchUnit", "MTINet", "PADNet", "PAPNet"]
