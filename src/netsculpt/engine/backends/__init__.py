"""Backends apply a :class:`~netsculpt.core.plan.Plan`: to a model in memory, or to a folder of
safetensors shards. Both slice with :func:`netsculpt.surgery.slicing.keep_indices`."""
