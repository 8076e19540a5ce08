# The product folders map into the one `mosnx` namespace; subpackages are found here
# so that a new folder inside one of them ships without editing a list.
from setuptools import find_packages, setup

ROOTS = {"mosnx": "mosnx", "mosnx.dsl": "dsl", "mosnx.runtime": "runtime", "mosnx.wasm": "wasm",
         "mosnx.proxy": "proxy", "mosnx.grammar": "grammar"}

packages = []
package_dir = {}
for pkg, folder in ROOTS.items():
    packages.append(pkg)
    package_dir[pkg] = folder
    for sub in find_packages(folder):
        packages.append(f"{pkg}.{sub}")
        package_dir[f"{pkg}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
