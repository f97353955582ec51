"""The YAML configs, shipped inside the package as ``neural3d.configs`` (see setup.py)."""
