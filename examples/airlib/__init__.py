"""Attend-Infer-Repeat, split by concern: ``data`` (multi-digit canvases),
``stn`` (the spatial transformer), ``model`` (networks, model, guide, objectives)."""
