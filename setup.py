"""Package layout beyond what pyproject.toml can say: two top-level folders ship inside the neural3d package.

``viewer/`` (the browser viewer) installs as ``neural3d.viewer`` and ``configs/`` (the YAML configs) as
``neural3d.configs``, so nothing generic like ``viewer`` lands in site-packages and ``neural3d demo`` finds its
config after a wheel install.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["neural3d", "neural3d.*"]) + ["neural3d.viewer", "neural3d.configs"],
    package_dir={"neural3d.viewer": "viewer", "neural3d.configs": "configs"},
    package_data={"neural3d.fields.backends": ["*.c"], "neural3d.configs": ["*.yaml"]},
)
