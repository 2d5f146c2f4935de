"""Rendering: the notebook from the layout, the model table and the templates (layer 2)."""
