"""The config options this plugin adds to ailusion's config groups (``preprocessor/edges.yaml``)."""
