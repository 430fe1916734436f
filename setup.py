"""Build configuration that pyproject.toml cannot express; everything else is in pyproject.toml.

The YAML presets stay in the repository's top-level ``configs/`` folder and ship inside the
package as ``realtime/_presets/*.yaml``: ``package_dir`` maps the subpackage ``realtime._presets``
onto ``configs/``. pyproject's ``[tool.setuptools.packages.find]`` cannot add a package that lives
outside the searched tree, so discovery is done here (the same search: every ``realtime*`` package,
data-only folders such as ``realtime/models/data`` included). ``realtime.config.presets`` is the one
place that looks the presets up, in a source checkout or editable install and in an installed wheel.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["realtime*"]), "realtime._presets"],
    package_dir={"realtime._presets": "configs"},
)
