"""The dashboard's panels, one module per feature."""
