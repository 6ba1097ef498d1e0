"""Reviewed data files shipped with the package (``ddi_templates.csv``)."""
