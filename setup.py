"""Package list: the code under dsan_toolkit/ plus the committed manifests/ as package data."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["dsan_toolkit", "dsan_toolkit.*"]) + ["dsan_toolkit._manifests"],
    package_dir={"dsan_toolkit._manifests": "manifests"},
    package_data={"dsan_toolkit._manifests": ["*.jsonl", "*.json"], "dsan_toolkit": ["**/*.json"]},
)
