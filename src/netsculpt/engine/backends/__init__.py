"""Backends apply a :class:`~netsculpt.core.plan.Plan`: to a model in memory, or to a folder of
safetensors shards. Both cut tensors with :func:`netsculpt.surgery.slicing.slice_tensor`."""
