"""Ships the repository's abi/ directory (layouts and the golden corpus) inside the package, as
``bpfemu.abi``, so that an installed bpfemu (``pip install .``, a wheel) finds it with
importlib.resources; everything else is in pyproject.toml. pyproject.toml cannot name a
package that lives outside the package tree next to the ones it finds, hence this file."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["bpfemu", "bpfemu.*"]) + ["bpfemu.abi"],
    package_dir={"bpfemu.abi": "abi"},
    package_data={"bpfemu.abi": ["*.md", "*/*.json", "*/traces/*.jsonl.gz"]},
)
